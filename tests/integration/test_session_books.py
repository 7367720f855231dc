"""The session channel books on a real Redis and across processes on one SQLite file."""

from __future__ import annotations

import asyncio
import multiprocessing
import uuid
from dataclasses import replace
from pathlib import Path

from mpp_claude.server.sessions import ChannelRecord, SQLiteBook, open_book
from mpp_claude.server.stores.redis import RedisStore
from mpp_claude.tempo.session import ChannelAccount

CID = "0x" + "11" * 32
N = 40


def _spend(rec: ChannelRecord | None) -> ChannelRecord | None:
    assert rec is not None
    return replace(rec, account=replace(rec.account, spent=rec.account.spent + 1))


def _first(_rec: ChannelRecord | None) -> ChannelRecord:
    return ChannelRecord(ChannelAccount(CID, 1000, 0, 0, 1000, b"\x01" * 65), payer="0xp")


def test_redis_book_updates_are_atomic(redis_url: str) -> None:
    async def main() -> None:
        store = RedisStore(redis_url, prefix=f"test-{uuid.uuid4().hex}:")
        try:
            books = [open_book(store) for _ in range(3)]
            await books[0].update(CID, _first)
            await asyncio.gather(*(books[i % 3].update(CID, _spend) for i in range(N)))
            got = await books[1].get(CID)
            assert got is not None and got.account.spent == N
        finally:
            await store.close()

    asyncio.run(main())


def _worker(path: str) -> None:
    async def main() -> None:
        book = SQLiteBook(path)
        for _ in range(N):
            await book.update(CID, _spend)
        await book.close()

    asyncio.run(main())


def test_sqlite_book_is_atomic_across_processes(tmp_path: Path) -> None:
    path = str(tmp_path / "books.sqlite3")

    async def seed() -> None:
        book = SQLiteBook(path)
        await book.update(CID, _first)
        await book.close()

    asyncio.run(seed())
    ctx = multiprocessing.get_context("forkserver")
    procs = [ctx.Process(target=_worker, args=(path,)) for _ in range(3)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    assert [p.exitcode for p in procs] == [0, 0, 0]

    async def read() -> int:
        book = SQLiteBook(path)
        got = await book.get(CID)
        await book.close()
        assert got is not None
        return got.account.spent

    assert asyncio.run(read()) == 3 * N
