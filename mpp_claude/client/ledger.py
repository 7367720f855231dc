"""The spend ledger: one row per payment attempt, and the store behind the rolling budgets.

SQLite in WAL mode, safe across threads (one connection behind a lock) and processes
(``BEGIN IMMEDIATE`` serialises the check-and-insert of a reservation, so N processes sharing
one file can never pass ``max_per_day`` together).  Rows never hold credentials or keys.

Life of a row (agent-payments-ux.md §4.4)::

    reserved ──► (signed) ──► settled          budget counted
        │             └─────► unknown ──► settled / released   (resolved from the chain)
        └───────────────────► released         budget given back: provably no payment

A charge paid by the client costs two writes: the reservation (one ``BEGIN IMMEDIATE``
transaction, before anything is signed) and the outcome, which records the signed transaction
(``tx_hash``, ``valid_before``) with ``settled`` or ``unknown``.  ``signed`` is an optional
step (:meth:`Ledger.mark_signed`); the client skips it, so a process killed between signing
and the server's answer leaves its row ``reserved``: the budget stays held, never given back.

Deferred outcome: the client writes ``settled`` (a paid response with its receipt) with
``settle(defer=True)``, off the request's critical path.  It is applied by whichever comes
first (``_writebehind.py``): the sync client's transport while it waits for the server's answer
to the next request, the next call on a handle of the same file in this process,
:meth:`Ledger.flush`, :meth:`Ledger.close` (the clients' ``close()`` flushes), a background
thread after ``_writebehind.DELAY`` (0.2 s), or the interpreter's exit.  Every read in this
process sees it; other processes see it once it is applied (after the client's ``close()`` at
the latest).  A crash before it is applied leaves the row ``reserved``: still counted against
the budgets, the safe side.  A deferred write that fails is logged (row, transaction and error)
and counted in :attr:`Ledger.failed_writes`, never raised into a later, unrelated call; its row
also stays ``reserved``.  The reservation is never deferred: nothing is signed before it is
committed.

Durability: WAL with ``synchronous = NORMAL`` (``_sqlite.open_private_db``).  A commit is not
fsynced; a crash of the process loses nothing, a power cut may undo the last commits.  Undoing
a reservation whose credential was already sent would understate spending, so the ledger is a
budget guard for runaway code, not an accounting record that survives power loss; on-chain
access-key limits are the guard that does (agent-payments-ux.md §4.6).  Checkpoints (the log
copied back into the file, with an fsync: ~15 ms on a small VM) run in the background writer
every ``CHECKPOINT_EVERY`` writes, never inside a commit a payment waits for.

The rolling 24 h sum reads per-minute buckets (``spend_minutes``, kept in the same transactions as
the rows), so a reservation costs the same with 10 or 10 000 payments in the window.  A bucket
is counted whole, so a payment leaves the window between 24 h and 24 h + 1 min after it was
made: the limit errs on the safe side by at most one minute.

Every method takes ``now`` (Unix seconds, float) from the caller; nothing here reads the clock.
:class:`MemoryLedger` has the same interface without persistence (``ledger=None``).
"""

from __future__ import annotations

import logging
import os
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path
from typing import Any

from ..errors import BudgetExceeded
from . import _writebehind
from ._sqlite import checkpoint, open_private_db

log = logging.getLogger("mpp_claude.client.ledger")

CHECKPOINT_EVERY = 200
"""Write transactions between two WAL checkpoints (~1 000 log pages, SQLite's own default), run by
the background writer instead of inside a reservation's commit (module docstring, "Durability")."""

DAY = 86_400.0
MINUTE = 60.0
COUNTED = ("reserved", "signed", "settled", "unknown")

