"""The server's shared state, behind one small async interface.

The reference server keeps three kinds of state that must be shared by every
worker process serving the same payee (MPP §1.10 "replay, idempotency,
concurrency"):

* **Single-use claims** (``claim``): a challenge id or a transaction hash may be
  accepted once.  ``claim`` is an atomic put-if-absent with expiry: across all
  processes sharing one store it returns ``True`` exactly once per key while the
  key is alive.  The TTL must outlive every way the claimed thing could still be
  accepted (for a challenge id: until it expires; for a tx hash: at least as long
  as the challenge it pays for), because after expiry the key can be claimed again.
* **Idempotency cache** (``idem_begin`` / ``idem_complete`` / ``idem_abort``):
  ``Idempotency-Key`` replays the stored response without re-executing the
  request.  ``idem_begin`` atomically reserves the key for one in-flight request
  and reports what it found (:class:`IdemState`).  The caller decides the answer:
  ``NEW`` → run the request then ``idem_complete`` (or ``idem_abort`` on failure);
  ``IN_FLIGHT`` → 409 with ``Retry-After``; ``COMPLETED`` → replay
  ``result.response``; ``CONFLICT`` (same key, different body fingerprint) → 422.
  Keys are opaque here: the caller scopes them (e.g. payer + header value).
  An in-flight reservation is a lease (``lease_s``) so a crashed worker does not
  block a key for a day; a completed entry lives ``ttl_s`` (24 h by default).
* **Records** (``record`` / ``records``): append-only rows, e.g. the usage
  measured next to the quoted price for each paid request, and credit records
  when the upstream fails after the payer's money has moved.  Rows are plain
  JSON-able dicts; ``records(kind)`` returns them in insertion order.

Implementations: :mod:`.sqlite` (embedded default; WAL, safe across threads,
processes and uvicorn workers sharing one file), :mod:`.redis` (redis.asyncio,
``SET NX PX`` and Lua) and :mod:`.memory` (one process, unit tests only).
:func:`mpp_claude.server.stores.open_store` picks one from a URL.

Time: SQLite and memory stores read a ``clock`` passed to their constructor
(default ``time.time``) so tests can move time; Redis uses the server's own
expiry, which is the only clock all its clients agree on.
"""

from __future__ import annotations

import enum
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

DEFAULT_IDEM_TTL_S = 24 * 3600.0
"""How long a completed idempotent response is replayed (24 h, as the IETF draft suggests)."""

DEFAULT_IDEM_LEASE_S = 15 * 60.0
"""How long an in-flight reservation holds a key before another request may take it over."""


@dataclass(frozen=True, slots=True)
class StoredResponse:
    """A complete HTTP response kept for idempotent replay.

    Args:
        status: HTTP status code.
        headers: header pairs in order (names as sent; repeats allowed).
        body: the full body bytes.
    """

    status: int
    headers: tuple[tuple[str, str], ...] = ()
    body: bytes = b""

    def __post_init__(self) -> None:
        if not 100 <= self.status <= 599:
            raise ValueError(f"status must be 100..599, got {self.status!r}")
        # accept any sequence of pairs but keep an immutable tuple of tuples
        object.__setattr__(self, "headers", tuple((str(k), str(v)) for k, v in self.headers))
        if not isinstance(self.body, bytes):
            raise TypeError(f"body must be bytes, got {type(self.body).__name__}")

    def to_json(self) -> dict[str, Any]:
        """Plain JSON-able form (body as latin-1 text, which round-trips any bytes)."""
        return {"status": self.status, "headers": [list(p) for p in self.headers],
                "body": self.body.decode("latin-1")}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> StoredResponse:
        """Inverse of :meth:`to_json`."""
        return cls(int(data["status"]), tuple((str(k), str(v)) for k, v in data["headers"]),
                   str(data["body"]).encode("latin-1"))


class IdemState(enum.Enum):
    """What ``idem_begin`` found for a key."""

    NEW = "new"
    """The key was free (or expired): it is now reserved for the caller, who must complete or abort."""
    IN_FLIGHT = "in_flight"
    """Another request with the same key and body is running: answer 409 and let the client retry."""
    COMPLETED = "completed"
    """A response is stored: replay ``IdemResult.response`` without re-executing."""
    CONFLICT = "conflict"
    """The key was used with a different body fingerprint: answer 422."""


