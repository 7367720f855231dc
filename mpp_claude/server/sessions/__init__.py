"""The session intent on the reference server (opt-in): pay-per-use streaming over a payment channel.

* ``settings``: ``SessionSettings`` (payee key, escrow, deposits, settlement schedule) and the
  ``session_*`` configuration keys.
* ``offer``: the session challenge offered beside the charge challenges; echo checks (pure).
* ``book``: per-channel books in the server's store (SQLite table, Redis key, memory), atomic.
* ``gate``: credential actions (open, voucher, topUp, close) on the books and the chain.
* ``meter``: per request, hold the quote and charge the exact usage; settlements, single-flight
  across replicas through a lease in the store.
* ``settle``: when and with which voucher the payee settles; the payee's transactions.
* ``sweeper``: the background task that settles idle channels by time (and at shutdown).
* ``closewatch``: the background task that settles a channel at once when its payer requests a
  forced close on the escrow (and stops serving it).
* ``stream``: SSE metering (usage tap, receipt frame, in-band error frames).
* ``paid``: serving a session-paid content request on either paid route, ``Idempotency-Key``.
* ``http``: the route wrappers, session offers in 402s, ``enable_sessions(app, settings)``.

Names are imported lazily, so ``server.config`` can use ``settings`` without a cycle.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "ChannelBook": "book", "ChannelRecord": "book", "MemoryBook": "book", "RedisBook": "book",
    "SQLiteBook": "book", "open_book": "book", "SessionGate": "gate", "SessionGrant": "gate",
    "enable_sessions": "http", "SessionTerms": "offer", "check_session_echo": "offer",
    "session_offers": "offer", "session_request": "offer", "SessionSettings": "settings",
    "session_settings": "settings", "Sweeper": "sweeper", "CloseWatcher": "closewatch",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f".{module}", __name__), name)
