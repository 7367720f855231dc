"""The server's per-channel books, persisted next to the other server state, updated atomically.

One ``ChannelRecord`` per channel: the accounting state of ``tempo.session.accounting``
(``ChannelAccount``: accepted cumulative, spent, settled, deposit, latest voucher), plus
what only the server needs:

* ``holds``: amounts reserved for requests being served (the request's quote); a request
  holds its quote before the upstream is called and converts the hold into ``spent`` for
  its exact usage when it ends, so concurrent requests on one channel never overspend;
* ``vouchers``: the accepted vouchers a settlement can still use (amount, signature): the
  highest that does not exceed ``spent`` (the payee never settles authorised-but-unspent
  money), those above it and the latest; older ones are dropped so a record stays small;
* ``closed`` / ``close_tx`` and ``last_settle_at``;
* ``close_requested_at``: the payer's forced close seen on chain (``closewatch``): the channel
  serves no new request and is settled at once.

``ChannelBook.update(channel_id, fn)`` is the only write: it reads the record, calls the
pure ``fn`` (which may raise, then nothing is written) and stores what it returns, as one
atomic step across every process sharing the store (SQLite ``BEGIN IMMEDIATE``; Redis
``WATCH``/``MULTI``; a lock in memory).  ``unsettled(before)`` lists the records of open
channels with spent-but-unsettled money whose last settlement is not later than ``before``
(the sweeper's query).  ``open_book(store)`` picks the implementation that
lives beside a ``server.stores`` store (same SQLite file, same Redis, or memory).
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import threading
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any, Protocol, TypeVar

from ...tempo.session import ChannelAccount

_T = TypeVar("_T")
Update = Callable[["ChannelRecord | None"], "ChannelRecord | None"]


@dataclass(frozen=True, slots=True)
class ChannelRecord:
    """Everything the server keeps about one channel (all amounts in base units).

    Attributes:
        account: the accounting state (``spent`` excludes ``holds``).
        payer: the channel's payer (lower-case address).
        holds: request id -> (amount, Unix time) reserved for requests in flight.
        vouchers: accepted (amount, signature hex) still useful to settle with, ascending (see
            ``with_account``).
        closed: the channel was closed on chain by this server (or found finalized).
        close_tx: the close transaction hash.
        last_settle_at: Unix time of the last settlement (or of the open).
        close_requested_at: the escrow's ``closeRequestedAt`` (chain time) when the payer's forced
            close was seen, else 0: the channel is closing and serves no new request.
    """

    account: ChannelAccount
    payer: str = ""
    holds: dict[str, tuple[int, float]] = field(default_factory=dict)
    vouchers: tuple[tuple[int, str], ...] = ()
    closed: bool = False
    close_tx: str | None = None
    last_settle_at: float = 0.0
    close_requested_at: int = 0

    @property
    def channel_id(self) -> str:
        return self.account.channel_id

    @property
    def held(self) -> int:
        """Total reserved for requests in flight."""
        return sum(amount for amount, _ in self.holds.values())

    @property
    def free(self) -> int:
        """Authorised, not spent and not held: what a new request may hold."""
        return self.account.available - self.held

    def to_json(self) -> str:
        a = self.account
        return json.dumps({
            "channel_id": a.channel_id, "accepted": str(a.accepted_cumulative), "spent": str(a.spent),
            "settled": str(a.settled), "deposit": str(a.deposit), "signature": a.voucher_signature.hex(),
            "payer": self.payer, "holds": {k: [str(v[0]), v[1]] for k, v in self.holds.items()},
            "vouchers": [[str(amount), sig] for amount, sig in self.vouchers], "closed": self.closed,
            "close_tx": self.close_tx, "last_settle_at": self.last_settle_at,
            "close_requested_at": self.close_requested_at}, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str | bytes) -> ChannelRecord:
        d = json.loads(text)
        account = ChannelAccount(d["channel_id"], int(d["accepted"]), int(d["spent"]), int(d["settled"]),
                                 int(d["deposit"]), bytes.fromhex(d["signature"]))
        return cls(account, d["payer"], {k: (int(v[0]), float(v[1])) for k, v in d["holds"].items()},
                   tuple((int(a), str(s)) for a, s in d["vouchers"]), bool(d["closed"]), d["close_tx"],
                   float(d["last_settle_at"]), int(d.get("close_requested_at", 0)))

    def with_account(self, account: ChannelAccount) -> ChannelRecord:
        """This record with ``account``; a newly accepted voucher joins ``vouchers``.

        Only the vouchers a settlement can still use are kept: those above ``spent``, the highest
        in ``(settled, spent]`` (what ``settle_voucher`` takes; ``spent`` never goes down, so the
        lower ones never are) and the latest accepted one.  A long channel's record stays a few
        vouchers long instead of growing with every request.
        """
        vouchers = list(self.vouchers)
        if account.voucher_signature and (not vouchers or vouchers[-1][0] < account.accepted_cumulative):
            vouchers.append((account.accepted_cumulative, account.voucher_signature.hex()))
        spent, settled = account.spent, account.settled
        settleable = [v for v in vouchers if settled < v[0] <= spent]
        keep = [v for v in vouchers if v[0] == account.accepted_cumulative
                or (v[0] > settled and (v[0] > spent or v is settleable[-1]))]
        return replace(self, account=account, vouchers=tuple(keep))


class ChannelBook(Protocol):
    """Atomic per-channel storage of ``ChannelRecord`` (see the module docstring)."""

    async def get(self, channel_id: str) -> ChannelRecord | None:
        """The record of ``channel_id``, or ``None``."""
        ...

    async def update(self, channel_id: str, fn: Update) -> ChannelRecord | None:
        """Atomically replace the record by ``fn(record)`` (``None``: leave it unchanged).

        Returns:
            The record now stored.
        Raises:
            Whatever ``fn`` raises (nothing is written then).
        """
        ...

    async def unsettled(self, before: float) -> list[ChannelRecord]:
        """Records of channels not closed, with ``spent > settled`` and ``last_settle_at <= before``."""
        ...

    async def close(self) -> None:
        """Release connections."""
        ...


def _unsettled(rec: ChannelRecord, before: float) -> bool:
    return not rec.closed and rec.account.spent > rec.account.settled and rec.last_settle_at <= before


class MemoryBook:
    """In-process book (tests, ``memory://`` stores)."""

    def __init__(self) -> None:
        self._rows: dict[str, str] = {}
        self._lock = threading.Lock()

    async def get(self, channel_id: str) -> ChannelRecord | None:
        text = self._rows.get(channel_id)
        return None if text is None else ChannelRecord.from_json(text)

    async def update(self, channel_id: str, fn: Update) -> ChannelRecord | None:
        with self._lock:
            text = self._rows.get(channel_id)
            current = None if text is None else ChannelRecord.from_json(text)
            new = fn(current)
            if new is None:
                return current
            self._rows[channel_id] = new.to_json()
            return new

    async def unsettled(self, before: float) -> list[ChannelRecord]:
        records = [ChannelRecord.from_json(text) for text in list(self._rows.values())]
        return [rec for rec in records if _unsettled(rec, before)]

    async def close(self) -> None:
        self._rows.clear()


_SCHEMA = """CREATE TABLE IF NOT EXISTS mpp_session_channels (
    channel_id TEXT PRIMARY KEY, data TEXT NOT NULL, version INTEGER NOT NULL DEFAULT 0
) WITHOUT ROWID"""

_CACHED = 4096  # records remembered per book (with their row version) for compare-and-set writes


class SQLiteBook:
    """The book in a table of the server's SQLite store file (own connection, WAL).

    A write is normally **one** statement: the record this book last read or wrote is kept with
    its row ``version``, ``fn`` runs on it and ``UPDATE ... WHERE version = ?`` stores the result
    (compare-and-set, atomic in SQLite).  When another connection changed the row in between
    (another worker or replica), or the record is not cached, the update runs as a
    ``BEGIN IMMEDIATE`` read-modify-write transaction instead.  Either way ``fn`` sees the row as
    stored and the write is atomic across every process sharing the file.

    Raises:
        sqlite3.Error: the file cannot be opened.
    """

    def __init__(self, path: str, *, busy_timeout_s: float = 30.0) -> None:
        self._lock = threading.Lock()
        self._busy_ms = int(busy_timeout_s * 1000)
        self._db: sqlite3.Connection | None = sqlite3.connect(
            path, timeout=busy_timeout_s, isolation_level=None, check_same_thread=False)
        self._db.execute(f"PRAGMA busy_timeout = {self._busy_ms}")
        if path != ":memory:":
            self._db.execute("PRAGMA journal_mode = WAL")
        # NORMAL: in WAL mode a commit survives a crash of the process, not a power cut; what a power
        # cut could undo here (the latest accepted voucher, spent, holds) only ever costs the payee,
        # never the payer, and spares two fsyncs per paid request.  Claims stay FULL in the store.
        self._db.execute("PRAGMA synchronous = NORMAL")
        self._db.execute(_SCHEMA)
        columns = {row[1] for row in self._db.execute("PRAGMA table_info(mpp_session_channels)")}
        if "version" not in columns:  # a book written before row versions existed
            try:
                self._db.execute("ALTER TABLE mpp_session_channels ADD COLUMN version INTEGER NOT NULL "
                                 "DEFAULT 0")
            except sqlite3.OperationalError as exc:  # another process added it first
                if "duplicate column" not in str(exc):
                    raise
        self._db.execute("PRAGMA busy_timeout = 0")  # inline calls never wait (see ``_run``)
        self._cache: dict[str, tuple[int, ChannelRecord]] = {}

    def _conn(self) -> sqlite3.Connection:
        if self._db is None:
            raise RuntimeError("channel book is closed")
        return self._db

    async def _run(self, op: Callable[[sqlite3.Connection], _T]) -> _T:
        """Run ``op`` on the connection: inline when the connection and the file's write lock are
        free right now (a few tens of microseconds, no thread hand-off), else in a worker thread
        that waits up to ``busy_timeout_s`` (another worker or process is writing)."""
        if self._lock.acquire(blocking=False):
            try:
                return op(self._conn())
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) and "busy" not in str(exc):
                    raise
            finally:
                self._lock.release()

        def waiting() -> _T:
            with self._lock:
                db = self._conn()
                db.execute(f"PRAGMA busy_timeout = {self._busy_ms}")
                try:
                    return op(db)
                finally:
                    db.execute("PRAGMA busy_timeout = 0")

        return await asyncio.to_thread(waiting)

    def _remember(self, channel_id: str, version: int, record: ChannelRecord) -> None:
        if len(self._cache) >= _CACHED and channel_id not in self._cache:
            self._cache.clear()
        self._cache[channel_id] = (version, record)

    async def get(self, channel_id: str) -> ChannelRecord | None:
        def op(db: sqlite3.Connection) -> ChannelRecord | None:
            row = db.execute("SELECT data, version FROM mpp_session_channels WHERE channel_id = ?",
                             (channel_id,)).fetchone()
            if row is None:
                return None
            record = ChannelRecord.from_json(row[0])
            self._remember(channel_id, int(row[1]), record)
            return record

        return await self._run(op)

    async def update(self, channel_id: str, fn: Update) -> ChannelRecord | None:
        def swap(db: sqlite3.Connection) -> ChannelRecord | None:
            cached = self._cache.pop(channel_id, None)
            if cached is not None:
                version, current = cached
                try:
                    new = fn(current)
                except Exception:  # maybe only because the cached record is stale: decide on the row
                    new = None
                if new is not None:
                    done = db.execute("UPDATE mpp_session_channels SET data = ?, version = ? "
                                      "WHERE channel_id = ? AND version = ?",
                                      (new.to_json(), version + 1, channel_id, version))
                    if done.rowcount == 1:
                        self._remember(channel_id, version + 1, new)
                        return new
            return transaction(db)  # not cached, changed elsewhere, refused or unchanged: read the row

        def transaction(db: sqlite3.Connection) -> ChannelRecord | None:
            db.execute("BEGIN IMMEDIATE")
            try:
                row = db.execute("SELECT data, version FROM mpp_session_channels WHERE channel_id = ?",
                                 (channel_id,)).fetchone()
                current = None if row is None else ChannelRecord.from_json(row[0])
                version = 0 if row is None else int(row[1])
                new = fn(current)
                if new is not None:
                    version += 1
                    db.execute("INSERT INTO mpp_session_channels (channel_id, data, version) "
                               "VALUES (?, ?, ?) ON CONFLICT (channel_id) DO UPDATE SET "
                               "data = excluded.data, version = excluded.version",
                               (channel_id, new.to_json(), version))
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")
            result = current if new is None else new
            if result is not None:
                self._remember(channel_id, version, result)
            return result

        return await self._run(swap)

    async def unsettled(self, before: float) -> list[ChannelRecord]:
        def op(db: sqlite3.Connection) -> list[str]:
            rows = db.execute(
                "SELECT data FROM mpp_session_channels WHERE json_extract(data, '$.closed') = 0 "
                "AND json_extract(data, '$.spent') != json_extract(data, '$.settled') "
                "AND json_extract(data, '$.last_settle_at') <= ?", (before,)).fetchall()
            return [str(row[0]) for row in rows]

        return [ChannelRecord.from_json(text) for text in await self._run(op)]

    async def close(self) -> None:
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None
            self._cache.clear()


