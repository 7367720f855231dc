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
from functools import partial
from pathlib import Path
from typing import Any

from ..errors import BudgetExceeded
from . import _writebehind
from ._ledger_rows import (
    COUNTED,
    DAY,
    MINUTE,
    Entry,
    Reference,
    Row,
    default_path,
    exceeded,
    initial_status,
    minute_of,
    resolved,
)
from ._ledger_sql import (
    ADD_TO_BUCKET,
    BACKFILL,
    BACKFILL_REFUNDS,
    INSERT_PIN,
    INSERT_ROW,
    LIMITS,
    MARK_SIGNED,
    MARK_UNKNOWN,
    PRUNE_BUCKETS,
    SCHEMA,
    SCHEMA_VERSION,
    SETTLE,
)
from ._memledger import MemoryLedger
from ._sqlite import checkpoint, open_private_db

__all__ = ["CHECKPOINT_EVERY", "COUNTED", "DAY", "MINUTE", "SCHEMA_VERSION", "AnyLedger", "Entry", "Ledger",
           "MemoryLedger", "Reference", "Row", "default_path"]

log = logging.getLogger("mpp_claude.client.ledger")

CHECKPOINT_EVERY = 200
"""Write transactions between two WAL checkpoints (~1 000 log pages, SQLite's own default), run by
the background writer instead of inside a reservation's commit (module docstring, "Durability")."""

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
                for statement in SCHEMA.split(";"):
                    db.execute(statement)
                db.execute(BACKFILL)  # files from before the buckets existed
                db.execute(BACKFILL_REFUNDS)  # files from before the refund marks existed
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
                self._db.execute(SETTLE, (resolved(reference), tx_hash, valid_before, now, row_id))
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
        status = initial_status(status)
        wallet, minute, first = entry.wallet, minute_of(now), minute_of(now - DAY)
        pin = (wallet, entry.origin)
        self._sync()
        with self._lock:
            db = self._db
            db.execute("BEGIN IMMEDIATE")
            try:
                if max_per_day is not None or max_per_minute is not None:  # both sums in one statement
                    day, count = db.execute(LIMITS, (wallet, first, now - MINUTE)).fetchone()
                if max_per_day is not None and day + entry.amount > max_per_day:
                    raise exceeded("max_per_day", max_per_day, entry.amount, day, "in the last 24 h")
                if max_per_minute is not None and count + 1 > max_per_minute:
                    raise BudgetExceeded(
                        f"payment would exceed max_per_minute {max_per_minute} ({count} in the last 60 s)",
                        limit="max_per_minute", limit_value=max_per_minute, requested=entry.amount,
                        used=count)
                cur = db.execute(INSERT_ROW, (wallet, status, entry.amount, entry.currency, entry.chain_id,
                                               entry.payee, entry.origin, entry.path, entry.model,
                                               entry.request_id, entry.challenge_id, reference, now, now))
                if pin not in self._pins_known:
                    db.execute(INSERT_PIN, (wallet, entry.origin, entry.payee.lower(), now))
                db.execute(ADD_TO_BUCKET, (wallet, minute, entry.amount))
                if self._pruned.get(wallet) != minute:  # old buckets no longer count: drop them
                    db.execute(PRUNE_BUCKETS, (wallet, first - 1))
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
            self._db.execute(MARK_SIGNED, (tx_hash, valid_before, now, row_id))
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
            self._db.execute(SETTLE, (resolved(reference), tx_hash, valid_before, now, row_id))
            self._wrote()

    def mark_unknown(self, row_id: int, *, error: str, now: float, tx_hash: str | None = None,
                     valid_before: int | None = None) -> None:
        """Money may have moved; the budget stays held until :meth:`settle` or :meth:`release`.
        ``tx_hash``/``valid_before`` (kept when ``None``) are what :meth:`rows` reports for
        reconciling it from the chain."""
        self._sync()
        with self._lock:
            self._db.execute(MARK_UNKNOWN, (error[:500], tx_hash, valid_before, now, row_id))
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
                               (got[1], got[0], minute_of(got[2])))
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
                               (part, wallet, minute_of(created)))
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
                                        "AND minute >= ?", (wallet, minute_of(now - DAY))).fetchone()
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



AnyLedger = Ledger | MemoryLedger
