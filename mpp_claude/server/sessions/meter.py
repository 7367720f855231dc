"""Metering a channel per request: hold the quote, charge the exact usage, schedule settlements.

``Meter`` is the half of ``gate.SessionGate`` that runs around serving a request:
``hold(quote)`` before the upstream is called (``insufficient-balance`` when the channel's free
balance is short; ``wait_and_hold`` waits for an out-of-band voucher instead, for a stream that
announced ``payment-need-voucher``), ``finish(cost)`` after it, which turns the hold into
``spent`` for the exact usage (at most the hold) and starts a settlement when one is due
(``settle.settle_due``).  Every change is one atomic ``ChannelBook.update``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import replace

from ...errors import ChainError, ChannelFinalized, ChannelNotFound, InsufficientBalance
from ...tempo.session.onchain import EscrowReverted
from ..stores.base import Store
from .book import ChannelBook, ChannelRecord
from .settings import SessionSettings
from .settle import Payee, settle_due, settle_voucher

log = logging.getLogger("mpp_claude.server.sessions")


class Meter:
    """Holds, charges and settlements on the channel books (see the module docstring)."""

    book: ChannelBook
    store: Store
    settings: SessionSettings
    _payee: Payee
    _clock: Callable[[], float]

    def __init__(self) -> None:
        self._changed: dict[str, asyncio.Event] = {}
        self._settling: dict[str, asyncio.Task[None]] = {}

    def _wake(self, channel_id: str) -> None:
        event = self._changed.pop(channel_id, None)
        if event is not None:
            event.set()

    async def hold(self, channel_id: str, request_id: str, amount: int) -> ChannelRecord:
        """Reserve ``amount`` of the channel's free balance for a request.

        Raises:
            InsufficientBalance: the free balance is short (``requiredCumulative`` in ``extra``).
            ChannelNotFound / ChannelFinalized: no such open channel in the books.
        """
        now = self._clock()

        def apply(rec: ChannelRecord | None) -> ChannelRecord | None:
            if rec is None:
                raise ChannelNotFound(f"channel {channel_id} is not open with this server",
                                      channelId=channel_id)
            if rec.closed:
                raise ChannelFinalized(f"channel {channel_id} is closed", channelId=channel_id)
            return self._held(rec, request_id, amount, now)

        record = await self.book.update(channel_id, apply)
        assert record is not None
        return record

    def _held(self, rec: ChannelRecord, request_id: str, amount: int, now: float) -> ChannelRecord:
        """``rec`` with ``amount`` held for ``request_id`` (stale holds dropped).

        Raises:
            InsufficientBalance: the free balance is short.
        """
        holds = {k: v for k, v in rec.holds.items() if now - v[1] < self.settings.hold_ttl}
        rec = replace(rec, holds=holds)
        if rec.free < amount:
            cid = rec.channel_id
            raise InsufficientBalance(
                f"this request may cost {amount}; the channel's free balance is {rec.free}",
                channelId=cid, requiredCumulative=str(rec.account.spent + rec.held + amount),
                acceptedCumulative=str(rec.account.accepted_cumulative), spent=str(rec.account.spent),
                requiredTopUp=str(amount - rec.free), deposit=str(rec.account.deposit))
        return replace(rec, holds={**holds, request_id: (amount, now)})

    async def wait_and_hold(self, channel_id: str, request_id: str, amount: int, timeout: float
                            ) -> ChannelRecord | None:
        """``hold`` once a voucher makes room, waiting at most ``timeout`` seconds (``None``: gave up)."""
        deadline = time.monotonic() + timeout
        while True:
            event = self._changed.setdefault(channel_id, asyncio.Event())
            try:
                return await self.hold(channel_id, request_id, amount)
            except InsufficientBalance:
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
            try:  # woken by a voucher accepted in this process; polls for other workers
                await asyncio.wait_for(event.wait(), min(left, 0.1))
            except asyncio.TimeoutError:
                pass

    async def finish(self, channel_id: str, request_id: str, cost: int) -> ChannelRecord:
        """End a request: drop its hold, charge ``cost`` (at most the hold), maybe schedule a settlement."""

        def apply(rec: ChannelRecord | None) -> ChannelRecord | None:
            assert rec is not None
            holds = dict(rec.holds)
            held = holds.pop(request_id, (0, 0.0))[0]
            charged = max(0, min(cost, held + rec.free))
            return replace(rec, holds=holds, account=replace(rec.account, spent=rec.account.spent + charged))

        record = await self.book.update(channel_id, apply)
        assert record is not None
        if settle_due(record, self.settings, self._clock()) and channel_id not in self._settling:
            task = asyncio.get_running_loop().create_task(self._settle(channel_id))
            self._settling[channel_id] = task
            task.add_done_callback(lambda _t: self._settling.pop(channel_id, None))
        return record

    # --- settlement ----------------------------------------------------------------------------

    async def _settle(self, channel_id: str) -> None:
        rec = await self.book.get(channel_id)
        chosen = settle_voucher(rec) if rec is not None else None
        if chosen is None:
            return
        amount, signature = chosen
        try:
            tx_hash = await self._payee.settle(channel_id, amount, signature)
        except (ChainError, EscrowReverted) as exc:
            log.warning("settling channel %s for %d failed: %s", channel_id, amount, exc)
            return
        now = self._clock()
        await self.store.record("session_tx", {"kind": "settle", "tx_hash": tx_hash, "channel_id": channel_id,
                                               "amount": str(amount), "at": int(now)})

        def apply(r: ChannelRecord | None) -> ChannelRecord | None:
            assert r is not None
            if amount <= r.account.settled:
                return None
            return replace(r, last_settle_at=now).with_account(replace(r.account, settled=amount))

        await self.book.update(channel_id, apply)

    async def aclose(self) -> None:
        """Wait for settlements in progress."""
        for task in list(self._settling.values()):
            try:
                await task
            except Exception:  # logged by _settle
                pass
