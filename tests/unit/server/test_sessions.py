"""Server-side session pieces without a chain: offers and echo checks, the channel books."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from mpp_claude.errors import InvalidChallenge, PaymentExpired
from mpp_claude.protocol.challenge import Challenge
from mpp_claude.server.sessions import (
    ChannelRecord,
    MemoryBook,
    SessionTerms,
    SQLiteBook,
    check_session_echo,
    session_offers,
)
from mpp_claude.tempo.session import ChannelAccount

SECRET = b"s" * 32
NOW = datetime(2026, 11, 25, 12, 0, tzinfo=timezone.utc)
TERMS = SessionTerms(realm="r", recipient="0x" + "aa" * 20, chain_id=31337, escrow="0x" + "bb" * 20,
                     currencies=("0x20c0000000000000000000000000000000000000",), suggested_deposit=1_000_000)
ROUTE = "POST /v1/chat/completions"


def offer(**kw: object) -> Challenge:
    (ch,) = session_offers(TERMS, route=ROUTE, amount=500, secret=SECRET, now=NOW, ttl=300, nonce="n")
    return replace(ch, **kw) if kw else ch  # type: ignore[arg-type]


def test_offer_shape() -> None:
    ch = offer()
    assert (ch.method, ch.intent, ch.digest) == ("tempo", "session", None)
    data = ch.request_data
    assert data["amount"] == "500" and data["unitType"] == "request"
    assert data["methodDetails"] == {"chainId": 31337, "escrowContract": TERMS.escrow}


def test_echo_accepted_and_bound_to_route_and_time() -> None:
    echo = check_session_echo(offer(), TERMS, route=ROUTE, secret=SECRET, now=NOW)
    assert echo.amount == 500
    with pytest.raises(InvalidChallenge):
        check_session_echo(offer(), TERMS, route="POST /v1/messages", secret=SECRET, now=NOW)
    with pytest.raises(PaymentExpired):
        check_session_echo(offer(), TERMS, route=ROUTE, secret=SECRET, now=NOW + timedelta(seconds=301))
    with pytest.raises(InvalidChallenge):
        check_session_echo(offer(), TERMS, route=ROUTE, secret=b"t" * 32, now=NOW)
    with pytest.raises(InvalidChallenge):  # the server's terms changed (another escrow)
        check_session_echo(offer(), replace(TERMS, escrow="0x" + "cc" * 20), route=ROUTE, secret=SECRET,
                           now=NOW)


def record(accepted: int = 100, spent: int = 0) -> ChannelRecord:
    return ChannelRecord(ChannelAccount("0x" + "11" * 32, accepted, spent, 0, 1000, b"\x01" * 65),
                         payer="0xp")


def test_record_json_round_trip_and_voucher_history() -> None:
    rec = record().with_account(ChannelAccount("0x" + "11" * 32, 100, 0, 0, 1000, b"\x01" * 65))
    rec = rec.with_account(replace(rec.account, accepted_cumulative=300, voucher_signature=b"\x02" * 65))
    rec = replace(rec, holds={"r1": (50, 1.5)})
    again = ChannelRecord.from_json(rec.to_json())
    assert again == rec
    assert [a for a, _ in again.vouchers] == [100, 300] and again.free == 250
    settled = again.with_account(replace(again.account, settled=100))
    assert [a for a, _ in settled.vouchers] == [300]


@pytest.mark.parametrize("kind", ["sqlite", "memory"])
def test_book_updates_are_atomic_and_persistent(kind: str, tmp_path: Path) -> None:
    path = str(tmp_path / "book.sqlite3")

    async def main() -> None:
        book = SQLiteBook(path) if kind == "sqlite" else MemoryBook()
        cid = "0x" + "11" * 32
        await book.update(cid, lambda _r: record())

        def spend(r: ChannelRecord | None) -> ChannelRecord | None:
            assert r is not None
            return replace(r, account=replace(r.account, spent=r.account.spent + 1))

        await asyncio.gather(*(book.update(cid, spend) for _ in range(50)))

        def refuse(r: ChannelRecord | None) -> ChannelRecord | None:
            raise ValueError("refused")

        with pytest.raises(ValueError):
            await book.update(cid, refuse)
        got = await book.get(cid)
        assert got is not None and got.account.spent == 50
        if kind == "sqlite":
            await book.close()
            again = await SQLiteBook(path).get(cid)
            assert again is not None and again.account.spent == 50

    asyncio.run(main())


def test_settlement_rules() -> None:
    from mpp_claude.server.sessions import SessionSettings
    from mpp_claude.server.sessions.settle import settle_due, settle_voucher

    rec = record(accepted=300, spent=0)
    rec = rec.with_account(replace(rec.account, accepted_cumulative=100, voucher_signature=b"\x02" * 65))
    rec = rec.with_account(replace(rec.account, accepted_cumulative=300, voucher_signature=b"\x03" * 65))
    by_amount = SessionSettings(payee_key="00", settle_every_amount=150)
    by_time = SessionSettings(payee_key="00", settle_every_seconds=60)
    assert not settle_due(rec, by_amount, 0) and settle_voucher(rec) is None  # nothing spent yet
    spent = replace(rec, account=replace(rec.account, spent=200))
    assert settle_due(spent, by_amount, 0) and not settle_due(spent, by_time, 59)
    assert settle_due(spent, by_time, 60)
    assert settle_voucher(spent) == (100, b"\x02" * 65)  # the highest voucher not above spent
    assert not settle_due(replace(spent, closed=True), by_amount, 0)


def test_session_settings_from_config_keys() -> None:
    from mpp_claude.server.sessions import session_settings

    problems: list[str] = []
    got = session_settings({"session_payee_key": "ab" * 32, "session_settle_amount": "5000",
                            "session_escrow": "0x" + "CC" * 20}, problems)
    assert problems == [] and got is not None
    assert got.settle_every_amount == 5000 and got.escrow == "0x" + "cc" * 20
    bad: list[str] = []
    assert session_settings({"session_settle_amount": "-1", "session_fee_token": "x"}, bad) is None
    assert [p.split(":")[0] for p in bad] == ["session_payee_key", "session_settle_amount",
                                              "session_fee_token"]
    assert all("ab" * 32 not in p for p in bad)
