"""The close watch without a chain: a fake escrow answers ``getChannel``; a payer's forced close is
seen, settled once (two workers sharing a store and books), the channel serves nothing more;
nothing is read when nothing is unsettled; finalized, missing and unreadable channels."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from mpp_claude.errors import ChannelClosing, ChannelFinalized, VerificationFailed
from mpp_claude.server.sessions import ChannelRecord, MemoryBook, SessionSettings, SQLiteBook
from mpp_claude.server.sessions.closewatch import CloseWatcher, Seen, mark_closing, seen_on_chain
from mpp_claude.server.sessions.meter import Meter
from mpp_claude.server.sessions.settle import settle_due
from mpp_claude.server.stores import MemoryStore
from mpp_claude.server.stores.sqlite import SQLiteStore
from mpp_claude.tempo.session import ChannelAccount, ChannelState

CID = "0x" + "11" * 32
OTHER = "0x" + "22" * 32
SIG = "ab" * 65
PAYER = "0x" + "33" * 20


def chain_state(*, requested: int = 0, finalized: bool = False, settled: int = 0, exists: bool = True
                ) -> ChannelState:
    payer = PAYER if exists else "0x" + "00" * 20
    return ChannelState(finalized, requested, payer, "0x" + "44" * 20, "0x" + "55" * 20, "0x" + "00" * 20,
                        1_000, settled)


class FakeEscrow:
    """``getChannel`` answers per channel (open by default); counts reads; may fail like a node."""

    def __init__(self) -> None:
        self.states: dict[str, ChannelState] = {}
        self.reads: list[str] = []
        self.fail = 0

    async def read(self, channel_id: str) -> ChannelState:
        self.reads.append(channel_id)
        if self.fail:
            self.fail -= 1
            raise VerificationFailed("the chain could not be reached to read the channel")
        return self.states.get(channel_id, chain_state())


class FakePayee:
    def __init__(self) -> None:
        self.calls: list[tuple[str, int]] = []

    async def settle(self, channel_id: str, amount: int, signature: bytes) -> str:
        await asyncio.sleep(0.01)  # let a second worker race for the same settlement
        self.calls.append((channel_id, amount))
        return "0x" + "cd" * 32


class Worker(Meter):
    def __init__(self, book: Any, store: Any, payee: FakePayee) -> None:
        self.book, self.store, self._payee = book, store, payee  # type: ignore[assignment]
        self.settings = SessionSettings(payee_key="")
        self._clock = lambda: 100.0
        super().__init__()


def record(cid: str = CID, *, spent: int = 150, settled: int = 0) -> ChannelRecord:
    account = ChannelAccount(cid, 200, spent, settled, 1_000, bytes.fromhex("ef" * 65))
    return ChannelRecord(account, payer=PAYER, vouchers=((100, SIG), (200, "ef" * 65)), last_settle_at=0.0)


async def put(book: Any, rec: ChannelRecord) -> None:
    await book.update(rec.channel_id, lambda _r: rec)


def test_seen_on_chain_and_settle_due() -> None:
    assert seen_on_chain(chain_state()) is Seen.OPEN
    assert seen_on_chain(chain_state(requested=1_700_000_000)) is Seen.CLOSING
    assert seen_on_chain(chain_state(requested=5, finalized=True)) is Seen.FINALIZED
    assert seen_on_chain(chain_state(exists=False)) is Seen.MISSING
    off = SessionSettings(payee_key="")  # settlement by amount and time both off
    assert not settle_due(record(), off, 1e9)
    assert settle_due(replace(record(), close_requested_at=7), off, 0.0)
    assert not settle_due(replace(record(spent=0), close_requested_at=7), off, 0.0)  # nothing unsettled
    assert mark_closing(7)(replace(record(), close_requested_at=7)) is None  # already marked
    assert mark_closing(7)(replace(record(), closed=True)) is None


def test_records_keep_the_close_request_and_read_old_rows() -> None:
    rec = replace(record(), close_requested_at=1_700_000_123)
    assert ChannelRecord.from_json(rec.to_json()) == rec
    old = rec.to_json().replace(',"close_requested_at":1700000123', "")
    assert "close_requested_at" not in old and ChannelRecord.from_json(old).close_requested_at == 0


def test_nothing_unsettled_reads_nothing() -> None:
    async def run() -> list[str]:
        book, escrow = MemoryBook(), FakeEscrow()
        await put(book, record(spent=0))
        await put(book, replace(record(OTHER), closed=True))
        watcher = CloseWatcher(Worker(book, MemoryStore(), FakePayee()), 15, escrow.read)
        assert await watcher.tick() == []
        return escrow.reads

    assert asyncio.run(run()) == []


@pytest.mark.parametrize("kind", ["memory", "sqlite"])
def test_forced_close_is_settled_once_and_the_channel_serves_no_more(kind: str, tmp_path: Path) -> None:
    async def run() -> tuple[FakePayee, ChannelRecord | None, ChannelRecord | None]:
        if kind == "memory":
            store: Any = MemoryStore()
            books: list[Any] = [MemoryBook()] * 2
        else:
            store = SQLiteStore(tmp_path / "s.sqlite3")
            books = [SQLiteBook(str(tmp_path / "s.sqlite3")) for _ in range(2)]
        payee, escrow = FakePayee(), FakeEscrow()
        workers = [Worker(book, store, payee) for book in books]
        await put(books[0], record())
        await put(books[0], record(OTHER))
        watchers = [CloseWatcher(w, 15, escrow.read) for w in workers]
        assert await watchers[0].tick() == []  # both open on chain: nothing happens
        assert sorted(escrow.reads) == [CID, OTHER] and payee.calls == []
        escrow.states[CID] = chain_state(requested=1_700_000_000)
        assert await asyncio.gather(*(w.tick() for w in watchers)) == [[CID], [CID]]
        with pytest.raises(ChannelClosing):
            await workers[1].hold(CID, "req-1", 1)
        await workers[1].hold(OTHER, "req-2", 1)  # the other channel still serves
        escrow.reads.clear()
        escrow.states[CID] = chain_state(requested=1_700_000_000, settled=100)
        assert await watchers[1].tick() == []  # CID is settled up to its best voucher: not read again
        assert escrow.reads == [OTHER]
        got = await books[1].get(CID), await books[1].get(OTHER)
        for w in workers:
            await w.aclose()
        for b in {id(x): x for x in books}.values():
            await b.close()
        await store.close()
        return payee, *got

    payee, rec, other = asyncio.run(run())
    assert payee.calls == [(CID, 100)]  # once, with the highest voucher not above spent (150)
    assert rec is not None and rec.account.settled == 100 and rec.close_requested_at == 1_700_000_000
    assert not rec.closed and other is not None and other.close_requested_at == 0


def test_a_request_in_flight_is_settled_when_it_ends() -> None:
    async def run() -> list[tuple[str, int]]:
        book, store, payee, escrow = MemoryBook(), MemoryStore(), FakePayee(), FakeEscrow()
        worker = Worker(book, store, payee)
        rec = record(spent=100)
        await put(book, replace(rec, vouchers=((100, SIG), (300, "ef" * 65)),
                                account=replace(rec.account, accepted_cumulative=300)))
        await worker.hold(CID, "req", 150)  # in flight when the payer requests the close
        escrow.states[CID] = chain_state(requested=9)
        await CloseWatcher(worker, 15, escrow.read).tick()
        book_rec = await book.get(CID)
        assert book_rec is not None and book_rec.close_requested_at == 9
        await worker.finish(CID, "req", 200 - 100)  # ends: spent 200, settled at once (nothing above 200)
        await worker.aclose()
        return payee.calls

    assert asyncio.run(run()) == [(CID, 100)]  # 300 > spent 200: never settled with unspent money


def test_finalized_missing_and_unreadable_channels(caplog: pytest.LogCaptureFixture) -> None:
    async def run() -> tuple[list[str], ChannelRecord | None, ChannelRecord | None, list[tuple[str, int]]]:
        book, store, payee, escrow = MemoryBook(), MemoryStore(), FakePayee(), FakeEscrow()
        worker = Worker(book, store, payee)
        await put(book, record())
        await put(book, record(OTHER))
        escrow.states[CID] = chain_state(requested=5, finalized=True, settled=20)
        escrow.states[OTHER] = chain_state(exists=False)
        watcher = CloseWatcher(worker, 15, escrow.read)
        escrow.fail = 2
        assert await watcher.tick() == []  # both reads failed: logged, nothing changed
        assert (await book.get(CID)) == record()
        assert await watcher.tick() == []
        with pytest.raises(ChannelFinalized):
            await worker.hold(CID, "r", 1)
        return escrow.reads, await book.get(CID), await book.get(OTHER), payee.calls

    with caplog.at_level(logging.WARNING, logger="mpp_claude.server.sessions"):
        reads, finalized, missing, calls = asyncio.run(run())
    assert len(reads) == 4 and calls == []
    assert finalized is not None and finalized.closed
    assert missing == record(OTHER)  # books kept: a lagging node must not erase a channel
    assert "could not be read" in caplog.text and "130 of its spent was never settled" in caplog.text
    assert "reports no channel" in caplog.text


def test_periodic_watch_runs_and_stops_cleanly() -> None:
    async def run() -> list[tuple[str, int]]:
        book, store, payee, escrow = MemoryBook(), MemoryStore(), FakePayee(), FakeEscrow()
        worker = Worker(book, store, payee)
        await put(book, record())
        escrow.states[CID] = chain_state(requested=3)
        watcher = CloseWatcher(worker, 0.02, escrow.read)
        watcher.start()
        for _ in range(200):
            if payee.calls:
                break
            await asyncio.sleep(0.01)
        await watcher.stop()
        await worker.aclose()
        off = CloseWatcher(worker, 0, escrow.read)
        off.start()  # close_watch_seconds = 0: no task
        assert off._task is None
        await off.stop()
        return payee.calls

    assert asyncio.run(run()) == [(CID, 100)]


def test_close_watch_setting() -> None:
    from mpp_claude.server.sessions import session_settings

    problems: list[str] = []
    default = session_settings({"session_payee_key": "ab" * 32}, problems)
    assert problems == [] and default is not None and default.close_watch_seconds == 15
    off = session_settings({"session_payee_key": "ab" * 32, "session_close_watch_seconds": "0"}, problems)
    assert problems == [] and off is not None and off.close_watch_seconds == 0
    assert session_settings({"session_payee_key": "ab" * 32, "session_close_watch_seconds": "900"},
                            problems) is None
    assert problems == ["session_close_watch_seconds: at most 300 (a payer's forced close must be seen well "
                        "within the escrow's 15-minute grace period; 0 turns it off)"]



def test_a_stream_waiting_for_a_voucher_ends_cleanly_when_the_channel_starts_closing() -> None:
    from mpp_claude.server.sessions.paid import _after_voucher

    class Gate:
        settings = SessionSettings(payee_key="")

        async def wait_and_hold(self, *_args: Any) -> None:
            raise ChannelClosing(f"channel {CID} has a forced close pending", channelId=CID)

    class Idem:
        aborted = False

        async def abort(self) -> None:
            Idem.aborted = True

    class Metered:
        channel_id, request_id = CID, "req"

    async def never() -> Any:
        raise AssertionError("served on a closing channel")

    async def run() -> list[bytes]:
        body = _after_voucher(Gate(), Metered(), {"requiredCumulative": "10"}, 10,  # type: ignore[arg-type]
                              never, False, Idem(), [])  # type: ignore[arg-type]
        return [chunk async for chunk in body]

    need, error = asyncio.run(run())
    assert need.startswith(b"event: payment-need-voucher")
    assert b'"code":"channel_closed"' in error and b"forced close pending; nothing was charged" in error
    assert error.endswith(b"data: [DONE]\n\n") and Idem.aborted


def test_books_take_a_settlement_another_replica_made() -> None:
    async def run() -> tuple[ChannelRecord | None, list[tuple[str, int]]]:
        book, store, payee, escrow = MemoryBook(), MemoryStore(), FakePayee(), FakeEscrow()
        await put(book, record())
        escrow.states[CID] = chain_state(settled=100)  # open; settled elsewhere
        assert await CloseWatcher(Worker(book, store, payee), 15, escrow.read).tick() == []
        return await book.get(CID), payee.calls

    rec, calls = asyncio.run(run())
    assert rec is not None and rec.account.settled == 100 and rec.close_requested_at == 0 and calls == []