class RedisBook:
    """The book in Redis (one string per channel, optimistic ``WATCH``/``MULTI`` updates)."""

    def __init__(self, client: Any, prefix: str = "mpp_claude:") -> None:
        self._redis = client
        self._prefix = prefix + "session:"

    async def get(self, channel_id: str) -> ChannelRecord | None:
        text = await self._redis.get(self._prefix + channel_id)
        return None if text is None else ChannelRecord.from_json(text)

    async def update(self, channel_id: str, fn: Update) -> ChannelRecord | None:
        from redis.exceptions import WatchError

        key = self._prefix + channel_id
        while True:
            async with self._redis.pipeline(transaction=True) as pipe:
                try:
                    await pipe.watch(key)
                    text = await pipe.get(key)
                    current = None if text is None else ChannelRecord.from_json(text)
                    new = fn(current)
                    if new is None:
                        await pipe.unwatch()
                        return current
                    pipe.multi()
                    pipe.set(key, new.to_json())
                    await pipe.execute()
                    return new
                except WatchError:
                    continue

    async def unsettled(self, before: float) -> list[ChannelRecord]:
        found: list[ChannelRecord] = []
        keys: list[Any] = []
        async for key in self._redis.scan_iter(match=self._prefix + "*", count=500):
            keys.append(key)
        for start in range(0, len(keys), 500):
            batch = keys[start:start + 500]
            for text in await self._redis.mget(batch):
                rec = None if text is None else ChannelRecord.from_json(text)
                if rec is not None and _unsettled(rec, before):
                    found.append(rec)
        return found

    async def close(self) -> None:
        return None


def open_book(store: Any) -> ChannelBook:
    """The book that lives beside ``store``: its SQLite file, its Redis, else in memory."""
    from ..stores.sqlite import SQLiteStore

    if isinstance(store, SQLiteStore):
        return SQLiteBook(store.path)
    client = getattr(store, "_redis", None)
    if client is not None:
        return RedisBook(client, getattr(store, "_prefix", "mpp_claude:"))
    return MemoryBook()
