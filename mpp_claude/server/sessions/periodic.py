"""``Periodic``: the start/stop and retry loop shared by the server's background session jobs.

A subclass sets ``every`` (0: off), ``interval`` (seconds between runs), ``name`` and ``what``
(for the task and the log) and implements ``run_once``; a failing run is logged without
secrets and retried after the next interval (the store or the node may be down for a while).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from .meter import safe_error

log = logging.getLogger("mpp_claude.server.sessions")


class Periodic:
    """Runs ``run_once`` every ``interval`` seconds in the running loop, between ``start`` and ``stop``."""

    every: float = 0.0
    interval: float = 0.0
    name = "mpp-session-job"
    what = "session job"
    _task: asyncio.Task[None] | None = None

    async def run_once(self) -> object:
        """One run of the job."""
        raise NotImplementedError

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            try:
                await self.run_once()
            except Exception as exc:  # retried next tick
                log.warning("%s failed (retried in %.1f s): %s", self.what, self.interval, safe_error(exc))

    def start(self) -> None:
        """Start the periodic job in the running loop (no-op when ``every`` is 0 or it runs)."""
        if self.every > 0 and self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._loop(), name=self.name)

    async def stop(self) -> None:
        """Cancel the periodic job and wait until it has stopped."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
