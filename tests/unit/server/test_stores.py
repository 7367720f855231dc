"""The store contract, run against the in-memory and SQLite stores with a fake clock."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from mpp_claude.errors import ConfigError
from mpp_claude.server.stores import (
    IdemState,
    MemoryStore,
    SQLiteStore,
    Store,
    StoredResponse,
    open_store,
    request_fingerprint,
)

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class FakeClock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture(params=["memory", "sqlite"])
async def store(request: pytest.FixtureRequest, clock: FakeClock, tmp_path: Path) -> AsyncIterator[Store]:
    s: Store = MemoryStore(clock=clock) if request.param == "memory" else SQLiteStore(
        tmp_path / "s.db", clock=clock)
    yield s
    await s.close()


RESP = StoredResponse(200, (("content-type", "application/json"), ("x-a", "1"), ("x-a", "2")),
                      b'{"ok":true}\xff\x00')


async def test_claim_is_single_use(store: Store) -> None:
    """The first claim of a key wins, every later one loses while it lives."""
    assert await store.claim("ch_1", 60) is True
    assert await store.claim("ch_1", 60) is False
    assert await store.claim("ch_2", 60) is True


async def test_claim_expires(store: Store, clock: FakeClock) -> None:
    """After its TTL a claimed key can be claimed again (and not a moment before)."""
    assert await store.claim("k", 10)
    clock.now += 9.999
    assert not await store.claim("k", 10)
    clock.now += 0.001
    assert await store.claim("k", 10)
    assert not await store.claim("k", 10)


@pytest.mark.parametrize("ttl", [0, -1, float("inf"), float("nan")])
async def test_claim_rejects_bad_ttl(store: Store, ttl: float) -> None:
    """A TTL that is not a positive finite number is a caller error."""
    with pytest.raises(ValueError, match="ttl_s"):
        await store.claim("k", ttl)


async def test_claim_rejects_empty_key(store: Store) -> None:
    """An empty key is a caller error, not a claim."""
    with pytest.raises(ValueError, match="key"):
        await store.claim("", 10)


async def test_idem_lifecycle(store: Store) -> None:
    """new → in flight → completed (replayed byte for byte) → conflict on another body."""
    first = await store.idem_begin("idem-1", "fp-a")
    assert first.state is IdemState.NEW and first.response is None
    assert (await store.idem_begin("idem-1", "fp-a")).state is IdemState.IN_FLIGHT
    assert (await store.idem_begin("idem-1", "fp-b")).state is IdemState.CONFLICT
    assert await store.idem_complete("idem-1", RESP) is True
    again = await store.idem_begin("idem-1", "fp-a")
    assert again.state is IdemState.COMPLETED
    assert again.response == RESP
    assert (await store.idem_begin("idem-1", "fp-b")).state is IdemState.CONFLICT
    assert await store.idem_complete("idem-1", StoredResponse(500)) is False  # first answer stays
    assert (await store.idem_begin("idem-1", "fp-a")).response == RESP


async def test_idem_abort_frees_the_key(store: Store) -> None:
    """An aborted reservation lets the next request run; abort never drops a completed entry."""
    assert (await store.idem_begin("k", "fp")).state is IdemState.NEW
    await store.idem_abort("k")
    assert (await store.idem_begin("k", "fp2")).state is IdemState.NEW
    assert await store.idem_complete("k", RESP)
    await store.idem_abort("k")
    assert (await store.idem_begin("k", "fp2")).state is IdemState.COMPLETED


async def test_idem_complete_without_reservation(store: Store) -> None:
    """Completing a key that was never reserved stores nothing."""
    assert await store.idem_complete("nobody", RESP) is False
    assert (await store.idem_begin("nobody", "fp")).state is IdemState.NEW


async def test_idem_lease_and_ttl_expire(store: Store, clock: FakeClock) -> None:
    """A stale in-flight lease is taken over; a completed entry is replayed for ttl_s, then forgotten."""
    assert (await store.idem_begin("k", "fp", ttl_s=100, lease_s=5)).state is IdemState.NEW
    clock.now += 5
    assert (await store.idem_begin("k", "fp", ttl_s=100, lease_s=5)).state is IdemState.NEW
    clock.now += 1
    assert await store.idem_complete("k", RESP)
    clock.now += 99
    assert (await store.idem_begin("k", "other")).state is IdemState.CONFLICT
    clock.now += 1
    assert (await store.idem_begin("k", "other")).state is IdemState.NEW


async def test_idem_complete_after_lease_expired(store: Store, clock: FakeClock) -> None:
    """A request that outlived its lease cannot store its answer."""
    await store.idem_begin("k", "fp", lease_s=5)
    clock.now += 6
    assert await store.idem_complete("k", RESP) is False


async def test_records_append_in_order(store: Store) -> None:
    """Rows come back per kind, oldest first, as the JSON they were."""
    await store.record("usage", {"req": 1, "quote": "100", "input_tokens": 5})
    await store.record("credit", {"req": 2, "amount": 7})
    await store.record("usage", {"req": 3, "nested": {"a": [1, 2]}})
    assert await store.records("usage") == [{"req": 1, "quote": "100", "input_tokens": 5},
                                            {"req": 3, "nested": {"a": [1, 2]}}]
    assert await store.records("credit") == [{"req": 2, "amount": 7}]
    assert await store.records("nothing") == []


async def test_record_rejects_non_json(store: Store) -> None:
    """A row that is not JSON fails loudly and leaves nothing behind."""
    with pytest.raises(TypeError):
        await store.record("usage", {"x": object()})
    assert await store.records("usage") == []


async def test_closed_store_refuses(store: Store) -> None:
    """Using a closed store raises instead of silently accepting a claim."""
    await store.close()
    with pytest.raises(RuntimeError, match="closed"):
        await store.claim("k", 1)


async def test_sqlite_state_is_shared_by_two_handles(tmp_path: Path, clock: FakeClock) -> None:
    """Two store objects on one file see each other's claims and idempotency entries."""
    a = SQLiteStore(tmp_path / "x.db", clock=clock)
    b = SQLiteStore(tmp_path / "x.db", clock=clock)
    try:
        assert await a.claim("tx", 60)
        assert not await b.claim("tx", 60)
        await a.idem_begin("i", "fp")
        assert (await b.idem_begin("i", "fp")).state is IdemState.IN_FLIGHT
        await a.record("usage", {"n": 1})
        assert await b.records("usage") == [{"n": 1}]
    finally:
        await a.close()
        await b.close()


