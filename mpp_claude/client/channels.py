"""The payer's channel store: open payment channels that survive a restart (SQLite, next to the ledger).

One row per channel this wallet opened: its identity (``tempo.session.PayerChannel``), the
highest cumulative amount signed and that voucher's signature, the amount the server last
reported as spent, where it is used (origin and path) and whether it is still open.  The
session client persists a new cumulative amount *before* the voucher leaves the process, so
a crash can never make it sign a lower amount again; on restart it finds the open channel
for the same origin, payee, escrow, chain and token and goes on with it.  A channel the
server answers 410 for (unknown or finalized) is marked ``evicted``; a closed one ``closed``.

A forced close (``_session_reclaim``) marks a channel ``closing`` with the chain time its close
was requested and from which ``withdraw`` is accepted, then ``withdrawn`` with the amount
refunded; nothing pays from a channel that is not ``open``.

Thread- and process-safe like the ledger (one connection behind a lock, WAL, ``BEGIN
IMMEDIATE`` for writes).  ``MemoryChannelStore`` has the same interface without persistence.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass, replace
from pathlib import Path

from ..tempo.session import PayerChannel
from ._sqlite import open_private_db

_SCHEMA = """
CREATE TABLE IF NOT EXISTS session_channels (
    channel_id   TEXT PRIMARY KEY,
    wallet       TEXT NOT NULL,
    origin       TEXT NOT NULL,
    path         TEXT NOT NULL,
    escrow       TEXT NOT NULL,
    chain_id     INTEGER NOT NULL,
    payee        TEXT NOT NULL,
    token        TEXT NOT NULL,
    deposit      TEXT NOT NULL,
    signed       TEXT NOT NULL,
    signature    TEXT NOT NULL,
    spent        TEXT NOT NULL,
    status       TEXT NOT NULL,
    updated_at   REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS session_channels_open ON session_channels (wallet, origin, status)
"""
#: columns added after the first release (``ALTER TABLE`` on older files)
_ADDED = {"close_requested_at": "INTEGER NOT NULL DEFAULT 0", "withdrawable_at": "INTEGER NOT NULL DEFAULT 0",
          "refunded": "TEXT NOT NULL DEFAULT ''", "accepted": "TEXT NOT NULL DEFAULT '0'"}

_COLUMNS = ("channel_id, wallet, origin, path, escrow, chain_id, payee, token, deposit, signed, signature, "
            "spent, status, updated_at, close_requested_at, withdrawable_at, refunded, accepted")
_MARKS = ", ".join("?" * len(_COLUMNS.split(",")))
#: every status a channel can have; only ``open`` ones pay
STATUSES = ("open", "closing", "withdrawn", "closed", "evicted", "failed")


@dataclass(frozen=True, slots=True)
class StoredChannel:
    """A channel as the payer keeps it.

    Attributes:
        channel: identity, deposit and highest signed cumulative amount.
        wallet: the payer's address (lower case).
        origin, path: where the channel pays (``https://host``, ``/v1/chat/completions``).
        signature: hex of the voucher for ``channel.signed_cumulative`` (``""`` before any).
        spent: what the server last reported as spent (receipts' ``spent``).
        status: one of ``STATUSES``: ``open`` (pays), ``closing`` (forced close requested),
            ``withdrawn`` (deposit reclaimed), ``closed`` (finalised by the payee), ``evicted``
            (the server answered 410), ``failed`` (the open never happened).
        close_requested_at: chain time of the payer's ``requestClose`` (0: none).
        withdrawable_at: chain time from which ``withdraw`` is accepted (0: none).
        refunded: base units the escrow returned at finalisation (``None``: not known / not yet).
        accepted: the cumulative amount the server last reported as accepted (receipts).
    """

    channel: PayerChannel
    wallet: str
    origin: str
    path: str
    signature: str = ""
    spent: int = 0
    status: str = "open"
    close_requested_at: int = 0
    withdrawable_at: int = 0
    refunded: int | None = None
    accepted: int = 0

    @property
    def channel_id(self) -> str:
        return self.channel.channel_id

    def matches(self, *, payee: str, escrow: str, chain_id: int, token: str) -> bool:
        """Whether this channel pays ``payee`` in ``token`` through ``escrow`` on ``chain_id``."""
        c = self.channel
        return (c.payee == payee.lower() and c.escrow == escrow.lower() and c.chain_id == chain_id
                and c.token == token.lower())


def _row(s: StoredChannel, now: float) -> tuple[object, ...]:
    c = s.channel
    return (c.channel_id, s.wallet.lower(), s.origin, s.path, c.escrow, c.chain_id, c.payee, c.token,
            str(c.deposit), str(c.signed_cumulative), s.signature, str(s.spent), s.status, now,
            s.close_requested_at, s.withdrawable_at, "" if s.refunded is None else str(s.refunded),
            str(s.accepted))


def _stored(row: tuple[object, ...]) -> StoredChannel:
    (cid, wallet, origin, path, escrow, chain_id, payee, token, deposit, signed, signature, spent, status,
     _updated, requested, withdrawable, refunded, accepted) = row
    channel = PayerChannel(str(cid), str(escrow), int(str(chain_id)), str(payee), str(token),
                           int(str(deposit)), int(str(signed)))
    return StoredChannel(channel, str(wallet), str(origin), str(path), str(signature), int(str(spent)),
                         str(status), int(str(requested)), int(str(withdrawable)),
                         int(str(refunded)) if str(refunded).isdigit() else None, int(str(accepted)))


class ChannelStore:
    """Open channels in SQLite (by default the ledger's file).

    Args:
        path: the database file (created 0600).
    Raises:
        sqlite3.Error: the file cannot be opened.
    """

    def __init__(self, path: str | os.PathLike[str], *, busy_timeout: float = 30.0) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        # synchronous NORMAL: a power cut may undo the last write (a process crash cannot).
        # Vouchers are cumulative, so a channel restored one voucher behind only signs again what
        # was already authorised.
        self._db = open_private_db(self.path, busy_timeout=busy_timeout)
        with self._lock:
            self._db.executescript(_SCHEMA)
            self._migrate()

    def _migrate(self) -> None:
        db = self._db
        if not self._missing():
            return
        db.execute("BEGIN IMMEDIATE")  # one process adds the columns; the others see them
        try:
            for name in self._missing():
                db.execute(f"ALTER TABLE session_channels ADD COLUMN {name} {_ADDED[name]}")
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise

    def _missing(self) -> list[str]:
        have = {row[1] for row in self._db.execute("PRAGMA table_info(session_channels)")}
        return [name for name in _ADDED if name not in have]

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def save(self, stored: StoredChannel, *, now: float) -> None:
        """Insert or replace ``stored`` (durable when this returns)."""
        with self._lock:
            self._db.execute(f"INSERT OR REPLACE INTO session_channels ({_COLUMNS}) VALUES ({_MARKS})",
                             _row(stored, now))

    def get(self, channel_id: str) -> StoredChannel | None:
        """The channel ``channel_id``, whatever its status."""
        with self._lock:
            row = self._db.execute(f"SELECT {_COLUMNS} FROM session_channels WHERE channel_id = ?",
                                   (channel_id.lower(),)).fetchone()
        return None if row is None else _stored(row)

    def open_channels(self, wallet: str, origin: str | None = None) -> list[StoredChannel]:
        """This wallet's open channels (at ``origin`` when given), most recently used first."""
        query = f"SELECT {_COLUMNS} FROM session_channels WHERE wallet = ? AND status = 'open'"
        args: tuple[object, ...] = (wallet.lower(),)
        if origin is not None:
            query += " AND origin = ?"
            args += (origin,)
        with self._lock:
            rows = self._db.execute(query + " ORDER BY updated_at DESC", args).fetchall()
        return [_stored(r) for r in rows]

    def channels(self, wallet: str | None = None) -> list[StoredChannel]:
        """Every channel in the store (of ``wallet`` when given), whatever its status, newest first."""
        query, args = f"SELECT {_COLUMNS} FROM session_channels", tuple[str, ...]()
        if wallet is not None:
            query, args = query + " WHERE wallet = ?", (wallet.lower(),)
        with self._lock:
            rows = self._db.execute(query + " ORDER BY updated_at DESC", args).fetchall()
        return [_stored(r) for r in rows]

    def set_status(self, channel_id: str, status: str, *, now: float) -> None:
        """Mark a channel ``closed`` or ``evicted``."""
        with self._lock:
            self._db.execute("UPDATE session_channels SET status = ?, updated_at = ? WHERE channel_id = ?",
                             (status, now, channel_id.lower()))


class MemoryChannelStore:
    """``ChannelStore`` without persistence (a restart forgets the channels)."""

    def __init__(self) -> None:
        self._rows: dict[str, tuple[StoredChannel, float]] = {}
        self._lock = threading.Lock()
        self.path = None

    def close(self) -> None:
        return None

    def save(self, stored: StoredChannel, *, now: float) -> None:
        with self._lock:
            self._rows[stored.channel_id] = (stored, now)

    def get(self, channel_id: str) -> StoredChannel | None:
        with self._lock:
            got = self._rows.get(channel_id.lower())
        return None if got is None else got[0]

    def open_channels(self, wallet: str, origin: str | None = None) -> list[StoredChannel]:
        return [s for s in self.channels(wallet)
                if s.status == "open" and (origin is None or s.origin == origin)]

    def channels(self, wallet: str | None = None) -> list[StoredChannel]:
        with self._lock:
            rows = sorted(self._rows.values(), key=lambda r: -r[1])
        return [s for s, _ in rows if wallet is None or s.wallet.lower() == wallet.lower()]

    def set_status(self, channel_id: str, status: str, *, now: float) -> None:
        with self._lock:
            got = self._rows.get(channel_id.lower())
            if got is not None:
                self._rows[channel_id.lower()] = (replace(got[0], status=status), now)


AnyChannelStore = ChannelStore | MemoryChannelStore
