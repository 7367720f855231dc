"""The settlement sweeper without a chain: due channels, single flight across two workers sharing
a store and books, failures retried by the next tick, clean stop."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

import pytest

from mpp_claude.errors import RpcUnavailable
from mpp_claude.server.sessions import ChannelRecord, MemoryBook, SessionSettings, SQLiteBook
from mpp_claude.server.sessions.meter import Meter, safe_error
from mpp_claude.server.sessions.sweeper import Sweeper
from mpp_claude.server.stores import MemoryStore
from mpp_claude.server.stores.sqlite import SQLiteStore
from mpp_claude.tempo.session import ChannelAccount

CID = "0x" + "11" * 32
SIG = "ab" * 65


class FakePayee:
    """Counts settlements; the first ``fail`` calls raise like an unreachable node would."""

    def __init__(self, fail: int = 0) -> None:
        self.calls: list[tuple[str, int]] = []
        self.fail = fail

    async def settle(self, channel_id: str, amount: int, signature: bytes) -> str:
        await asyncio.sleep(0.01)  # let a second worker race for the same settlement
        if self.fail:
            self.fail -= 1
            raise RpcUnavailable("eth_sendRawTransaction: ConnectError (https://rpc.example/SECRET-KEY)")
        self.calls.append((channel_id, amount))
        return "0x" + "cd" * 32


class Worker(Meter):
    def __init__(self, book: Any, store: Any, payee: FakePayee, clock: list[float]) -> None:
        self.book, self.store, self._payee = book, store, payee  # type: ignore[assignment]
        self.settings = SessionSettings(payee_key="", settle_every_seconds=10)
        self._clock = lambda: clock[0]
        super().__init__()


def unsettled_record(cid: str = CID, *, spent: int = 150, last: float = 0.0) -> ChannelRecord:
    account = ChannelAccount(cid, 200, spent, 0, 1_000, bytes.fromhex("ef" * 65))
    return ChannelRecord(account, payer="0x" + "22" * 20, vouchers=((100, SIG), (200, "ef" * 65)),
                         last_settle_at=last)


async def put(book: Any, rec: ChannelRecord) -> None:
    await book.update(rec.channel_id, lambda _r: rec)


def test_books_list_only_open_unsettled_channels_old_enough(tmp_path: Path) -> None:
    async def run(book: Any) -> list[str]:
        await put(book, unsettled_record("0x" + "01" * 32, last=5.0))
        await put(book, unsettled_record("0x" + "02" * 32, last=50.0))  # settled recently
        await put(book, unsettled_record("0x" + "03" * 32, spent=0))  # nothing spent
        closed = unsettled_record("0x" + "04" * 32)
        await put(book, ChannelRecord(closed.account, closed.payer, closed=True))
        found = sorted(r.channel_id for r in await book.unsettled(10.0))
        everything = sorted(r.channel_id for r in await book.unsettled(float("inf")))
        assert everything == ["0x" + "01" * 32, "0x" + "02" * 32]
        await book.close()
        return found

    for book in (MemoryBook(), SQLiteBook(str(tmp_path / "b.sqlite3"))):
        assert asyncio.run(run(book)) == ["0x" + "01" * 32]


@pytest.mark.parametrize("kind", ["memory", "sqlite"])
def test_two_workers_settle_once_with_the_highest_voucher_not_above_spent(kind: str, tmp_path: Path) -> None:
    async def run() -> tuple[FakePayee, ChannelRecord | None, list[Any]]:
        clock = [100.0]
        if kind == "memory":
            store: Any = MemoryStore(clock=lambda: clock[0])
            books: list[Any] = [MemoryBook()] * 2
        else:
            store = SQLiteStore(tmp_path / "s.sqlite3")
            books = [SQLiteBook(str(tmp_path / "s.sqlite3")) for _ in range(2)]
        payee = FakePayee()
        workers = [Worker(book, store, payee, clock) for book in books]
        await put(books[0], unsettled_record())
        sweepers = [Sweeper(w, 10, lambda: clock[0]) for w in workers]
        assert await asyncio.gather(*(s.sweep() for s in sweepers)) == [[CID], [CID]]
        assert await sweepers[0].sweep() == []  # settled just now: not due for 10 s
        clock[0] += 10
        assert await sweepers[1].sweep() == []  # due, but no voucher in (settled, spent]
        rows = list(await store.records("session_tx"))
        rec = await books[1].get(CID)
        for w in workers:
            await w.aclose()
        for b in set(map(id, books)):
            await next(x for x in books if id(x) == b).close()
        await store.close()
        return payee, rec, rows

    payee, rec, rows = asyncio.run(run())
    assert payee.calls == [(CID, 100)]
    assert rec is not None and rec.account.settled == 100 and rec.last_settle_at == 100.0
    assert [(r["kind"], r["amount"]) for r in rows] == [("settle", "100")]


def test_a_failed_settlement_is_logged_without_the_url_and_retried(caplog: pytest.LogCaptureFixture) -> None:
    async def run() -> tuple[FakePayee, ChannelRecord | None]:
        clock = [100.0]
        book, store, payee = MemoryBook(), MemoryStore(clock=lambda: clock[0]), FakePayee(fail=1)
        worker = Worker(book, store, payee, clock)
        await put(book, unsettled_record())
        sweeper = Sweeper(worker, 10, lambda: clock[0])
        await sweeper.sweep()
        assert payee.calls == []
        await sweeper.sweep()  # the lease was released: the next tick retries
        return payee, await book.get(CID)

    with caplog.at_level(logging.WARNING, logger="mpp_claude.server.sessions"):
        payee, rec = asyncio.run(run())
    assert payee.calls == [(CID, 100)] and rec is not None and rec.account.settled == 100
    assert "RpcUnavailable" in caplog.text and "SECRET-KEY" not in caplog.text


def test_periodic_sweep_runs_and_stops_cleanly() -> None:
    async def run() -> list[tuple[str, int]]:
        clock = [100.0]
        book, store, payee = MemoryBook(), MemoryStore(clock=lambda: clock[0]), FakePayee()
        worker = Worker(book, store, payee, clock)
        await put(book, unsettled_record())
        sweeper = Sweeper(worker, 0.05, lambda: clock[0])
        assert sweeper.interval == 0.05
        sweeper.start()
        for _ in range(200):
            if payee.calls:
                break
            await asyncio.sleep(0.01)
        await sweeper.stop()
        await worker.aclose()
        assert all(t.done() for t in asyncio.all_tasks() if t is not asyncio.current_task())
        return payee.calls

    assert asyncio.run(run()) == [(CID, 100)]
    off = Sweeper(Worker(MemoryBook(), MemoryStore(), FakePayee(), [0.0]), 0, lambda: 0.0)
    assert off.interval == 0

    async def start_off() -> None:
        off.start()  # settle_every_seconds = 0: no task
        assert off._task is None
        await off.stop()

    asyncio.run(start_off())
    assert Sweeper(Worker(MemoryBook(), MemoryStore(), FakePayee(), [0.0]), 3600, lambda: 0.0).interval == 5.0


def test_safe_error_hides_rpc_urls() -> None:
    exc = RpcUnavailable("eth_call: ConnectError: refused (https://rpc.example/KEY)")
    assert safe_error(exc) == "RpcUnavailable" and "KEY" not in safe_error(exc)
    assert safe_error(ValueError("x")) == "ValueError: x"


def test_after_response_work_is_awaited_and_failures_logged(caplog: pytest.LogCaptureFixture) -> None:
    async def run() -> list[str]:
        worker = Worker(MemoryBook(), MemoryStore(), FakePayee(), [0.0])
        done: list[str] = []

        async def store_it() -> None:
            await asyncio.sleep(0.01)
            done.append("stored")

        async def broken() -> None:
            raise RpcUnavailable("down (https://rpc.example/SECRET-KEY)")

        assert await worker.drain_after() is False
        worker.after_response(store_it())
        assert await worker.drain_after() is True and done == ["stored"]
        worker.after_response(store_it())
        worker.after_response(broken())
        await worker.aclose()
        return done

    with caplog.at_level(logging.ERROR, logger="mpp_claude.server.sessions"):
        assert asyncio.run(run()) == ["stored", "stored"]
    assert "RpcUnavailable" in caplog.text and "SECRET-KEY" not in caplog.text


def test_settle_on_shutdown_setting() -> None:
    from mpp_claude.server.config import build_config
    from mpp_claude.server.sessions import session_settings
    from mpp_claude.tempo.signer import LocalSigner

    problems: list[str] = []
    got = session_settings({"session_payee_key": "ab" * 32, "session_settle_seconds": "30",
                            "session_settle_on_shutdown": "yes"}, problems)
    assert problems == [] and got is not None and got.settle_on_shutdown and got.settle_every_seconds == 30
    assert session_settings({"session_payee_key": "ab" * 32, "session_settle_on_shutdown": "maybe"},
                            problems) is None
    assert problems == ["session_settle_on_shutdown: expected true/false, got 'maybe'"]
    payee = LocalSigner(bytes.fromhex("ab" * 32)).address
    base = {"secret_key": "k" * 32, "recipient": payee, "rpc_url": "http://127.0.0.1:1", "chain_id": 31337}
    env = {"sessions": "1", "session_payee_key": "ab" * 32, "session_settle_on_shutdown": "true"}
    config = build_config(flags=base, env=env)
    assert config.sessions is not None and config.sessions.settle_on_shutdown


def test_a_reverted_settlement_is_not_sent_again_for_the_same_amount() -> None:
    from mpp_claude.tempo.session import ChannelState
    from mpp_claude.tempo.session.onchain import EscrowReverted

    class Reverting(FakePayee):
        async def settle(self, channel_id: str, amount: int, signature: bytes) -> str:
            self.calls.append((channel_id, amount))
            raise EscrowReverted("escrow transaction 0xab reverted (gas used 21000)", tx_hash="0xab")

    class Chain(Worker):
        async def _state(self, channel_id: str, *, fresh: bool = False) -> ChannelState:
            return ChannelState(False, 0, "0x" + "22" * 20, "0x" + "33" * 20, "0x" + "44" * 20,
                                "0x" + "00" * 20, 1_000, 0)  # live, nothing settled: no explanation

    async def run() -> list[tuple[str, int]]:
        clock = [100.0]
        book, payee = MemoryBook(), Reverting()
        worker = Chain(book, MemoryStore(clock=lambda: clock[0]), payee, clock)
        await put(book, unsettled_record())
        sweeper = Sweeper(worker, 10, lambda: clock[0])
        await sweeper.sweep()
        await sweeper.sweep()  # same amount: not sent again (each attempt costs a fee)
        await put(book, unsettled_record(spent=200))  # a new voucher amount becomes settleable
        await sweeper.sweep()
        return payee.calls

    assert asyncio.run(run()) == [(CID, 100), (CID, 200)]