def test_stored_response_validates() -> None:
    """A status outside 100..599 or a str body cannot be stored."""
    with pytest.raises(ValueError, match="status"):
        StoredResponse(42)
    with pytest.raises(TypeError, match="body"):
        StoredResponse(200, (), "text")  # type: ignore[arg-type]
    assert StoredResponse.from_json(RESP.to_json()) == RESP


def test_fingerprint_is_length_prefixed() -> None:
    """Moving a byte between parts changes the fingerprint; equal parts give equal fingerprints."""
    assert request_fingerprint("ab", "c") != request_fingerprint("a", "bc")
    assert request_fingerprint("POST", b"{}") == request_fingerprint(b"POST", "{}")


async def test_open_store_urls(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each URL form opens the right store; junk is a ConfigError naming the URL."""
    monkeypatch.chdir(tmp_path)
    stores = [open_store("memory://"), open_store(f"sqlite:///{tmp_path}/a.db"),  # four slashes
              open_store(str(tmp_path / "b.db")), open_store("sqlite:///rel.db")]
    try:
        assert isinstance(stores[0], MemoryStore)
        assert isinstance(stores[1], SQLiteStore) and stores[1].path == str(tmp_path / "a.db")
        assert isinstance(stores[2], SQLiteStore) and stores[2].path == str(tmp_path / "b.db")
        assert isinstance(stores[3], SQLiteStore) and stores[3].path == "rel.db"
        assert (tmp_path / "rel.db").exists()
    finally:
        for s in stores:
            await s.close()
    from mpp_claude.server.stores.redis import RedisStore
    r = open_store("redis://127.0.0.1:1/0")
    assert isinstance(r, RedisStore)
    await r.close()
    for bad in ["", "  ", "ftp://x", "sqlite://"]:
        with pytest.raises(ConfigError):
            open_store(bad)


def test_sqlite_claim_single_use_across_threads(tmp_path: Path) -> None:
    """Threads with their own event loops, sharing one store object or opening their own, race for
    the same keys: every key is won exactly once."""
    import asyncio
    import threading

    shared = SQLiteStore(tmp_path / "t.db")
    keys = [f"k{i}" for i in range(10)]
    barrier = threading.Barrier(6)
    wins: list[str] = []
    lock = threading.Lock()

    def worker(own: bool) -> None:
        async def run() -> None:
            store = SQLiteStore(tmp_path / "t.db") if own else shared
            barrier.wait()
            tries = [k for k in keys for _ in range(4)]
            results = await asyncio.gather(*(store.claim(k, 60) for k in tries))
            with lock:
                wins.extend(k for k, ok in zip(tries, results, strict=True) if ok)
            if own:
                await store.close()

        asyncio.run(run())

    threads = [threading.Thread(target=worker, args=(i % 2 == 0,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    asyncio.run(shared.close())
    assert sorted(wins) == sorted(keys)


async def test_draw_is_all_or_nothing_up_to_the_limit(store: Store) -> None:
    """Draws add up to the limit exactly; one that would pass it takes nothing."""
    assert await store.draw("gas", 400, 1000, 60) == 400
    assert await store.draw("gas", 500, 1000, 60) == 900
    assert await store.draw("gas", 200, 1000, 60) is None  # 1100 > 1000: refused whole
    assert await store.draw("gas", 100, 1000, 60) == 1000
    assert await store.draw("gas", 1, 1000, 60) is None
    assert await store.draw("other", 1000, 1000, 60) == 1000  # counters are per key


async def test_draw_period_restarts_after_ttl(store: Store, clock: FakeClock) -> None:
    """The counter lives ``ttl_s`` from its first draw (later draws do not extend it)."""
    assert await store.draw("day", 10, 10, 100) == 10
    clock.now += 50
    assert await store.draw("day", 1, 10, 100) is None
    clock.now += 50
    assert await store.draw("day", 7, 10, 100) == 7


@pytest.mark.parametrize(("amount", "limit", "ttl"), [(-1, 10, 60), (1, -1, 60), (1, 10, 0), (1.5, 10, 60)])
async def test_draw_rejects_bad_arguments(store: Store, amount: int, limit: int, ttl: float) -> None:
    with pytest.raises(ValueError):
        await store.draw("k", amount, limit, ttl)


async def test_draw_survives_reopening_the_sqlite_file(tmp_path: Path, clock: FakeClock) -> None:
    """What was drawn is on disk: a restarted worker does not get a fresh budget."""
    first = SQLiteStore(tmp_path / "b.db", clock=clock)
    assert await first.draw("gas", 600, 1000, 3600) == 600
    await first.close()
    second = SQLiteStore(tmp_path / "b.db", clock=clock)
    assert await second.draw("gas", 600, 1000, 3600) is None
    assert await second.draw("gas", 400, 1000, 3600) == 1000
    await second.close()


async def test_sqlite_waits_for_another_writer_off_the_event_loop(tmp_path: Path) -> None:
    """While another process holds the file's write lock, an idempotency write waits for it in a
    worker thread (the event loop keeps running) and then succeeds; nothing is lost."""
    import asyncio
    import sqlite3
    import time

    store = SQLiteStore(tmp_path / "locked.db")
    other = sqlite3.connect(tmp_path / "locked.db", isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    try:
        task = asyncio.create_task(store.idem_begin("k", "fp"))
        t0 = time.monotonic()
        await asyncio.sleep(0.2)  # the loop is free while the write waits
        assert time.monotonic() - t0 < 1.0 and not task.done()
    finally:
        other.execute("COMMIT")
        other.close()
    assert (await asyncio.wait_for(task, 10)).state is IdemState.NEW
    assert (await store.idem_begin("k", "fp")).state is IdemState.IN_FLIGHT
    await store.close()
