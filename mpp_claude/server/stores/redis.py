"""Redis :class:`~.base.Store` (redis.asyncio) for servers spread over several hosts.

* ``claim`` is ``SET key 1 NX PX ttl``: Redis executes it atomically, so exactly
  one client across all hosts gets ``OK`` while the key lives.
* The idempotency operations are Lua scripts (``EVALSHA``), which Redis runs
  atomically: look-up and reservation cannot interleave with another client.
  An entry is a hash ``{fp, ttl, status, headers, body}``; ``status`` is absent
  while the request is in flight and the key's ``PEXPIRE`` is the lease.
* ``draw`` (budget counters) is a Lua script too: read, compare with the limit and
  ``INCRBY`` happen as one step; the counter's ``PX`` is its budget period.
* Records are lists (``RPUSH``) of JSON rows, never expired.

Connection failures raise ``redis.exceptions.ConnectionError`` (or ``TimeoutError``)
unchanged; a claim that raised was not granted.

Expiry is Redis's own (``PX``/``PEXPIRE``), the one clock all clients agree on.
Every key is prefixed (``mpp_claude:`` by default) so one Redis can serve
several deployments.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import redis.asyncio as aioredis

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

# KEYS[1] entry; ARGV fingerprint, ttl_ms, lease_ms.  Returns {state} or {"completed", status, headers, body}.
_BEGIN = """
local fp = redis.call('HGET', KEYS[1], 'fp')
if not fp then
  redis.call('DEL', KEYS[1])
  redis.call('HSET', KEYS[1], 'fp', ARGV[1], 'ttl', ARGV[2])
  redis.call('PEXPIRE', KEYS[1], ARGV[3])
  return {'new'}
end
if fp ~= ARGV[1] then return {'conflict'} end
local status = redis.call('HGET', KEYS[1], 'status')
if not status then return {'in_flight'} end
return {'completed', status, redis.call('HGET', KEYS[1], 'headers'), redis.call('HGET', KEYS[1], 'body')}
"""

# KEYS[1] entry; ARGV status, headers json, body.  Returns 1 when stored.
_COMPLETE = """
if redis.call('HEXISTS', KEYS[1], 'fp') == 0 then return 0 end
if redis.call('HEXISTS', KEYS[1], 'status') == 1 then return 0 end
redis.call('HSET', KEYS[1], 'status', ARGV[1], 'headers', ARGV[2], 'body', ARGV[3])
redis.call('PEXPIRE', KEYS[1], redis.call('HGET', KEYS[1], 'ttl'))
return 1
"""

# KEYS[1] entry.  Deletes only an in-flight reservation.
_ABORT = """
if redis.call('HEXISTS', KEYS[1], 'status') == 0 then redis.call('DEL', KEYS[1]) end
return 0
"""


# KEYS[1] counter; ARGV amount, limit, ttl_ms.  Returns the new total, or -1 when over the limit.
_DRAW = """
local total = tonumber(redis.call('GET', KEYS[1]) or '0')
local amount = tonumber(ARGV[1])
if total + amount > tonumber(ARGV[2]) then return -1 end
if redis.call('EXISTS', KEYS[1]) == 0 then
  redis.call('SET', KEYS[1], amount, 'PX', ARGV[3])
  return amount
end
return redis.call('INCRBY', KEYS[1], amount)
"""


def _ms(seconds: float) -> int:
    return max(1, int(seconds * 1000))


class RedisStore:
    """A :class:`~.base.Store` in Redis.

    Args:
        url: ``redis://[:password@]host:port/db``, ``rediss://…`` or ``unix:///path``.
        prefix: prepended to every key.
        client: an existing ``redis.asyncio.Redis`` (``decode_responses=False``);
            then ``url`` is ignored and :meth:`close` leaves the client open.

    No connection is made until the first call; connection failures then raise
    ``redis.exceptions.ConnectionError``.
    """

    def __init__(self, url: str = "redis://127.0.0.1:6379/0", *, prefix: str = "mpp_claude:",
                 client: aioredis.Redis | None = None) -> None:
        self._owned = client is None
        self._redis: aioredis.Redis = client if client is not None else aioredis.Redis.from_url(
            url, decode_responses=False, socket_connect_timeout=5.0, health_check_interval=30)
        self._prefix = prefix
        self._begin = self._redis.register_script(_BEGIN)
        self._complete = self._redis.register_script(_COMPLETE)
        self._abort = self._redis.register_script(_ABORT)
        self._draw = self._redis.register_script(_DRAW)

    def _key(self, space: str, key: str) -> str:
        return f"{self._prefix}{space}:{key}"

    async def claim(self, key: str, ttl_s: float) -> bool:
        """See :meth:`~.base.Store.claim`."""
        check_key(key)
        check_ttl(ttl_s)
        return bool(await self._redis.set(self._key("claim", key), b"1", nx=True, px=_ms(ttl_s)))

    async def draw(self, key: str, amount: int, limit: int, ttl_s: float) -> int | None:
        """See :meth:`~.base.Store.draw` (a Lua script: Redis runs it atomically)."""
        check_draw(key, amount, limit, ttl_s)
        total = int(await self._draw(keys=[self._key("counter", key)], args=[amount, limit, _ms(ttl_s)]))
        return None if total < 0 else total

    async def idem_begin(self, key: str, fingerprint: str, ttl_s: float = DEFAULT_IDEM_TTL_S,
                         lease_s: float = DEFAULT_IDEM_LEASE_S) -> IdemResult:
        """See :meth:`~.base.Store.idem_begin`."""
        check_key(key)
        check_key(fingerprint, "fingerprint")
        check_ttl(ttl_s)
        check_ttl(lease_s, "lease_s")
        reply = await self._begin(keys=[self._key("idem", key)],
                                  args=[fingerprint, _ms(ttl_s), _ms(lease_s)])
        state = IdemState(reply[0].decode())
        if state is not IdemState.COMPLETED:
            return IdemResult(state)
        headers = tuple((str(k), str(v)) for k, v in json.loads(reply[2]))
        return IdemResult(state, StoredResponse(int(reply[1]), headers, bytes(reply[3])))

    async def idem_complete(self, key: str, response: StoredResponse) -> bool:
        """See :meth:`~.base.Store.idem_complete`."""
        check_key(key)
        headers = json.dumps([list(p) for p in response.headers])
        stored = await self._complete(keys=[self._key("idem", key)],
                                      args=[response.status, headers, response.body])
        return bool(stored)

    async def idem_abort(self, key: str) -> None:
        """See :meth:`~.base.Store.idem_abort`."""
        check_key(key)
        await self._abort(keys=[self._key("idem", key)], args=[])

    async def record(self, kind: str, row: dict[str, Any]) -> None:
        """See :meth:`~.base.Store.record`."""
        check_key(kind, "kind")
        await self._redis.rpush(self._key("records", kind), json.dumps(row, separators=(",", ":")))

    async def records(self, kind: str) -> Sequence[dict[str, Any]]:
        """See :meth:`~.base.Store.records`."""
        check_key(kind, "kind")
        rows = await self._redis.lrange(self._key("records", kind), 0, -1)
        return [json.loads(r) for r in rows]

    async def close(self) -> None:
        """See :meth:`~.base.Store.close`."""
        if self._owned:
            await self._redis.aclose()
