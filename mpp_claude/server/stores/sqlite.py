"""SQLite :class:`~.base.Store`: the embedded default, one file shared by every worker.

Safe across threads, processes and uvicorn workers that open the same file:

* WAL journal, so readers never block the writer; ``busy_timeout`` makes a
  writer wait for the lock instead of failing.
* Every operation is one atomic statement (``claim`` is a single
  ``INSERT … ON CONFLICT DO UPDATE … WHERE expired``, whose changed-row count
  says who won) or a ``BEGIN IMMEDIATE`` transaction, which takes the write lock
  before reading so two processes cannot both see a key as free.
* Two connections.  Claims go through one with ``synchronous=FULL``: a committed claim
  survives a power cut; losing one would let a credential be accepted twice.  Everything
  else (idempotency entries, records, budget counters) goes through one with
  ``synchronous=NORMAL``, as the session books do: a crash of the process loses nothing,
  a power cut may undo the last commits (a retry then finds no stored answer and is served
  again; a usage row or a sponsor draw may be missing).  An fsync per idempotent request
  cost ~1 ms, more than everything else a session-paid request does.

WAL needs every process on the same host (it uses shared memory next to the
file): never share the file over NFS or between containers on different hosts;
use :mod:`.redis` for a fleet.  Backend failures (``sqlite3.OperationalError``
after ``busy_timeout_s``, a full disk) propagate unchanged; a claim that raised
was not granted.

Claims run in a worker thread (``asyncio.to_thread``) so the event loop never waits for an
fsync; the other operations run inline when their connection and the file's write lock are
free (tens of microseconds, no thread hand-off) and fall back to a worker thread that waits
for the lock when another worker or process is writing.  Expired rows are
deleted every few hundred writes; expiry itself is checked on every read.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

from .base import (
    DEFAULT_IDEM_LEASE_S,
    DEFAULT_IDEM_TTL_S,
    IdemResult,
    IdemState,
    StoredResponse,
    check_draw,
    check_key,
    check_ttl,
)

_T = TypeVar("_T")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS mpp_claims (
    key TEXT PRIMARY KEY, expires REAL NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS mpp_counters (
    key TEXT PRIMARY KEY, total INTEGER NOT NULL, expires REAL NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS mpp_idem (
    key TEXT PRIMARY KEY, fingerprint TEXT NOT NULL, ttl_s REAL NOT NULL, expires REAL NOT NULL,
    status INTEGER, headers TEXT, body BLOB
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS mpp_records (
    id INTEGER PRIMARY KEY AUTOINCREMENT, kind TEXT NOT NULL, row TEXT NOT NULL, created REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS mpp_records_kind ON mpp_records (kind, id);
"""

_PURGE_EVERY = 256  # writes between deletions of expired rows


