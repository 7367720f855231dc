"""Shared server state: single-use claims, the idempotency cache and append-only records.

``open_store(url)`` picks the implementation:

=====================================  ==========================================
``sqlite:///relative/or/abs/path.db``  :class:`SQLiteStore` (embedded default)
``/plain/path.db`` or ``file.db``      :class:`SQLiteStore`
``redis://…``, ``rediss://…``          :class:`RedisStore` (``unix://`` too)
``memory://``                          :class:`MemoryStore` (unit tests only)
=====================================  ==========================================

As in SQLAlchemy, ``sqlite:///rel.db`` is relative to the working directory and
``sqlite:////abs/path.db`` (four slashes) is absolute; a plain path is taken as is.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from ...errors import ConfigError
from .base import (
    DEFAULT_IDEM_LEASE_S,
    DEFAULT_IDEM_TTL_S,
    IdemResult,
    IdemState,
    Store,
    StoredResponse,
    request_fingerprint,
)
from .memory import MemoryStore
from .sqlite import SQLiteStore

__all__ = [
    "DEFAULT_IDEM_LEASE_S",
    "DEFAULT_IDEM_TTL_S",
    "IdemResult",
    "IdemState",
    "MemoryStore",
    "SQLiteStore",
    "Store",
    "StoredResponse",
    "open_store",
    "request_fingerprint",
]


def open_store(url: str, *, clock: Callable[[], float] = time.time, redis_prefix: str = "mpp_claude:"
               ) -> Store:
    """Open the store named by ``url`` (see the module docstring for the forms).

    Args:
        url: store URL or plain SQLite path.
        clock: time source for the SQLite and memory stores (Redis keeps its own).
        redis_prefix: key prefix for a Redis store.

    Returns:
        An open :class:`Store`; call ``await store.close()`` when done.

    Raises:
        ConfigError: empty URL, an unknown scheme, or a Redis URL while the
            ``redis`` package is not installed.
    """
    if not isinstance(url, str) or not url.strip():
        raise ConfigError("store URL is empty: use sqlite:///path, redis://host:port/db or memory://")
    url = url.strip()
    scheme, sep, rest = url.partition("://")
    if not sep:
        return SQLiteStore(url, clock=clock)
    scheme = scheme.lower()
    if scheme == "sqlite":
        path = rest[1:] if rest.startswith("/") else rest  # sqlite:///x → "x"; sqlite:////x → "/x"
        if not path:
            raise ConfigError(f"store URL {url!r} has no file path (sqlite:///path/to/file.db)")
        return SQLiteStore(path, clock=clock)
    if scheme in {"redis", "rediss", "unix"}:
        try:
            from .redis import RedisStore
        except ImportError as exc:  # pragma: no cover - redis is in the [redis] extra
            raise ConfigError("a redis:// store needs the redis package: pip install 'mpp-claude[redis]'"
                              ) from exc
        return RedisStore(url, prefix=redis_prefix)
    if scheme == "memory":
        return MemoryStore(clock=clock)
    raise ConfigError(f"unknown store URL scheme {scheme!r} in {url!r}: "
                      "use sqlite:///path, redis://host:port/db or memory://")