# ``id`` is a plain rowid alias: rows are never deleted, so ids are never reused, and AUTOINCREMENT
# would write its ``sqlite_sequence`` page in every reservation (files made before keep it).
_SCHEMA = """
CREATE TABLE IF NOT EXISTS payments (
    id            INTEGER PRIMARY KEY,
    wallet        TEXT NOT NULL,
    status        TEXT NOT NULL,
    amount        INTEGER NOT NULL,
    currency      TEXT NOT NULL,
    chain_id      INTEGER,
    payee         TEXT NOT NULL,
    origin        TEXT NOT NULL,
    path          TEXT NOT NULL,
    model         TEXT,
    request_id    TEXT,
    challenge_id  TEXT,
    tx_hash       TEXT,
    reference     TEXT,
    valid_before  INTEGER,
    created_at    REAL NOT NULL,
    updated_at    REAL NOT NULL,
    error         TEXT
);
CREATE INDEX IF NOT EXISTS payments_window ON payments (wallet, created_at, status);
CREATE TABLE IF NOT EXISTS payee_pins (
    wallet      TEXT NOT NULL,
    origin      TEXT NOT NULL,
    payee       TEXT NOT NULL,
    first_seen  REAL NOT NULL,
    PRIMARY KEY (wallet, origin)
);
CREATE TABLE IF NOT EXISTS spend_minutes (
    wallet  TEXT NOT NULL,
    minute  INTEGER NOT NULL,
    amount  INTEGER NOT NULL,
    PRIMARY KEY (wallet, minute)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS refunds (
    wallet     TEXT NOT NULL,
    reference  TEXT NOT NULL,
    amount     INTEGER NOT NULL,
    at         REAL NOT NULL,
    PRIMARY KEY (wallet, reference)
) WITHOUT ROWID
"""
SCHEMA_VERSION = 2
_BACKFILL = """
INSERT INTO spend_minutes (wallet, minute, amount)
SELECT wallet, CAST(created_at / 60 AS INTEGER), SUM(amount) FROM payments
WHERE status IN ('reserved', 'signed', 'settled', 'unknown') GROUP BY 1, 2
ON CONFLICT (wallet, minute) DO UPDATE SET amount = excluded.amount
"""
# Version 1 files kept no refund marks: a channel some of whose rows were released on its
# finalisation was refunded (a refund in part only leaves no trace; it stays refundable once more).
_BACKFILL_REFUNDS = """
INSERT OR IGNORE INTO refunds (wallet, reference, amount, at)
SELECT wallet, reference, 0, MAX(updated_at) FROM payments
WHERE status = 'released' AND reference IS NOT NULL AND error LIKE 'channel finalised%' GROUP BY 1, 2
"""


# The statements of a payment's hot path, written once (the module's statement cache keeps them
# prepared).  Every status but 'released' is counted (COUNTED): one comparison per row, not four.
_LIMITS = ("SELECT (SELECT COALESCE(SUM(amount), 0) FROM spend_minutes WHERE wallet = ?1 AND minute >= ?2), "
           "(SELECT COUNT(*) FROM payments WHERE wallet = ?1 AND created_at > ?3 AND status != 'released')")
_INSERT_ROW = ("INSERT INTO payments (wallet, status, amount, currency, chain_id, payee, origin, path, "
               "model, request_id, challenge_id, reference, created_at, updated_at) "
               "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)")
_INSERT_PIN = "INSERT OR IGNORE INTO payee_pins (wallet, origin, payee, first_seen) VALUES (?, ?, ?, ?)"
_ADD_TO_BUCKET = ("INSERT INTO spend_minutes (wallet, minute, amount) VALUES (?, ?, ?) "
                  "ON CONFLICT (wallet, minute) DO UPDATE SET amount = amount + excluded.amount")
_PRUNE_BUCKETS = "DELETE FROM spend_minutes WHERE wallet = ? AND minute < ?"
_MARK_SIGNED = ("UPDATE payments SET status = 'signed', tx_hash = ?, valid_before = ?, updated_at = ? "
                "WHERE id = ?")
_SETTLE = ("UPDATE payments SET status = 'settled', reference = ?, tx_hash = COALESCE(?, tx_hash), "
           "valid_before = COALESCE(?, valid_before), updated_at = ? WHERE id = ?")
_MARK_UNKNOWN = ("UPDATE payments SET status = 'unknown', error = ?, tx_hash = COALESCE(?, tx_hash), "
                 "valid_before = COALESCE(?, valid_before), updated_at = ? WHERE id = ?")


