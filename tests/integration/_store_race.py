"""Child-process side of the store races in test_stores_shared.py.

Kept apart from the test module so a child imports only the stores, not pytest;
the forkserver preloads the stores (and openai, which errors.py imports) once and forks
every racer from that warm process.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

from mpp_claude.server.stores import open_store

KEYS = [f"tx-{i}" for i in range(12)]
CLAIMERS_PER_KEY = 8  # concurrent tasks per key inside each process


def race(url: str, prefix: str, barrier: Any, out: Any) -> None:
    """Open the store, wait for every racer, then claim every key many times at once.

    Puts ``(keys won, idem_begin states)`` on ``out``.
    """
    async def main() -> tuple[list[str], list[str]]:
        store = open_store(url, redis_prefix=prefix)
        try:
            await store.claim("warm-up-" + uuid.uuid4().hex, 60)  # connect before the race
            barrier.wait()
            claims = [(key, store.claim(key, 60)) for key in KEYS for _ in range(CLAIMERS_PER_KEY)]
            results = await asyncio.gather(*(c for _, c in claims))
            won = [key for (key, _), ok in zip(claims, results, strict=True) if ok]
            idem = await asyncio.gather(*(store.idem_begin("idem-race", "fp")
                                          for _ in range(CLAIMERS_PER_KEY)))
            return won, [r.state.value for r in idem]
        finally:
            await store.close()

    out.put(asyncio.run(main()))


DRAW_LIMIT = 50
DRAWS_PER_PROCESS = 40  # 4 processes x 40 draws of 1 against a limit of 50


def draw_race(url: str, prefix: str, barrier: Any, out: Any) -> None:
    """Draw 1 from one shared budget many times at once; puts the number of granted draws."""
    async def main() -> int:
        store = open_store(url, redis_prefix=prefix)
        try:
            await store.claim("warm-up-" + uuid.uuid4().hex, 60)
            barrier.wait()
            results = await asyncio.gather(*(store.draw("budget", 1, DRAW_LIMIT, 600)
                                             for _ in range(DRAWS_PER_PROCESS)))
            return sum(r is not None for r in results)
        finally:
            await store.close()

    out.put(asyncio.run(main()))
