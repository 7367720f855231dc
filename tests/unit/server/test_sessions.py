"""Server-side session pieces without a chain: offers and echo checks, the channel books."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

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


def offer() -> Challenge:
    (ch,) = session_offers(TERMS, route=ROUTE, amount=500, secret=SECRET, now=NOW, ttl=300, nonce="n")
    assert isinstance(ch, Challenge)
    return ch


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


def test_build_config_sessions_switch() -> None:
    from mpp_claude.errors import ConfigError
    from mpp_claude.server.config import build_config
    from mpp_claude.tempo.signer import LocalSigner

    payee = LocalSigner(bytes.fromhex("ab" * 32)).address
    base = {"secret_key": "k" * 32, "recipient": payee, "rpc_url": "http://127.0.0.1:1", "chain_id": 31337}
    assert build_config(flags=base).sessions is None  # off by default
    on = build_config(flags=base, env={"sessions": "true", "session_payee_key": "ab" * 32,
                                       "session_settle_amount": "100"})
    assert on.sessions is not None and on.sessions.settle_every_amount == 100
    with pytest.raises(ConfigError) as info:
        build_config(flags={**base, "sessions": True})
    assert "session_payee_key" in str(info.value)
    with pytest.raises(ConfigError) as info:
        build_config(flags={**base, "recipient": "0x" + "aa" * 20, "sessions": True,
                            "session_payee_key": "ab" * 32})
    assert "not the recipient" in str(info.value) and "ab" * 32 not in str(info.value)


class _FakeGate:
    def __init__(self) -> None:
        self.finished: list[int] = []

    async def finish(self, channel_id: str, request_id: str, cost: int) -> ChannelRecord:
        self.finished.append(cost)
        return record(accepted=500, spent=cost)

    def receipt(self, rec: ChannelRecord, challenge_id: str, *, cost: int | None = None) -> object:
        from mpp_claude.protocol.receipt import Receipt

        return Receipt(status="success", timestamp="2026-11-25T12:00:00Z", reference=rec.channel_id,
                       method="tempo", extra={"intent": "session", "spent": str(rec.account.spent)})


def test_metered_stream_puts_the_receipt_before_done_and_charges_once() -> None:
    from types import SimpleNamespace

    from mpp_claude.server.sessions.stream import Metered as _Metered

    async def upstream(chunks: list[bytes]) -> Any:
        for c in chunks:
            yield c

    async def run(chunks: list[bytes]) -> tuple[bytes, list[int]]:
        gate = _FakeGate()
        metered = _Metered(gate, "0x" + "11" * 32, "r1", "ch", SimpleNamespace(cost=7),  # type: ignore[arg-type]
                           lambda: 42)
        out = b"".join([c async for c in metered.stream(upstream(chunks))])
        return out, gate.finished

    body, finished = asyncio.run(run([b"data: {}\n\n", b"data: {}\n\ndata: [DONE]\n\n"]))
    assert finished == [42]
    assert body.index(b"event: payment-receipt") < body.index(b"data: [DONE]")
    assert body.endswith(b"data: [DONE]\n\n")
    body, finished = asyncio.run(run([b"data: {}\n\n"]))  # broke off: no [DONE]; the usage row's cost
    assert finished == [7] and body.endswith(b"\n\n") and b"payment-receipt" in body


def test_usage_tap_reads_usage_across_any_split() -> None:
    from mpp_claude.server.sessions.stream import UsageTap
    from mpp_claude.server.upstreams.base import UpstreamResponse

    start = b'{"type":"message_start","message":{"usage":{"input_tokens":7}}}'
    stream = (b"event: message_start\ndata: " + start + b"\n\n"
              b'event: content_block_delta\ndata: {"type":"content_block_delta"}\n\n'
              b'event: message_delta\ndata: {"type":"message_delta","usage":{"output_tokens":12}}\n\n'
              b'event: message_stop\ndata: {"type":"message_stop"}\n\n')

    class Up:
        def __init__(self, data: bytes, size: int) -> None:
            self.data, self.size = data, size

        async def send(self, body: Any, *, stream: bool, headers: Any = None) -> UpstreamResponse:
            async def chunks() -> Any:
                for i in range(0, len(self.data), self.size):
                    yield self.data[i:i + self.size]

            return UpstreamResponse(200, {}, stream=chunks())

    async def run(data: bytes, size: int) -> dict[str, Any]:
        tap = UsageTap(Up(data, size))  # type: ignore[arg-type]
        up = await tap.send({}, stream=True)
        assert up.stream is not None
        assert b"".join([c async for c in up.stream]) == data
        return tap.usage

    for size in (1, 7, 50, len(stream)):
        for data in (stream, stream.replace(b"\n", b"\r\n")):
            assert asyncio.run(run(data, size)) == {"input_tokens": 7, "output_tokens": 12}