Reference = str | None | Callable[[], str | None]
"""A settled payment's reference, or (deferred writes) the function that gives it."""


def _resolved(reference: Reference) -> str | None:
    return reference() if callable(reference) else reference


def _minute(ts: float) -> int:
    return int(ts // 60)


def default_path() -> Path:
    """``<user data dir>/mpp-claude/ledger.sqlite3`` (platformdirs)."""
    import platformdirs

    return Path(platformdirs.user_data_dir("mpp-claude", appauthor=False)) / "ledger.sqlite3"


@dataclass(frozen=True, slots=True)
class Entry:
    """What is known about a payment before it is signed."""

    wallet: str
    amount: int
    currency: str
    chain_id: int | None
    payee: str
    origin: str
    path: str
    model: str | None = None
    request_id: str | None = None
    challenge_id: str | None = None


@dataclass(frozen=True, slots=True)
class Row:
    """One ledger row as reported by :meth:`Ledger.rows`."""

    id: int
    wallet: str
    status: str
    amount: int
    currency: str
    chain_id: int | None
    payee: str
    origin: str
    path: str
    model: str | None
    request_id: str | None
    challenge_id: str | None
    tx_hash: str | None
    reference: str | None
    valid_before: int | None
    created_at: float
    updated_at: float
    error: str | None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _exceeded(limit: str, value: int, amount: int, used: int, what: str) -> BudgetExceeded:
    return BudgetExceeded(f"payment of {amount} base units would exceed {limit} {value} "
                          f"({used} {what})", limit=limit, limit_value=value, requested=amount, used=used)


def _known(tx_hash: str | None, valid_before: int | None) -> dict[str, Any]:
    """The transaction fields to write: those given (``None`` keeps the stored value)."""
    out: dict[str, Any] = {}
    if tx_hash is not None:
        out["tx_hash"] = tx_hash
    if valid_before is not None:
        out["valid_before"] = valid_before
    return out


def _initial(status: str) -> str:
    if status not in ("reserved", "settled"):
        raise ValueError(f"a row starts reserved or settled, not {status!r}")
    return status


class Ledger:
    """A SQLite spend ledger.

    Args:
        path: the database file (created 0600, parent 0700); ``None`` = :func:`default_path`.
        busy_timeout: seconds to wait for another process's write lock.
    """

    def __init__(self, path: str | os.PathLike[str] | None = None, *, busy_timeout: float = 30.0) -> None:
        self.path = Path(path) if path is not None else default_path()
        self._lock = threading.Lock()
        self._db = open_private_db(self.path, busy_timeout=busy_timeout, autocheckpoint=False)
        self._writes = 0  # write transactions since the last checkpoint was asked for
        self._pins_known: set[tuple[str, str]] = set()  # pins in the file (a pin never changes)
        self._pruned: dict[str, int] = {}  # wallet -> minute its old buckets were last deleted
        self._pending: deque[tuple[int, Reference, str | None, int | None, float]] = deque()  # settles
        self._queue_lock = threading.Lock()  # the queue and WAITING only: deferring never waits for _lock
        self.key = str(self.path.resolve())  # the file, however its path was spelled
        self.failed_writes = 0
        """Deferred writes that failed (each one logged with its row and error)."""
        with self._lock:
            self._migrate()

    def _migrate(self) -> None:
        db = self._db
        (version,) = db.execute("PRAGMA user_version").fetchone()
        if version >= SCHEMA_VERSION:
            return
        db.execute("BEGIN IMMEDIATE")  # one process creates; the others see the new version
        try:
            (version,) = db.execute("PRAGMA user_version").fetchone()
            if version < SCHEMA_VERSION:
                for statement in _SCHEMA.split(";"):
                    db.execute(statement)
                db.execute(_BACKFILL)  # files from before the buckets existed
                db.execute(_BACKFILL_REFUNDS)  # files from before the refund marks existed
                db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise

    def _wrote(self, n: int = 1) -> None:
        """Count write transactions (``self._lock`` held); every ``CHECKPOINT_EVERY`` the
        background writer checkpoints the file."""
        self._writes += n
        if self._writes >= CHECKPOINT_EVERY:
            self._writes = 0
            _writebehind.run_soon(partial(checkpoint, self.path))

    def _sync(self) -> None:
        """Read-your-writes: apply this process's deferred writes to this file first."""
        if _writebehind.WAITING:
            _writebehind.flush_file(self.key)

    def flush(self, *, wait: bool = True) -> None:
        """Apply the writes deferred by ``settle(defer=True)`` now (a failed one is logged and
        counted in :attr:`failed_writes`, not raised: its row stays ``reserved``).
        ``wait=False``: do nothing when another thread is using the ledger (its call applies them)."""
        if not self._lock.acquire(wait):
            return
        try:
            self._apply_pending()
        finally:
            self._lock.release()

    def _apply_pending(self) -> None:
        """Run the deferred writes in order (``self._lock`` held)."""
        pending = self._pending
        while True:
            with self._queue_lock:
                if not pending:
                    _writebehind.WAITING.discard(self)  # with the queue's lock: never while one waits
                    return
                row_id, reference, tx_hash, valid_before, now = pending.popleft()
            try:
                self._db.execute(_SETTLE, (_resolved(reference), tx_hash, valid_before, now, row_id))
                self._wrote()
            except Exception as exc:  # sqlite3.Error, a closed connection, the reference: logged
                self.failed_writes += 1
                log.error("ledger %s: could not record the settled outcome of row %s (tx %s): %s: %s; the "
                          "row stays 'reserved', still counted against the budgets", self.path, row_id,
                          tx_hash, type(exc).__name__, exc)

    def close(self) -> None:
        """Apply the deferred writes, then close the file."""
        with self._lock:
            self._apply_pending()
            self._db.close()

    def reserve(self, entry: Entry, *, now: float, max_per_day: int | None,
                max_per_minute: int | None, status: str = "reserved", reference: str | None = None) -> int:
        """Atomically check the rolling limits for ``entry.wallet`` and insert a ``reserved`` row.

        ``status="settled"`` (with its ``reference``) records in the same single write a payment
        that needs no later confirmation (a session voucher: the payee holds it once signed).

        Returns:
            the row id.
        Raises:
            BudgetExceeded: ``max_per_day`` (rolling 24 h sum, counting reserved, signed, settled
                and unknown rows) or ``max_per_minute`` (payment count in the last 60 s).
        """
        return self.reserve_counted(entry, now=now, max_per_day=max_per_day, max_per_minute=max_per_minute,
                                    status=status, reference=reference)[0]

    def reserve_counted(self, entry: Entry, *, now: float, max_per_day: int | None,
                        max_per_minute: int | None, status: str = "reserved",
                        reference: str | None = None) -> tuple[int, int | None]:
        """:meth:`reserve`, also returning what ``max_per_day`` counts with this row.

        Returns:
            ``(row id, 24 h sum including entry.amount)``, read inside the reservation's own
            transaction (no second read); the sum is ``None`` when ``max_per_day`` is ``None``.
        Raises:
            BudgetExceeded: as :meth:`reserve`.
        """
        status = _initial(status)
        wallet, minute, first = entry.wallet, _minute(now), _minute(now - DAY)
        pin = (wallet, entry.origin)
        self._sync()
        with self._lock:
            db = self._db
            db.execute("BEGIN IMMEDIATE")
            try:
                if max_per_day is not None or max_per_minute is not None:  # both sums in one statement
                    day, count = db.execute(_LIMITS, (wallet, first, now - MINUTE)).fetchone()
                if max_per_day is not None and day + entry.amount > max_per_day:
                    raise _exceeded("max_per_day", max_per_day, entry.amount, day, "in the last 24 h")
                if max_per_minute is not None and count + 1 > max_per_minute:
                    raise BudgetExceeded(
                        f"payment would exceed max_per_minute {max_per_minute} ({count} in the last 60 s)",
                        limit="max_per_minute", limit_value=max_per_minute, requested=entry.amount,
                        used=count)
                cur = db.execute(_INSERT_ROW, (wallet, status, entry.amount, entry.currency, entry.chain_id,
                                               entry.payee, entry.origin, entry.path, entry.model,
                                               entry.request_id, entry.challenge_id, reference, now, now))
                if pin not in self._pins_known:
                    db.execute(_INSERT_PIN, (wallet, entry.origin, entry.payee.lower(), now))
                db.execute(_ADD_TO_BUCKET, (wallet, minute, entry.amount))
                if self._pruned.get(wallet) != minute:  # old buckets no longer count: drop them
                    db.execute(_PRUNE_BUCKETS, (wallet, first - 1))
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
            self._wrote()
            self._pins_known.add(pin)
            self._pruned[wallet] = minute
            return int(cur.lastrowid or 0), None if max_per_day is None else int(day) + entry.amount

    def mark_signed(self, row_id: int, *, tx_hash: str | None, valid_before: int | None, now: float) -> None:
        """The credential exists: money can move from here on."""
        self._sync()
        with self._lock:
            self._db.execute(_MARK_SIGNED, (tx_hash, valid_before, now, row_id))
            self._wrote()

    def settle(self, row_id: int, *, reference: Reference, now: float, tx_hash: str | None = None,
               valid_before: int | None = None, defer: bool = False) -> None:
        """The server (receipt) or the chain confirmed the payment.  ``tx_hash``/``valid_before``
        (kept when ``None``) record the signed transaction in the same write.

        ``defer=True``: queue the write and return; it is applied in the background before any
        later call on this file in this process sees the ledger (module docstring, "Deferred
        outcome"), and its failure is logged, not raised.  ``reference`` may then be a function
        called when the write is applied (it must not call the ledger).
        """
        if defer:  # not under self._lock: a reservation waiting on another process never holds it up
            with self._queue_lock:
                self._pending.append((row_id, reference, tx_hash, valid_before, now))
                _writebehind.WAITING.add(self)
            _writebehind.submit(self)
            return
        self._sync()
        with self._lock:
            self._db.execute(_SETTLE, (_resolved(reference), tx_hash, valid_before, now, row_id))
            self._wrote()

    def mark_unknown(self, row_id: int, *, error: str, now: float, tx_hash: str | None = None,
                     valid_before: int | None = None) -> None:
        """Money may have moved; the budget stays held until :meth:`settle` or :meth:`release`.
        ``tx_hash``/``valid_before`` (kept when ``None``) are what :meth:`rows` reports for
        reconciling it from the chain."""
        self._sync()
        with self._lock:
            self._db.execute(_MARK_UNKNOWN, (error[:500], tx_hash, valid_before, now, row_id))
            self._wrote()

    def release(self, row_id: int, *, error: str, now: float) -> None:
        """Provably no payment: the reservation no longer counts (its minute bucket shrinks)."""
        self._sync()
        with self._lock:
            db = self._db
            db.execute("BEGIN IMMEDIATE")
            try:
                got = db.execute("SELECT wallet, amount, created_at, status FROM payments WHERE id = ?",
                                 (row_id,)).fetchone()
                if got is not None and got[3] in COUNTED:
                    db.execute("UPDATE spend_minutes SET amount = amount - ? WHERE wallet = ? AND minute = ?",
                               (got[1], got[0], _minute(got[2])))
                db.execute("UPDATE payments SET status = 'released', error = ?, updated_at = ? WHERE id = ?",
                           (error[:500], now, row_id))
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
            self._wrote()

    def refund(self, wallet: str, reference: str, amount: int, *, error: str, now: float) -> int:
        """Give back up to ``amount`` base units of ``wallet``'s counted rows carrying ``reference``,
        newest first (a session channel finalised below what its vouchers authorised): a row given
        back whole becomes ``released``, a row given back in part keeps the rest; its minute bucket
        shrinks by the same.  Returns the amount given back.

        Once per ``(wallet, reference)``: a channel is finalised once, so a second call, from this
        or another process sharing the file (two processes closing one channel at once), gives back
        nothing and returns 0.  The mark is written in the same transaction as the refund.
        """
        marks = ",".join("?" * len(COUNTED))
        left = amount
        self._sync()
        with self._lock:
            db = self._db
            db.execute("BEGIN IMMEDIATE")
            try:
                first = db.execute("INSERT OR IGNORE INTO refunds (wallet, reference, amount, at) "
                                   "VALUES (?, ?, 0, ?)", (wallet, reference, now)).rowcount
                if not first:  # refunded before: nothing twice
                    db.execute("COMMIT")
                    return 0
                rows = db.execute(f"SELECT id, amount, created_at FROM payments WHERE wallet = ? "
                                  f"AND reference = ? AND status IN ({marks}) ORDER BY id DESC",
                                  (wallet, reference, *COUNTED)).fetchall()
                for row_id, row_amount, created in rows:
                    if left <= 0:
                        break
                    part = min(left, int(row_amount))
                    left -= part
                    db.execute("UPDATE spend_minutes SET amount = amount - ? WHERE wallet = ? AND minute = ?",
                               (part, wallet, _minute(created)))
                    if part == row_amount:
                        db.execute("UPDATE payments SET status = 'released', error = ?, updated_at = ? "
                                   "WHERE id = ?", (error[:500], now, row_id))
                    else:
                        db.execute("UPDATE payments SET amount = amount - ?, updated_at = ? WHERE id = ?",
                                   (part, now, row_id))
                db.execute("UPDATE refunds SET amount = ? WHERE wallet = ? AND reference = ?",
                           (amount - left, wallet, reference))
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
            self._wrote()
        return amount - left

    def day_spent(self, wallet: str, *, now: float) -> int:
        """What ``max_per_day`` counts for ``wallet`` at ``now`` (the minute buckets)."""
        self._sync()
        with self._lock:
            (total,) = self._db.execute("SELECT COALESCE(SUM(amount), 0) FROM spend_minutes WHERE wallet = ? "
                                        "AND minute >= ?", (wallet, _minute(now - DAY))).fetchone()
        return int(total)

    def pinned_payee(self, wallet: str, origin: str) -> str | None:
        """The first payee this wallet reserved a payment to at ``origin``."""
        self._sync()
        with self._lock:
            got = self._db.execute("SELECT payee FROM payee_pins WHERE wallet = ? AND origin = ?",
                                   (wallet, origin)).fetchone()
        return None if got is None else str(got[0])

    def rows(self, *, wallet: str | None = None, since: float | None = None,
             status: tuple[str, ...] | None = None) -> list[Row]:
        """Rows, oldest first, optionally filtered."""
        sql, args = "SELECT * FROM payments WHERE 1 = 1", list[Any]()
        if wallet is not None:
            sql, args = sql + " AND wallet = ?", [*args, wallet]
        if since is not None:
            sql, args = sql + " AND created_at >= ?", [*args, since]
        if status is not None:
            sql += f" AND status IN ({','.join('?' * len(status))})"
            args.extend(status)
        self._sync()
        with self._lock:
            got = self._db.execute(sql + " ORDER BY id", args).fetchall()
        return [Row(*r) for r in got]

    def spent(self, wallet: str, *, since: float) -> int:
        """Base units counted against ``wallet`` since ``since``."""
        marks = ",".join("?" * len(COUNTED))
        self._sync()
        with self._lock:
            (total,) = self._db.execute(
                f"SELECT COALESCE(SUM(amount), 0) FROM payments WHERE wallet = ? AND created_at > ? "
                f"AND status IN ({marks})", (wallet, since, *COUNTED)).fetchone()
        return int(total)


class MemoryLedger:
    """The :class:`Ledger` interface in memory (one process; lost at exit)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._rows: list[dict[str, Any]] = []
        self._pins: dict[tuple[str, str], str] = {}
        self._refunded: set[tuple[str, str]] = set()
        self.path = None

    def close(self) -> None:
        pass

    def flush(self, *, wait: bool = True) -> None:
        """Nothing is ever deferred in memory."""

    def _counted(self, wallet: str, since: float) -> list[dict[str, Any]]:
        return [r for r in self._rows
                if r["wallet"] == wallet and r["created_at"] > since and r["status"] in COUNTED]

    def reserve(self, entry: Entry, *, now: float, max_per_day: int | None,
                max_per_minute: int | None, status: str = "reserved", reference: str | None = None) -> int:
        return self.reserve_counted(entry, now=now, max_per_day=max_per_day, max_per_minute=max_per_minute,
                                    status=status, reference=reference)[0]

    def reserve_counted(self, entry: Entry, *, now: float, max_per_day: int | None,
                        max_per_minute: int | None, status: str = "reserved",
                        reference: str | None = None) -> tuple[int, int | None]:
        """See :meth:`Ledger.reserve_counted`."""
        day = 0
        with self._lock:
            if max_per_day is not None:
                day = sum(r["amount"] for r in self._counted(entry.wallet, now - DAY))
                if day + entry.amount > max_per_day:
                    raise _exceeded("max_per_day", max_per_day, entry.amount, day, "in the last 24 h")
            if max_per_minute is not None:
                count = len(self._counted(entry.wallet, now - MINUTE))
                if count + 1 > max_per_minute:
                    raise BudgetExceeded(f"payment would exceed max_per_minute {max_per_minute} ({count} in "
                                         "the last 60 s)", limit="max_per_minute",
                                         limit_value=max_per_minute, requested=entry.amount, used=count)
            row = {"id": len(self._rows) + 1, "status": _initial(status), **asdict(entry), "tx_hash": None,
                   "reference": reference, "valid_before": None, "created_at": now, "updated_at": now,
                   "error": None}
            self._rows.append(row)
            self._pins.setdefault((entry.wallet, entry.origin), entry.payee.lower())
            return int(row["id"]), None if max_per_day is None else day + entry.amount

    def _update(self, row_id: int, now: float, **fields: Any) -> None:
        with self._lock:
            self._rows[row_id - 1].update(fields, updated_at=now)

    def mark_signed(self, row_id: int, *, tx_hash: str | None, valid_before: int | None, now: float) -> None:
        self._update(row_id, now, status="signed", tx_hash=tx_hash, valid_before=valid_before)

    def settle(self, row_id: int, *, reference: Reference, now: float, tx_hash: str | None = None,
               valid_before: int | None = None, defer: bool = False) -> None:
        """Written at once (``defer`` changes nothing in memory)."""
        self._update(row_id, now, status="settled", reference=_resolved(reference),
                     **_known(tx_hash, valid_before))

    def mark_unknown(self, row_id: int, *, error: str, now: float, tx_hash: str | None = None,
                     valid_before: int | None = None) -> None:
        self._update(row_id, now, status="unknown", error=error[:500], **_known(tx_hash, valid_before))

    def release(self, row_id: int, *, error: str, now: float) -> None:
        self._update(row_id, now, status="released", error=error[:500])

    def refund(self, wallet: str, reference: str, amount: int, *, error: str, now: float) -> int:
        left = amount
        with self._lock:
            if (wallet, reference) in self._refunded:
                return 0
            self._refunded.add((wallet, reference))
            for r in reversed(self._rows):
                if left <= 0:
                    break
                if r["wallet"] == wallet and r["reference"] == reference and r["status"] in COUNTED:
                    part = min(left, r["amount"])
                    left -= part
                    if part == r["amount"]:
                        r.update(status="released", error=error[:500], updated_at=now)
                    else:
                        r.update(amount=r["amount"] - part, updated_at=now)
        return amount - left

    def pinned_payee(self, wallet: str, origin: str) -> str | None:
        with self._lock:
            return self._pins.get((wallet, origin))

    def rows(self, *, wallet: str | None = None, since: float | None = None,
             status: tuple[str, ...] | None = None) -> list[Row]:
        with self._lock:
            got = [r for r in self._rows
                   if (wallet is None or r["wallet"] == wallet)
                   and (since is None or r["created_at"] >= since)
                   and (status is None or r["status"] in status)]
        fields = Row.__dataclass_fields__
        return [Row(**{k: r[k] for k in fields}) for r in got]

    def spent(self, wallet: str, *, since: float) -> int:
        with self._lock:
            return sum(r["amount"] for r in self._counted(wallet, since))

    def day_spent(self, wallet: str, *, now: float) -> int:
        return self.spent(wallet, since=now - DAY)


AnyLedger = Ledger | MemoryLedger
