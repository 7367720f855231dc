"""PaymentGate.terms: kept per (route, body, quote, sponsorship) so the paid retry reuses its 402's."""

from __future__ import annotations

from mpp_claude.server.binding import body_digest
from mpp_claude.server.config import build_config
from mpp_claude.server.payments import PaymentGate
from mpp_claude.server.pricing import AtomicAmount, Quote
from mpp_claude.server.stores import MemoryStore
from mpp_claude.tempo.settle import AsyncChargeVerifier
from mpp_claude.tempo.signer import LocalSigner

ROUTE = "POST /v1/chat/completions"
QUOTE = Quote(model="claude-haiku-4-5", amount=AtomicAmount(1234), prompt_tokens=10, max_tokens=64)


def _gate(**flags: object) -> PaymentGate:
    cfg = build_config(flags={"secret_key": "k" * 40, "recipient": "0x" + "cd" * 20, "rpc_url": "http://x",
                              "chain_id": 31337, "store": "memory://", "realm": "unit.test", **flags})
    verifier = AsyncChargeVerifier(None, fee_payer=LocalSigner("0x" + "22" * 32))  # type: ignore[arg-type]
    return PaymentGate(cfg, MemoryStore(), verifier, clock=lambda: 1_900_000_000.0, nonce=lambda: "n")


def test_terms_are_kept_for_the_same_request_only() -> None:
    """The same route, body and quote get the very same terms; any difference gets its own."""
    gate = _gate()
    first = gate.terms(ROUTE, b'{"a":1}', QUOTE)
    assert gate.terms(ROUTE, b'{"a":1}', QUOTE) is first
    assert first.digest == body_digest(b'{"a":1}') and first.encoded and first.requests[0]["amount"] == "1234"
    other_body = gate.terms(ROUTE, b'{"a":2}', QUOTE)
    assert other_body.digest == body_digest(b'{"a":2}')
    dearer = gate.terms(ROUTE, b'{"a":1}', Quote("claude-haiku-4-5", AtomicAmount(2000), 10, 64))
    assert dearer.requests[0]["amount"] == "2000"
    assert gate.terms("POST /v1/messages", b'{"a":1}', QUOTE).route == "POST /v1/messages"


def test_kept_terms_follow_the_sponsor_budget() -> None:
    """Once this process learns the sponsor's budget is spent, the same body is offered unsponsored."""
    gate = _gate(fee_payer_key="0x" + "22" * 32, sponsor_budget=100_000)
    sponsored = gate.terms(ROUTE, b"{}", QUOTE)
    assert sponsored.requests[0]["methodDetails"]["feePayer"] is True
    gate._sponsor_left = ("2030-03-17", 0)  # what _draw_sponsor_gas records when the budget is spent
    unsponsored = gate.terms(ROUTE, b"{}", QUOTE)
    assert "feePayer" not in unsponsored.requests[0]["methodDetails"]
