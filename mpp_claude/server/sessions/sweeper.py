"""The settlement sweeper: settles idle channels by time, from the app's lifespan.

``Meter.finish`` settles a channel when a request ends and a settlement is due; a channel
that receives no more requests would otherwise keep its spent-but-unsettled money until it
is closed.  ``Sweeper`` runs one asyncio task that every ``interval`` seconds
(``min(settle_every_seconds, 5)``) asks the books for the open channels with unsettled spent
whose last settlement is at least ``settle_every_seconds`` old (``ChannelBook.unsettled``) and
starts the settlements of those that hold a voucher to settle with (``settle.settle_voucher``:
the highest accepted one not above ``spent``) through the same path as requests
(``Meter.schedule_settle``), which is single-flight across every worker and replica sharing
the store.  A failed tick or
settlement is logged (without the RPC URL) and retried by the next tick.  ``stop()`` cancels
the task and waits for it; with ``settle_on_shutdown`` the lifespan then settles every channel
with unsettled spent, whatever its age (``sweep(force=True)``).
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Callable

from .meter import Meter
from .periodic import Periodic
from .settle import settle_voucher

log = logging.getLogger("mpp_claude.server.sessions")

MAX_INTERVAL_S = 5.0


class Sweeper(Periodic):
    """Settles channels whose last settlement is ``every`` seconds old (see the module docstring).

    Args:
        meter: the session gate (books, store, payee).
        every: ``settle_every_seconds``; 0 turns the periodic sweep off (``sweep`` still works).
        clock: Unix seconds.
    """

    def __init__(self, meter: Meter, every: float, clock: Callable[[], float]) -> None:
        self.meter, self.every, self._clock = meter, every, clock
        self.interval = min(every, MAX_INTERVAL_S)
        self.name, self.what = "mpp-session-sweeper", "settlement sweep"

    async def sweep(self, *, force: bool = False) -> list[str]:
        """One pass: start the due settlements and wait for them.

        Args:
            force: settle every channel with unsettled spent, however recent its last settlement.
        Returns:
            The channel ids settled in this pass (or logged and left for the next pass).
        Raises:
            Store errors (SQLite, Redis) from listing the books.
        """
        before = math.inf if force else self._clock() - self.every
        due = [rec.channel_id for rec in await self.meter.book.unsettled(before)
               if settle_voucher(rec) is not None]
        tasks = [self.meter.schedule_settle(cid) for cid in due]
        if tasks:  # the settlements are not cancelled with the sweep; the gate's aclose awaits them
            await asyncio.wait(tasks)
        return due

    async def run_once(self) -> object:
        return await self.sweep()
