"""PaymentGate: terms kept per (route, body, quote, sponsorship) so the paid retry reuses its 402's;
``on_claimed`` called exactly when every claim succeeded, before the broadcast."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest

from mpp_claude.errors import (
    BadRequest,
    CredentialReplayed,
    PaymentExpired,
    PaymentInsufficient,
    VerificationError,
    VerificationFailed,
)
from mpp_claude.protocol.credential import Credential, format_credential, parse_credential
from mpp_claude.server.binding import body_digest
from mpp_claude.server.config import build_config
from mpp_claude.server.payments import Paid, PaymentGate, Replayed
from mpp_claude.server.pricing import AtomicAmount, Quote
from mpp_claude.server.stores import MemoryStore
from mpp_claude.server.stores.base import StoredResponse, request_fingerprint
from mpp_claude.tempo.charge import build_charge_transaction, sign_charge
from mpp_claude.tempo.request import ChargeRequest
from mpp_claude.tempo.settle import AsyncChargeVerifier, SettledPayment
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


# --- on_claimed: the moment the route may start its upstream call ---------------------------------

NOW = 1_900_000_000
BODY = b'{"model":"claude-haiku-4-5"}'
PAYER_KEY = "0x" + "33" * 32


class RecordingStore(MemoryStore):
    """A MemoryStore noting each claim and draw in ``events`` (shared with the verifier and callback)."""

    def __init__(self, events: list[str]) -> None:
        super().__init__()
        self.events = events

    async def claim(self, key: str, ttl_s: float) -> bool:
        won = await super().claim(key, ttl_s)
        self.events.append(f"claim {key.split(':')[0]} {'won' if won else 'lost'}")
        return won

    async def draw(self, key: str, amount: int, limit: int, ttl_s: float) -> int | None:
        total = await super().draw(key, amount, limit, ttl_s)
        self.events.append(f"draw {'ok' if total is not None else 'refused'}")
        return total


class ScriptedVerifier:
    """Stands for AsyncChargeVerifier: ``refuse`` before the claim, else claim (pull: the
    transaction hash; push: after the receipt), "broadcast", then ``fail`` or settle."""

    def __init__(self, events: list[str], *, refuse: Exception | None = None, fail: Exception | None = None,
                 fee_payer: LocalSigner | None = None) -> None:
        self.events, self.refuse, self.fail, self.fee_payer = events, refuse, fail, fee_payer

    async def verify(self, payload: Any, ctx: Any, *, claim: Any, source: Any = None, decoded: Any = None,
                     sender: Any = None, claimed_sender: Any = None) -> SettledPayment:
        self.events.append("checks")
        if self.refuse is not None:
            raise self.refuse
        tx_hash = "0x" + "ab" * 32
        if payload["type"] == "hash":
            self.events.append("receipt")
        if not await claim(tx_hash):
            raise CredentialReplayed("claim refused")
        self.events.append("broadcast")
        if self.fail is not None:
            raise self.fail
        req = ctx.request
        payer = LocalSigner(PAYER_KEY).address.lower()  # what the chain says: the signer paid
        return SettledPayment(payer, tx_hash, req.amount, req.currency, req.recipient, tx_hash, 1)


def _paying_gate(events: list[str], verifier: ScriptedVerifier | None = None, *,
                 clock: list[float] | None = None, **flags: Any) -> tuple[PaymentGate, RecordingStore]:
    cfg = build_config(flags={"secret_key": "k" * 40, "recipient": "0x" + "cd" * 20, "rpc_url": "http://x",
                              "chain_id": 31337, "store": "memory://", "realm": "unit.test", **flags})
    store = RecordingStore(events)
    now = clock or [float(NOW)]
    gate = PaymentGate(cfg, store, verifier or ScriptedVerifier(events),  # type: ignore[arg-type]
                       clock=lambda: now[0], nonce=lambda: "n")
    return gate, store


def _credential(gate: PaymentGate, body: bytes = BODY, mode: str = "transaction") -> tuple[Any, str]:
    """The terms of ``body`` and an ``Authorization`` value paying them with a real signed charge."""
    terms = gate.terms(ROUTE, body, QUOTE)
    (challenge,) = gate.challenges(terms)
    request = ChargeRequest.from_request(challenge.request_data)
    expires = int(challenge.expires_at.timestamp()) if challenge.expires_at else None
    tx = build_charge_transaction(request, challenge_id=challenge.id, realm=challenge.realm, now=NOW,
                                  expires=expires, max_fee_per_gas=10**10)
    signed = sign_charge(tx, LocalSigner(PAYER_KEY))
    payload = signed.payload() if mode == "transaction" else {"type": "hash", "hash": "0x" + "ab" * 32}
    credential = Credential(challenge=challenge, payload=payload, source=signed.source)
    return terms, format_credential(credential)


def _authorize(gate: PaymentGate, terms: Any, auth: str, events: list[str], key: str | None = None,
               body: bytes = BODY) -> Any:
    def on_claimed() -> None:
        events.append("on_claimed")

    return asyncio.run(gate.authorize(terms, body, [auth], key, on_claimed=on_claimed))


def test_on_claimed_follows_every_claim_and_the_gas_draw_and_precedes_the_broadcast() -> None:
    """A sponsored transaction credential: challenge claim, tx claim, sponsor gas, then on_claimed
    (once), then the broadcast."""
    events: list[str] = []
    sponsor = LocalSigner("0x" + "22" * 32)
    gate, _ = _paying_gate(events, ScriptedVerifier(events, fee_payer=sponsor),
                           fee_payer_key="0x" + "22" * 32, sponsor_budget=10_000_000)
    terms, auth = _credential(gate)
    assert isinstance(_authorize(gate, terms, auth, events), Paid)
    assert events == ["checks", "claim challenge won", "claim tx won", "draw ok", "on_claimed", "broadcast"]


def test_on_claimed_is_called_although_the_settlement_fails_afterwards() -> None:
    """The chain refuses after the claims: on_claimed ran (the route abandons its call), the error stands."""
    events: list[str] = []
    gate, _ = _paying_gate(events, ScriptedVerifier(events, fail=VerificationFailed("reverted")))
    terms, auth = _credential(gate)
    with pytest.raises(VerificationFailed):
        _authorize(gate, terms, auth, events)
    assert events == ["checks", "claim challenge won", "claim tx won", "on_claimed", "broadcast"]


def test_a_failing_on_claimed_does_not_fail_the_payment(caplog: pytest.LogCaptureFixture) -> None:
    """A bug in the callback is logged; the claimed credential is still broadcast and paid."""
    events: list[str] = []
    gate, _ = _paying_gate(events)
    terms, auth = _credential(gate)

    def broken() -> None:
        events.append("on_claimed")
        raise RuntimeError("bug")

    with caplog.at_level(logging.ERROR, logger="mpp_claude.server.payments"):
        paid = asyncio.run(gate.authorize(terms, BODY, [auth], None, on_claimed=broken))
    assert isinstance(paid, Paid)
    assert events == ["checks", "claim challenge won", "claim tx won", "on_claimed", "broadcast"]
    assert "on_claimed failed" in caplog.text


@pytest.mark.parametrize("case", ["challenge used", "tx used", "gas budget spent", "refused by the checks"])
def test_on_claimed_is_not_called_unless_every_claim_succeeded(case: str) -> None:
    """A lost claim, a spent sponsor budget or a credential refused before its claims: no on_claimed."""
    events: list[str] = []
    sponsored = case == "gas budget spent"
    verifier = ScriptedVerifier(events, refuse=PaymentInsufficient("too little")
                                if case == "refused by the checks" else None,
                                fee_payer=LocalSigner("0x" + "22" * 32) if sponsored else None)
    flags: dict[str, Any] = {}
    if sponsored:  # a budget below one charge's gas limit
        flags = {"fee_payer_key": "0x" + "22" * 32, "sponsor_budget": 21_000}
    gate, store = _paying_gate(events, verifier, **flags)
    terms, auth = _credential(gate)
    challenge_id = parse_credential(auth).challenge.id
    if case == "challenge used":
        asyncio.run(store.claim(f"challenge:{challenge_id}", 60))
    if case == "tx used":
        asyncio.run(store.claim("tx:0x" + "ab" * 32, 60))
    events.clear()
    with pytest.raises(VerificationError):
        _authorize(gate, terms, auth, events)
    assert "on_claimed" not in events and "broadcast" not in events


def test_on_claimed_is_not_called_for_a_hash_credential() -> None:
    """Push mode claims after the receipt: nothing is left to overlap, on_claimed is not called."""
    events: list[str] = []
    gate, _ = _paying_gate(events)
    terms, auth = _credential(gate, mode="hash")
    assert isinstance(_authorize(gate, terms, auth, events), Paid)
    assert events == ["checks", "receipt", "claim challenge won", "claim tx won", "broadcast"]


def test_on_claimed_is_not_called_for_idempotency_answers() -> None:
    """Replay (stored answer), 422 (another body), 409 (in flight) and an expired credential
    without a stored answer: the verifier is not reached, on_claimed never called."""
    events: list[str] = []
    clock = [float(NOW)]
    gate, store = _paying_gate(events, clock=clock)
    terms, auth = _credential(gate)
    paid = _authorize(gate, terms, auth, events, key="k1")
    asyncio.run(gate.finish(paid, StoredResponse(200, (), b"{}")))
    events.clear()
    assert isinstance(_authorize(gate, terms, auth, events, key="k1"), Replayed)  # replay
    other = b'{"model":"claude-haiku-4-5","x":1}'
    other_terms, other_auth = _credential(gate, other)
    with pytest.raises(BadRequest) as conflict:
        _authorize(gate, other_terms, other_auth, events, key="k1", body=other)
    assert conflict.value.status == 422
    payer = LocalSigner(PAYER_KEY).address.lower()
    asyncio.run(store.idem_begin(f"{payer}:k2", request_fingerprint(ROUTE, other)))  # still running
    with pytest.raises(BadRequest) as running:
        _authorize(gate, other_terms, other_auth, events, key="k2", body=other)
    assert running.value.status == 409
    clock[0] += 3600
    with pytest.raises(PaymentExpired):
        _authorize(gate, other_terms, other_auth, events, key="k3", body=other)
    assert events == []
