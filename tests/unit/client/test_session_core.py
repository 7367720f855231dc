"""SessionCore bookkeeping without a network: sign-ahead headroom, one ledger write per voucher,
reserve before signing (a budget refusal signs nothing), and the give-back at finalisation."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

import httpx2
import pytest
from _shop import KEY, ORIGIN, FakePayer

from mpp_claude.client import BudgetAlert, Hooks, MppClient, Policy, SessionPolicy, Wallet
from mpp_claude.client._session_core import SessionCore
from mpp_claude.client._session_reclaim import record_final
from mpp_claude.client.channels import StoredChannel
from mpp_claude.client.ledger import MemoryLedger
from mpp_claude.client.session import AUTO_HEADROOM_CAP, SessionOffer
from mpp_claude.errors import BudgetExceeded
from mpp_claude.protocol.challenge import new_challenge
from mpp_claude.tempo import tip20
from mpp_claude.tempo.session import PayerChannel

PAYEE, ESCROW, CID = "0x" + "ab" * 20, "0x" + "cd" * 20, "0x" + "01" * 32


def offer(amount: int = 1_000) -> SessionOffer:
    request: dict[str, Any] = {"amount": str(amount), "currency": tip20.PATH_USD, "recipient": PAYEE,
                               "methodDetails": {"chainId": 31337, "escrowContract": ESCROW}}
    ch = new_challenge("unit-test-secret-that-is-at-least-32-bytes-long", realm="shop.test", method="tempo",
                       intent="session", request=request,
                       expires=(datetime.now(timezone.utc) + timedelta(minutes=5)).replace(microsecond=0))
    return SessionOffer(ch, amount, tip20.PATH_USD, PAYEE, 31337, ESCROW, 0)


def core(policy: Policy | None = None, hooks: Hooks | None = None, **session: Any) -> SessionCore:
    client = MppClient(Wallet.from_private_key(KEY), transport=httpx2.MockTransport(lambda r: None),
                       payer=FakePayer(), ledger=MemoryLedger(), allowed_origins=[ORIGIN],
                       policy=policy or Policy(), hooks=hooks)
    return SessionCore(client._engine, SessionPolicy(max_deposit="5", channels=None, **session))


def channel(c: SessionCore, deposit: int = 1_000_000) -> StoredChannel:
    stored = StoredChannel(PayerChannel(CID, ESCROW, 31337, PAYEE, tip20.PATH_USD, deposit), c.wallet_address,
                           ORIGIN, "/v1/chat/completions")
    c.save(stored)
    return stored


def test_headroom_default_explicit_and_off() -> None:
    assert SessionPolicy(max_deposit="1").headroom_for(1_000) == 10_000
    assert SessionPolicy(max_deposit="1").headroom_for(10**9) == AUTO_HEADROOM_CAP
    assert SessionPolicy(max_deposit="1", headroom="0.02").headroom_for(1) == 20_000
    assert SessionPolicy(max_deposit="1", headroom=0).headroom_for(1_000) == 0


def test_sign_ahead_one_ledger_row_per_voucher() -> None:
    c = core()
    stored = channel(c)
    top, cumulative = c.plan(stored, 1_000, 1_000)
    assert (top, cumulative) == (0, 11_000)  # the request plus ten more requests' worth
    v = c.build_voucher(stored, offer(), cumulative, origin=ORIGIN, path="/v1", required=1_000)
    (row,) = c.engine.ledger.rows()
    assert (row.status, row.amount, row.reference) == ("settled", 11_000, CID)  # one write, final
    c.accepted(v)
    assert len(c.engine.ledger.rows()) == 1 and c.engine.ledger.rows()[0].status == "settled"
    again = c.build_voucher(v.stored, offer(), *c.plan(v.stored, 5_000, 1_000)[1:], origin=ORIGIN, path="/v1")
    assert again.value and again.delta == 0 and len(c.engine.ledger.rows()) == 1  # re-sent, nothing written


def test_budget_refusal_signs_nothing_and_sign_ahead_yields_to_the_budget(monkeypatch: pytest.MonkeyPatch
                                                                          ) -> None:
    c = core(Policy(max_per_client=5_000))
    stored = channel(c)
    signed: list[int] = []
    import mpp_claude.client._session_core as mod

    real = mod.sign_voucher
    monkeypatch.setattr(mod, "sign_voucher", lambda *a: signed.append(a[-1]) or real(*a))
    v = c.build_voucher(stored, offer(), 11_000, origin=ORIGIN, path="/v1", required=1_000)
    assert signed == [1_000] and v.stored.channel.signed_cumulative == 1_000  # headroom did not fit
    with pytest.raises(BudgetExceeded):
        c.build_voucher(v.stored, offer(), 9_000, origin=ORIGIN, path="/v1", required=9_000)
    assert signed == [1_000]  # refused before signing
    assert c.get(CID).channel.signed_cumulative == 1_000 and c.engine.lifetime.spent == 1_000


def test_signed_voucher_increases_give_budget_alerts() -> None:
    """A voucher's increase is a payment to the budgets: once signed it alerts like a charge (the
    sign-ahead part included, as it is reserved), each threshold once; a re-sent voucher alerts nothing."""
    seen: list[BudgetAlert] = []
    c = core(Policy(max_per_client=20_000, max_per_day=100_000), Hooks(on_budget=seen.append), headroom=0)
    v = channel(c)
    for _ in range(2):
        v = c.build_voucher(v, offer(5_000), v.channel.signed_cumulative + 5_000, origin=ORIGIN,
                            path="/v1/messages").stored
    assert [(a.limit, a.cap, a.used, a.threshold, a.amount, a.path, a.symbol) for a in seen] == [
        ("max_per_client", 20_000, 10_000, 0.5, 5_000, "/v1/messages", "pathUSD")]
    c.build_voucher(v, offer(5_000), v.channel.signed_cumulative, origin=ORIGIN, path="/v1")  # re-sent
    assert len(seen) == 1
    c.build_voucher(v, offer(9_000), v.channel.signed_cumulative + 9_000, origin=ORIGIN, path="/v1")
    assert [(a.limit, a.used, a.threshold) for a in seen[1:]] == [("max_per_client", 19_000, 0.95)]


def test_finalisation_gives_back_what_was_never_settled() -> None:
    c = core()
    stored = channel(c)
    v = c.build_voucher(stored, offer(), 11_000, origin=ORIGIN, path="/v1", required=1_000)
    assert c.engine.lifetime.spent == 11_000
    final = record_final(c, v.stored, status="withdrawn", settled=700, refunded=1_000_000 - 700)
    assert final.status == "withdrawn" and c.engine.ledger.spent(c.wallet_address, since=0) == 700
    assert c.engine.lifetime.spent == 700
    record_final(c, final, status="withdrawn", settled=700, refunded=1_000_000 - 700)  # twice: no more back
    assert c.engine.ledger.spent(c.wallet_address, since=0) == 700


@pytest.mark.parametrize("own", [None, "Bearer sk-test"])
def test_credential_goes_on_the_request_and_comes_off_again(own: str | None) -> None:
    from mpp_claude.client._session_shell import _with

    mine = [own] if own else []
    request = httpx2.Request("POST", ORIGIN + "/v1", headers={"authorization": own} if own else {})
    assert _with(request, None) is request and request.headers.get_list("authorization") == mine
    _with(request, "Payment one")
    _with(request, "Payment two")
    assert request.headers.get_list("authorization") == ["Payment two"]
    _with(request, None)  # an unpaid retry (after a 410) carries the caller's own header again
    assert request.headers.get_list("authorization") == mine
