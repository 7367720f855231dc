"""The close watch: settle a channel as soon as its payer requests a forced close.

A payer may ``requestClose`` on the escrow at any time and, ``CLOSE_GRACE_PERIOD`` (15 min)
later, ``withdraw`` the deposit minus what the payee has settled on chain.  Whatever the server
accepted and served but has not settled by then is lost to the payee.  ``CloseWatcher`` runs one
asyncio task that every ``close_watch_seconds`` (15 s by default) lists the open channels of the
books with spent-but-unsettled money (``ChannelBook.unsettled``; nothing is read from the chain
when there are none; a channel already closing with no voucher left to settle is skipped: it
takes no new voucher) and reads each one's ``getChannel`` (one ``eth_call``, a few at a time):

* ``closeRequestedAt != 0``: the books mark the channel closing (``ChannelRecord.
  close_requested_at``: no new voucher or request is served on it, ``ChannelClosing``) and the
  settlement starts at once through ``Meter.schedule_settle`` (the highest accepted voucher not
  above ``spent``; single-flight across every worker and replica sharing the store).  A request
  still in flight settles again when it ends (``settle.settle_due``); a failed settlement is
  retried by the next tick, which sees the channel still unsettled;
* finalized (withdrawn, or closed by someone else): the books mark it closed; what was not
  settled can no longer be (logged);
* missing (the node answers an all-zero channel: a lagging or wrong node): logged, books kept;
* otherwise the books only take a higher on-chain ``settled`` (another replica's settlement).

Why state reads rather than ``eth_getLogs`` for ``CloseRequested``: a state read needs no cursor
kept consistent across replicas and restarts, is not subject to the block-range and result caps
many RPC providers put on ``eth_getLogs``, cannot miss an event across a reorg or a failed tick
(the next tick reads the state again), also shows finalization, and costs one call per channel
that has something to lose, which is the set the watch must protect anyway.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import math
from collections.abc import Awaitable, Callable
from dataclasses import replace

from ...errors import VerificationError
from ...tempo.session import ChannelState
from .book import ChannelRecord, Update
from .meter import Meter, safe_error
from .periodic import Periodic
from .settle import settle_voucher

log = logging.getLogger("mpp_claude.server.sessions")

READS_AT_ONCE = 16
"""``getChannel`` calls in flight at once during one tick."""


class Seen(enum.Enum):
    """What the escrow says about a channel the books hold open."""

    OPEN = "open"
    CLOSING = "closing"
    FINALIZED = "finalized"
    MISSING = "missing"


def seen_on_chain(state: ChannelState) -> Seen:
    """Classify the escrow's ``getChannel`` answer for an open channel of the books (pure).

    Args:
        state: the channel as the escrow reports it (all-zero when it does not exist).
    Returns:
        ``MISSING`` when the escrow has no such channel, ``FINALIZED`` when it is finalized,
        ``CLOSING`` when its payer requested a forced close, else ``OPEN``.
    """
    if not state.exists:
        return Seen.MISSING
    if state.finalized:
        return Seen.FINALIZED
    return Seen.CLOSING if state.close_requested_at else Seen.OPEN


def mark_closing(requested_at: int) -> Update:
    """A book update: the channel's payer requested a forced close at ``requested_at`` (pure)."""

    def apply(rec: ChannelRecord | None) -> ChannelRecord | None:
        if rec is None or rec.closed or rec.close_requested_at == requested_at:
            return None
        return replace(rec, close_requested_at=requested_at)

    return apply


def mark_finalized(rec: ChannelRecord | None) -> ChannelRecord | None:
    """A book update: the channel is finalized on chain; nothing more can be settled (pure)."""
    return None if rec is None or rec.closed else replace(rec, closed=True)


class CloseWatcher(Periodic):
    """Settles channels whose payer requested a forced close (see the module docstring).

    Args:
        meter: the session gate (books, store, payee, settlements).
        every: ``close_watch_seconds``; 0 turns the periodic watch off (``tick`` still works).
        read: the escrow's fresh state of a channel (``SessionGate`` reads ``getChannel``).
            Raises ``VerificationError`` when the chain cannot be reached.
    """

    def __init__(self, meter: Meter, every: float, read: Callable[[str], Awaitable[ChannelState]]) -> None:
        self.meter, self.every, self._read = meter, every, read
        self.interval = every
        self.name, self.what = "mpp-session-close-watch", "close watch"

    async def tick(self) -> list[str]:
        """One pass: read every unsettled channel's state, act on what it shows.

        Returns:
            The channels found closing (their settlements were started and awaited).
        Raises:
            Store errors (SQLite, Redis) from the books.
        """
        records = [rec for rec in await self.meter.book.unsettled(math.inf)
                   if not rec.close_requested_at or settle_voucher(rec) is not None]
        if not records:  # (a closing channel without a voucher left to settle takes no new one)
            return []
        limit = asyncio.Semaphore(READS_AT_ONCE)

        async def read(rec: ChannelRecord) -> ChannelState | None:
            async with limit:
                try:
                    return await self._read(rec.channel_id)
                except VerificationError as exc:
                    log.warning("close watch: channel %s could not be read (retried next tick): %s",
                                rec.channel_id, safe_error(exc))
                    return None

        states = await asyncio.gather(*(read(rec) for rec in records))
        closing: list[str] = []
        tasks: list[asyncio.Task[None]] = []
        for rec, state in zip(records, states, strict=True):
            if state is None:
                continue
            seen = seen_on_chain(state)
            if seen is Seen.MISSING:
                log.warning("close watch: the escrow reports no channel %s (node lagging or wrong escrow?)",
                            rec.channel_id)
                continue
            if seen is Seen.FINALIZED:
                await self._finalized(rec, state)
                continue
            if rec.account.settled < state.settled <= rec.account.spent:  # another replica settled
                await self.meter._settled(rec.channel_id, state.settled)
            if seen is Seen.CLOSING:
                await self._closing(rec, state)
                closing.append(rec.channel_id)
                tasks.append(self.meter.schedule_settle(rec.channel_id))
        if tasks:  # not cancelled with the watch: the gate's aclose awaits them
            await asyncio.wait(tasks)
        return closing

    async def _closing(self, rec: ChannelRecord, state: ChannelState) -> None:
        await self.meter.book.update(rec.channel_id, mark_closing(state.close_requested_at))
        if rec.close_requested_at != state.close_requested_at:
            acc = rec.account
            best = settle_voucher(rec)
            log.warning("channel %s: the payer requested a forced close at %d (chain time); settling "
                        "%d now (spent %d, settled %d, deposit %d; spent above the highest voucher not "
                        "above it cannot be settled); no new request is served on it",
                        rec.channel_id, state.close_requested_at, best[0] if best else 0, acc.spent,
                        max(acc.settled, state.settled), state.deposit)

    async def _finalized(self, rec: ChannelRecord, state: ChannelState) -> None:
        await self.meter.book.update(rec.channel_id, mark_finalized)
        lost = rec.account.spent - max(rec.account.settled, state.settled)
        log.warning("channel %s is finalized on chain; %d of its spent was never settled and no longer "
                    "can be", rec.channel_id, max(lost, 0))

    async def run_once(self) -> object:
        return await self.tick()
