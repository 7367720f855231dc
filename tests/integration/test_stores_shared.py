"""Stores shared between OS processes: SQLite (one file) and a real redis-server.

The single-use guarantee of MPP §1.10 (each challenge id / tx hash accepted once)
must hold across uvicorn workers, so many claimers in several processes race for
the same keys and exactly one must win each.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import _store_race
import pytest

from mpp_claude.server.stores import IdemState, StoredResponse, open_store
from mpp_claude.server.stores.redis import RedisStore

pytestmark = pytest.mark.anyio

PROCESSES = 4


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def _in_processes(target: Any, url: str, prefix: str) -> list[Any]:
    ctx = multiprocessing.get_context("forkserver")  # no fork of the threaded test process
    ctx.set_forkserver_preload(["mpp_claude.server.stores", "mpp_claude.server.stores.redis"])
    barrier = ctx.Barrier(PROCESSES)
    out = ctx.Queue()
    procs = [ctx.Process(target=target, args=(url, prefix, barrier, out)) for _ in range(PROCESSES)]
    for p in procs:
        p.start()
    try:
        results = [out.get(timeout=120) for _ in procs]
    finally:
        for p in procs:
            p.join(30)
    assert all(p.exitcode == 0 for p in procs), [p.exitcode for p in procs]
    return results


def _run_race(url: str, prefix: str = "") -> tuple[list[str], list[str]]:
    results = _in_processes(_store_race.race, url, prefix)
    won = [k for w, _ in results for k in w]
    states = [s for _, st in results for s in st]
    return won, states


def test_sqlite_claim_single_use_across_processes(tmp_path: Path) -> None:
    """4 processes x 8 tasks race for each key of one SQLite file: each key is won exactly once."""
    won, states = _run_race(f"sqlite:///{tmp_path}/shared.db")
    assert sorted(won) == sorted(_store_race.KEYS)
    assert states.count("new") == 1 and states.count("in_flight") == len(states) - 1


def test_redis_claim_single_use_across_processes(redis_url: str) -> None:
    """4 processes x 8 tasks race for each key in Redis: each key is won exactly once."""
    won, states = _run_race(redis_url, prefix=f"race-{uuid.uuid4().hex}:")
    assert sorted(won) == sorted(_store_race.KEYS)
    assert states.count("new") == 1 and states.count("in_flight") == len(states) - 1


# --- the Redis store against the same contract as the unit-tested stores ------------------------------


@pytest.fixture
async def redis_store(redis_url: str) -> AsyncIterator[RedisStore]:
    store = RedisStore(redis_url, prefix=f"test-{uuid.uuid4().hex}:")
    yield store
    await store.close()


RESP = StoredResponse(200, (("content-type", "application/json"), ("x-a", "1"), ("x-a", "2")),
                      b'{"ok":true}\xff\x00')


async def test_redis_claim(redis_store: RedisStore) -> None:
    """A key is claimed once; another key is independent; a short TTL really expires."""
    assert await redis_store.claim("ch", 60)
    assert not await redis_store.claim("ch", 60)
    assert await redis_store.claim("short", 0.05)
    assert not await redis_store.claim("short", 0.05)
    await asyncio.sleep(0.2)
    assert await redis_store.claim("short", 0.05)


async def test_redis_idem_lifecycle(redis_store: RedisStore) -> None:
    """new → in flight → completed (bytes intact) → conflict; abort frees only in-flight keys."""
    assert (await redis_store.idem_begin("k", "fp")).state is IdemState.NEW
    assert (await redis_store.idem_begin("k", "fp")).state is IdemState.IN_FLIGHT
    assert (await redis_store.idem_begin("k", "other")).state is IdemState.CONFLICT
    assert await redis_store.idem_complete("k", RESP)
    done = await redis_store.idem_begin("k", "fp")
    assert done.state is IdemState.COMPLETED and done.response == RESP
    assert not await redis_store.idem_complete("k", StoredResponse(500))
    await redis_store.idem_abort("k")
    assert (await redis_store.idem_begin("k", "fp")).state is IdemState.COMPLETED
    assert (await redis_store.idem_begin("a", "fp")).state is IdemState.NEW
    await redis_store.idem_abort("a")
    assert (await redis_store.idem_begin("a", "fp2")).state is IdemState.NEW
    assert not await redis_store.idem_complete("never", RESP)


async def test_redis_idem_lease_and_ttl(redis_store: RedisStore) -> None:
    """An in-flight lease lapses; a completed entry lives ttl_s and then the key is free again."""
    assert (await redis_store.idem_begin("k", "fp", ttl_s=0.3, lease_s=0.05)).state is IdemState.NEW
    await asyncio.sleep(0.15)
    assert not await redis_store.idem_complete("k", RESP)  # lease gone
    assert (await redis_store.idem_begin("k", "fp", ttl_s=0.3, lease_s=5)).state is IdemState.NEW
    assert await redis_store.idem_complete("k", RESP)
    assert (await redis_store.idem_begin("k", "x")).state is IdemState.CONFLICT
    await asyncio.sleep(0.5)
    assert (await redis_store.idem_begin("k", "x")).state is IdemState.NEW


async def test_redis_records(redis_store: RedisStore) -> None:
    """Records come back per kind in insertion order; non-JSON rows are refused."""
    await redis_store.record("usage", {"n": 1})
    await redis_store.record("credit", {"amount": "10"})
    await redis_store.record("usage", {"n": 2, "d": {"x": [1]}})
    assert await redis_store.records("usage") == [{"n": 1}, {"n": 2, "d": {"x": [1]}}]
    assert await redis_store.records("credit") == [{"amount": "10"}]
    with pytest.raises(TypeError):
        await redis_store.record("usage", {"bad": object()})


async def test_redis_and_sqlite_survive_reopen(redis_url: str, tmp_path: Path) -> None:
    """State lives in the backend, not the object: a new handle still refuses a used claim."""
    prefix = f"reopen-{uuid.uuid4().hex}:"
    for url in (redis_url, f"sqlite:///{tmp_path}/r.db"):
        first = open_store(url, redis_prefix=prefix)
        assert await first.claim("tx", 60)
        await first.close()
        second = open_store(url, redis_prefix=prefix)
        assert not await second.claim("tx", 60)
        await second.close()




def test_sqlite_draws_never_pass_the_limit_across_processes(tmp_path: Path) -> None:
    """4 processes draw 160 units from a budget of 50 at once: exactly 50 are granted."""
    granted = _in_processes(_store_race.draw_race, f"sqlite:///{tmp_path}/budget.db", "")
    assert sum(granted) == _store_race.DRAW_LIMIT


def test_redis_draws_never_pass_the_limit_across_processes(redis_url: str) -> None:
    """The same race against one redis-server: exactly the limit is granted."""
    granted = _in_processes(_store_race.draw_race, redis_url, f"draw-{uuid.uuid4().hex}:")
    assert sum(granted) == _store_race.DRAW_LIMIT