@dataclass(frozen=True, slots=True)
class IdemResult:
    """Outcome of ``idem_begin``; ``response`` is set only for ``COMPLETED``."""

    state: IdemState
    response: StoredResponse | None = field(default=None)


def request_fingerprint(*parts: bytes | str) -> str:
    """Hash the parts of a request that must match for an idempotent replay.

    Args:
        parts: e.g. method, path and body bytes; each is length-prefixed so
            ``("ab", "c")`` and ``("a", "bc")`` differ.

    Returns:
        A lowercase hex SHA-256 digest.
    """
    h = hashlib.sha256()
    for part in parts:
        data = part.encode() if isinstance(part, str) else part
        h.update(len(data).to_bytes(8, "big"))
        h.update(data)
    return h.hexdigest()


def check_ttl(ttl_s: float, name: str = "ttl_s") -> None:
    """Raise ``ValueError`` unless ``ttl_s`` is a positive finite number of seconds."""
    if not isinstance(ttl_s, (int, float)) or not 0 < ttl_s < float("inf"):
        raise ValueError(f"{name} must be a positive number of seconds, got {ttl_s!r}")


def check_draw(key: str, amount: int, limit: int, ttl_s: float) -> None:
    """Validate the arguments of ``Store.draw`` (``ValueError``)."""
    check_key(key)
    check_ttl(ttl_s)
    if not isinstance(amount, int) or not isinstance(limit, int) or amount < 0 or limit < 0:
        raise ValueError(f"amount and limit must be non-negative ints, got {amount!r}, {limit!r}")


def check_key(key: str, name: str = "key") -> None:
    """Raise ``ValueError`` unless ``key`` is a non-empty ``str`` of at most 1024 characters."""
    if not isinstance(key, str) or not key or len(key) > 1024:
        raise ValueError(f"{name} must be a non-empty str of at most 1024 characters, got {key!r}")


@runtime_checkable
class Store(Protocol):
    """Shared server state (see the module docstring for the semantics of each operation)."""

    async def claim(self, key: str, ttl_s: float) -> bool:
        """Atomically claim ``key`` for ``ttl_s`` seconds.

        Returns:
            ``True`` for exactly one caller across every process sharing the
            store while the key is alive; ``False`` for everyone else.

        Raises:
            ValueError: empty key or non-positive TTL.
        """
        ...

    async def draw(self, key: str, amount: int, limit: int, ttl_s: float) -> int | None:
        """Atomically add ``amount`` to the counter ``key`` unless the total would pass ``limit``.

        The counter starts at 0 and disappears ``ttl_s`` seconds after it was created (a budget
        period); one draw is all or nothing across every process sharing the store.

        Returns:
            The new total, or ``None`` (nothing drawn) when ``total + amount > limit``.

        Raises:
            ValueError: empty key, non-positive TTL, negative amount or limit.
        """
        ...

    async def idem_begin(self, key: str, fingerprint: str, ttl_s: float = DEFAULT_IDEM_TTL_S,
                         lease_s: float = DEFAULT_IDEM_LEASE_S) -> IdemResult:
        """Atomically look up ``key`` and reserve it when free.

        Args:
            key: the caller-scoped idempotency key.
            fingerprint: :func:`request_fingerprint` of the request.
            ttl_s: how long the completed response will be replayed.
            lease_s: how long the in-flight reservation lasts without completion.

        Returns:
            An :class:`IdemResult`; only ``NEW`` reserves the key for the caller.
        """
        ...

    async def idem_complete(self, key: str, response: StoredResponse) -> bool:
        """Store the response of the reserved ``key`` for replay during its ``ttl_s``.

        Returns:
            ``False`` if the reservation was gone (lease expired or aborted): nothing stored.
        """
        ...

    async def idem_abort(self, key: str) -> None:
        """Release an in-flight reservation so the key can be used again (no-op if completed)."""
        ...

    async def record(self, kind: str, row: dict[str, Any]) -> None:
        """Append ``row`` (JSON-able) to the records of ``kind``.

        Raises:
            TypeError: ``row`` is not JSON-serialisable.
        """
        ...

    async def records(self, kind: str) -> Sequence[dict[str, Any]]:
        """All rows recorded under ``kind``, oldest first."""
        ...

    async def close(self) -> None:
        """Release connections; the store must not be used afterwards."""
        ...
