"""In-memory :class:`~.base.Store` for unit tests: one process, one event loop, nothing persisted.

Never use it for a real server: two uvicorn workers would each accept the same
credential once.  Every method runs without an ``await`` inside, so on one event
loop each operation is atomic.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

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

_compact = json.JSONEncoder(separators=(",", ":")).encode  # json.dumps(row, separators=…), one encoder


@dataclass(slots=True)
class _Idem:
    fingerprint: str
    ttl_s: float
    expires: float
    response: StoredResponse | None = None


class MemoryStore:
    """A :class:`~.base.Store` held in dicts.

    Args:
        clock: returns the current time in seconds (default ``time.time``);
            pass a fake to test expiry.
    """

    def __init__(self, *, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._claims: dict[str, float] = {}
        self._counters: dict[str, tuple[int, float]] = {}  # key -> (total, expires)
        self._idem: dict[str, _Idem] = {}
        self._records: dict[str, list[str]] = {}
        self._closed = False

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError("store is closed")

    async def claim(self, key: str, ttl_s: float) -> bool:
        """See :meth:`~.base.Store.claim`."""
        check_key(key)
        check_ttl(ttl_s)
        self._check_open()
        now = self._clock()
        expires = self._claims.get(key)
        if expires is not None and expires > now:
            return False
        self._claims[key] = now + ttl_s
        return True

    async def draw(self, key: str, amount: int, limit: int, ttl_s: float) -> int | None:
        """See :meth:`~.base.Store.draw`."""
        check_draw(key, amount, limit, ttl_s)
        self._check_open()
        now = self._clock()
        total, expires = self._counters.get(key, (0, now + ttl_s))
        if expires <= now:
            total, expires = 0, now + ttl_s
        if total + amount > limit:
            return None
        self._counters[key] = (total + amount, expires)
        return total + amount

    async def idem_begin(self, key: str, fingerprint: str, ttl_s: float = DEFAULT_IDEM_TTL_S,
                         lease_s: float = DEFAULT_IDEM_LEASE_S) -> IdemResult:
        """See :meth:`~.base.Store.idem_begin`."""
        check_key(key)
        check_key(fingerprint, "fingerprint")
        check_ttl(ttl_s)
        check_ttl(lease_s, "lease_s")
        self._check_open()
        now = self._clock()
        entry = self._idem.get(key)
        if entry is None or entry.expires <= now:
            self._idem[key] = _Idem(fingerprint, ttl_s, now + lease_s)
            return IdemResult(IdemState.NEW)
        if entry.fingerprint != fingerprint:
            return IdemResult(IdemState.CONFLICT)
        if entry.response is None:
            return IdemResult(IdemState.IN_FLIGHT)
        return IdemResult(IdemState.COMPLETED, entry.response)

    async def idem_complete(self, key: str, response: StoredResponse) -> bool:
        """See :meth:`~.base.Store.idem_complete`."""
        check_key(key)
        self._check_open()
        now = self._clock()
        entry = self._idem.get(key)
        if entry is None or entry.expires <= now or entry.response is not None:
            return False
        entry.response = response
        entry.expires = now + entry.ttl_s
        return True

    async def idem_abort(self, key: str) -> None:
        """See :meth:`~.base.Store.idem_abort`."""
        check_key(key)
        self._check_open()
        entry = self._idem.get(key)
        if entry is not None and entry.response is None:
            del self._idem[key]

    async def record(self, kind: str, row: dict[str, Any]) -> None:
        """See :meth:`~.base.Store.record`."""
        check_key(kind, "kind")
        self._check_open()
        # serialise now: the row is frozen as it was, and non-JSON rows fail as in the real stores
        self._records.setdefault(kind, []).append(_compact(row))

    async def records(self, kind: str) -> Sequence[dict[str, Any]]:
        """See :meth:`~.base.Store.records`."""
        check_key(kind, "kind")
        self._check_open()
        return [json.loads(text) for text in self._records.get(kind, [])]

    async def close(self) -> None:
        """See :meth:`~.base.Store.close`."""
        self._closed = True