class SQLiteStore:
    """A :class:`~.base.Store` in one SQLite file.

    Args:
        path: database file (created with its tables if missing); ``":memory:"``
            gives a private database, useful only in tests.
        clock: returns the current time in seconds (default ``time.time``).
            Processes sharing a file must share a clock (the host's), as they do by default.
        busy_timeout_s: how long a write waits for another process's lock.

    Raises:
        sqlite3.Error: the file cannot be opened or initialised.
    """

    def __init__(self, path: str | Path, *, clock: Callable[[], float] = time.time,
                 busy_timeout_s: float = 30.0) -> None:
        self.path = str(path)
        self._clock = clock
        self._lock = threading.Lock()
        self._writes = 0
        self._busy_ms = int(busy_timeout_s * 1000)
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self._db: sqlite3.Connection | None = sqlite3.connect(
            self.path, timeout=busy_timeout_s, isolation_level=None, check_same_thread=False)
        db = self._db
        db.execute(f"PRAGMA busy_timeout = {int(busy_timeout_s * 1000)}")
        db.execute("PRAGMA journal_mode = WAL")
        db.execute("PRAGMA synchronous = FULL")
        with self._lock:
            db.execute("BEGIN IMMEDIATE")
            try:
                for statement in _SCHEMA.split(";"):
                    if statement.strip():
                        db.execute(statement)
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
        # The NORMAL connection (a private database has only one connection: then the FULL one).
        self._fast: sqlite3.Connection | None = None
        self._fast_lock = threading.Lock()
        if self.path != ":memory:":
            self._fast = sqlite3.connect(self.path, timeout=busy_timeout_s, isolation_level=None,
                                         check_same_thread=False)
            self._fast.execute("PRAGMA synchronous = NORMAL")
            self._fast.execute("PRAGMA busy_timeout = 0")  # inline calls never wait (``_run_fast``)

    # --- plumbing --------------------------------------------------------------------------------

    async def _run(self, fn: Callable[[sqlite3.Connection], _T]) -> _T:
        def locked() -> _T:
            with self._lock:
                if self._db is None:
                    raise RuntimeError("store is closed")
                return fn(self._db)

        return await asyncio.to_thread(locked)

    async def _run_fast(self, fn: Callable[[sqlite3.Connection], _T]) -> _T:
        """``fn`` on the NORMAL connection: inline when it and the file's write lock are free right
        now, else in a worker thread that waits up to ``busy_timeout_s``.  Every ``fn`` fails
        before changing anything when the lock is taken (``BEGIN IMMEDIATE`` or one statement),
        so running it again is safe."""
        if self._fast is None:
            return await self._run(fn)
        if self._fast_lock.acquire(blocking=False):
            try:
                if self._db is None:
                    raise RuntimeError("store is closed")
                return fn(self._fast)
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) and "busy" not in str(exc):
                    raise
            finally:
                self._fast_lock.release()

        def waiting() -> _T:
            with self._fast_lock:
                db = self._fast
                if db is None or self._db is None:
                    raise RuntimeError("store is closed")
                db.execute(f"PRAGMA busy_timeout = {self._busy_ms}")
                try:
                    return fn(db)
                finally:
                    db.execute("PRAGMA busy_timeout = 0")

        return await asyncio.to_thread(waiting)

    def _wrote(self, db: sqlite3.Connection, now: float) -> None:
        self._writes += 1
        if self._writes % _PURGE_EVERY == 0:
            db.execute("DELETE FROM mpp_claims WHERE expires <= ?", (now,))
            db.execute("DELETE FROM mpp_idem WHERE expires <= ?", (now,))
            db.execute("DELETE FROM mpp_counters WHERE expires <= ?", (now,))

    @staticmethod
    def _transaction(db: sqlite3.Connection, body: Callable[[], _T]) -> _T:
        db.execute("BEGIN IMMEDIATE")  # take the write lock before reading
        try:
            result = body()
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")
        return result

    # --- claims ----------------------------------------------------------------------------------

    async def claim(self, key: str, ttl_s: float) -> bool:
        """See :meth:`~.base.Store.claim`."""
        check_key(key)
        check_ttl(ttl_s)

        def op(db: sqlite3.Connection) -> bool:
            now = self._clock()
            cur = db.execute(
                "INSERT INTO mpp_claims (key, expires) VALUES (?, ?) "
                "ON CONFLICT (key) DO UPDATE SET expires = excluded.expires "
                "WHERE mpp_claims.expires <= ?",
                (key, now + ttl_s, now))
            won = cur.rowcount == 1
            if won:
                self._wrote(db, now)
            return won

        return await self._run(op)

    async def draw(self, key: str, amount: int, limit: int, ttl_s: float) -> int | None:
        """See :meth:`~.base.Store.draw` (one ``BEGIN IMMEDIATE`` transaction)."""
        check_draw(key, amount, limit, ttl_s)

        def op(db: sqlite3.Connection) -> int | None:
            now = self._clock()

            def body() -> int | None:
                row = db.execute("SELECT total, expires FROM mpp_counters WHERE key = ?", (key,)).fetchone()
                total, expires = (0, now + ttl_s) if row is None or row[1] <= now else (int(row[0]), row[1])
                if total + amount > limit:
                    return None
                db.execute("INSERT OR REPLACE INTO mpp_counters (key, total, expires) VALUES (?, ?, ?)",
                           (key, total + amount, expires))
                self._wrote(db, now)
                return total + amount

            return self._transaction(db, body)

        return await self._run_fast(op)

    # --- idempotency -----------------------------------------------------------------------------

    async def idem_begin(self, key: str, fingerprint: str, ttl_s: float = DEFAULT_IDEM_TTL_S,
                         lease_s: float = DEFAULT_IDEM_LEASE_S) -> IdemResult:
        """See :meth:`~.base.Store.idem_begin`."""
        check_key(key)
        check_key(fingerprint, "fingerprint")
        check_ttl(ttl_s)
        check_ttl(lease_s, "lease_s")

        def op(db: sqlite3.Connection) -> IdemResult:
            now = self._clock()

            def body() -> IdemResult:
                row = db.execute(
                    "SELECT fingerprint, expires, status, headers, body FROM mpp_idem WHERE key = ?",
                    (key,)).fetchone()
                if row is None or row[1] <= now:
                    db.execute(
                        "INSERT OR REPLACE INTO mpp_idem (key, fingerprint, ttl_s, expires, status, "
                        "headers, body) VALUES (?, ?, ?, ?, NULL, NULL, NULL)",
                        (key, fingerprint, ttl_s, now + lease_s))
                    self._wrote(db, now)
                    return IdemResult(IdemState.NEW)
                if row[0] != fingerprint:
                    return IdemResult(IdemState.CONFLICT)
                if row[2] is None:
                    return IdemResult(IdemState.IN_FLIGHT)
                headers = tuple((str(k), str(v)) for k, v in json.loads(row[3]))
                return IdemResult(IdemState.COMPLETED, StoredResponse(int(row[2]), headers, bytes(row[4])))

            return self._transaction(db, body)

        return await self._run_fast(op)

    async def idem_complete(self, key: str, response: StoredResponse) -> bool:
        """See :meth:`~.base.Store.idem_complete`."""
        check_key(key)
        headers = json.dumps([list(p) for p in response.headers])

        def op(db: sqlite3.Connection) -> bool:
            now = self._clock()
            cur = db.execute(
                "UPDATE mpp_idem SET status = ?, headers = ?, body = ?, expires = ? + ttl_s "
                "WHERE key = ? AND status IS NULL AND expires > ?",
                (response.status, headers, response.body, now, key, now))
            return cur.rowcount == 1

        return await self._run_fast(op)

    async def idem_abort(self, key: str) -> None:
        """See :meth:`~.base.Store.idem_abort`."""
        check_key(key)

        def op(db: sqlite3.Connection) -> None:
            db.execute("DELETE FROM mpp_idem WHERE key = ? AND status IS NULL", (key,))

        await self._run_fast(op)

    # --- records ---------------------------------------------------------------------------------

    async def record(self, kind: str, row: dict[str, Any]) -> None:
        """See :meth:`~.base.Store.record`."""
        check_key(kind, "kind")
        text = json.dumps(row, separators=(",", ":"))

        def op(db: sqlite3.Connection) -> None:
            db.execute("INSERT INTO mpp_records (kind, row, created) VALUES (?, ?, ?)",
                       (kind, text, self._clock()))

        await self._run_fast(op)

    async def records(self, kind: str) -> Sequence[dict[str, Any]]:
        """See :meth:`~.base.Store.records`."""
        check_key(kind, "kind")

        def op(db: sqlite3.Connection) -> list[dict[str, Any]]:
            rows = db.execute("SELECT row FROM mpp_records WHERE kind = ? ORDER BY id", (kind,))
            return [json.loads(r[0]) for r in rows]

        return await self._run_fast(op)

    async def close(self) -> None:
        """See :meth:`~.base.Store.close`."""
        def op() -> None:
            with self._lock, self._fast_lock:
                if self._db is not None:
                    self._db.close()
                    self._db = None
                if self._fast is not None:
                    self._fast.close()
                    self._fast = None

        await asyncio.to_thread(op)
