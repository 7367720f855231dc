"""The SQLite channel book's one-statement compare-and-set writes: a stale cached record (another
connection wrote since) is never the base of a write or of a refusal; old books migrate."""

from __future__ import annotations

import asyncio
import sqlite3
from dataclasses import replace
from pathlib import Path

import pytest

from mpp_claude.errors import InsufficientBalance
from mpp_claude.server.sessions import ChannelRecord, SQLiteBook
from mpp_claude.tempo.session import ChannelAccount

CID = "0x" + "11" * 32


def record(accepted: int = 100, spent: int = 0) -> ChannelRecord:
    return ChannelRecord(ChannelAccount(CID, accepted, spent, 0, 1_000, b"\x01" * 65), payer="0x" + "22" * 20)


def spend(amount: int):  # type: ignore[no-untyped-def]
    def apply(rec: ChannelRecord | None) -> ChannelRecord | None:
        assert rec is not None
        if rec.free < amount:
            raise InsufficientBalance("short", channelId=CID)
        return replace(rec, account=replace(rec.account, spent=rec.account.spent + amount))

    return apply


def test_two_connections_never_write_over_each_other(tmp_path: Path) -> None:
    async def run() -> int:
        a, b = SQLiteBook(str(tmp_path / "b.sqlite3")), SQLiteBook(str(tmp_path / "b.sqlite3"))
        await a.update(CID, lambda _r: record(accepted=1_000))
        for _ in range(20):  # each write makes the other book's cached record stale
            await a.update(CID, spend(3))
            await b.update(CID, spend(4))
        got = await a.get(CID)
        await a.close()
        await b.close()
        assert got is not None
        return got.account.spent

    assert asyncio.run(run()) == 20 * 7


def test_a_refusal_on_a_stale_record_is_decided_on_the_row(tmp_path: Path) -> None:
    async def run() -> int:
        a, b = SQLiteBook(str(tmp_path / "b.sqlite3")), SQLiteBook(str(tmp_path / "b.sqlite3"))
        await a.update(CID, lambda _r: record(accepted=10))
        await a.update(CID, spend(10))  # a's cache: nothing free
        await b.update(CID, lambda r: replace(r, account=replace(r.account, accepted_cumulative=50))
                       if r is not None else None)  # b accepted a higher voucher
        done = await a.update(CID, spend(30))  # a's stale record would refuse this
        with pytest.raises(InsufficientBalance):
            await a.update(CID, spend(30))  # the row refuses it too now
        await a.close()
        await b.close()
        assert done is not None
        return done.account.spent

    assert asyncio.run(run()) == 40


def test_a_book_from_before_row_versions_is_migrated(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite3"
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE mpp_session_channels (channel_id TEXT PRIMARY KEY, data TEXT NOT NULL) "
               "WITHOUT ROWID")
    db.execute("INSERT INTO mpp_session_channels VALUES (?, ?)", (CID, record(accepted=100).to_json()))
    db.commit()
    db.close()

    async def run() -> int:
        book = SQLiteBook(str(path))
        await book.update(CID, spend(5))
        again = SQLiteBook(str(path))  # a second process opening the migrated file
        got = await again.update(CID, spend(5))
        await book.close()
        await again.close()
        assert got is not None
        return got.account.spent

    assert asyncio.run(run()) == 10
