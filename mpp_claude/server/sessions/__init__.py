"""The session intent on the reference server (opt-in): pay-per-use streaming over a payment channel.

* ``settings``: ``SessionSettings`` (payee key, escrow, deposits, settlement schedule).
* ``offer``: the session challenge offered beside the charge challenges; echo checks (pure).
* ``book``: per-channel books in the server's store (SQLite table, Redis key, memory), atomic.
* ``gate``: credential actions (open, voucher, topUp, close) on the books and the chain.
* ``meter``: per request, hold the quote and charge the exact usage; schedule settlements.
* ``settle``: when and with which voucher the payee settles; the payee's transactions.
* ``http``: the ``/v1/chat/completions`` wrapper, SSE metering, ``enable_sessions(app, settings)``.
"""

from __future__ import annotations

from .book import ChannelBook, ChannelRecord, MemoryBook, RedisBook, SQLiteBook, open_book
from .gate import SessionGate, SessionGrant
from .http import enable_sessions
from .offer import SessionTerms, check_session_echo, session_offers, session_request
from .settings import SessionSettings

__all__ = [
    "ChannelBook",
    "ChannelRecord",
    "MemoryBook",
    "RedisBook",
    "SQLiteBook",
    "SessionGate",
    "SessionGrant",
    "SessionSettings",
    "SessionTerms",
    "check_session_echo",
    "enable_sessions",
    "open_book",
    "session_offers",
    "session_request",
]
