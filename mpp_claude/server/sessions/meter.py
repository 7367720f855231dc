"""Metering a channel per request: hold the quote, charge the exact usage, schedule settlements.

``Meter`` is the half of ``gate.SessionGate`` that runs around serving a request:
``hold(quote)`` before the upstream is called (``insufficient-balance`` when the channel's free
balance is short; ``wait_and_hold`` waits for an out-of-band voucher instead, for a stream that
announced ``payment-need-voucher``), ``finish(cost)`` after it, which turns the hold into
``spent`` for the exact usage (at most the hold) and starts a settlement when one is due
(``settle.settle_due``; the ``sweeper`` also starts them for idle channels).  Every change is
one atomic ``ChannelBook.update``; a settlement is single-flight across every worker and
replica sharing the store (a lease in the store's idempotency entries, see ``_settle``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Coroutine
from dataclasses import replace
from typing import Any

import anyio

from ...errors import (
    ChainError,
    ChannelClosing,
    ChannelFinalized,
    ChannelNotFound,
    InsufficientBalance,
    ReceiptTimeout,
    RpcError,
    VerificationError,
)
from ...tempo.session import ChannelState
from ...tempo.session.onchain import EscrowReverted
from ..stores.base import IdemState, Store, StoredResponse
from .book import ChannelBook, ChannelRecord
from .settings import SessionSettings
from .settle import Payee, settle_due, settle_voucher

log = logging.getLogger("mpp_claude.server.sessions")

SETTLE_LEASE_S = 120.0
"""How long a worker's claim on one settlement lasts (longer than sending it and its receipt)."""
SETTLE_DONE_TTL_S = 24 * 3600.0
"""How long a finished settlement is remembered in the store (its books say it long before)."""


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
        self._reverted: dict[str, int] = {}  # channel -> amount whose settlement reverted (not retried)
        self._after: set[asyncio.Task[object]] = set()

    def after_response(self, work: Coroutine[Any, Any, object]) -> None:
        """Run ``work`` once the response has gone out (bookkeeping nobody waits for, such as
        storing an answer for ``Idempotency-Key`` replays); ``aclose`` waits for it."""
        task = asyncio.get_running_loop().create_task(work)
        self._after.add(task)
        task.add_done_callback(self._after_done)

    async def drain_after(self) -> bool:
        """Wait for the after-response work of this process; ``False`` when there was none."""
        if not self._after:
            return False
        await asyncio.wait(list(self._after))
        return True

    def _after_done(self, task: asyncio.Task[object]) -> None:
        self._after.discard(task)
        exc = None if task.cancelled() else task.exception()
        if exc is not None:
            log.error("bookkeeping after a session-paid response failed: %s", safe_error(exc))

    def _wake(self, channel_id: str) -> None:
        event = self._changed.pop(channel_id, None)
        if event is not None:
            event.set()

    async def hold(self, channel_id: str, request_id: str, amount: int) -> ChannelRecord:
        """Reserve ``amount`` of the channel's free balance for a request.

        Raises:
            InsufficientBalance: the free balance is short (``requiredCumulative`` in ``extra``).
            ChannelNotFound / ChannelFinalized: no such open channel in the books.
            ChannelClosing: its payer requested a forced close (``closewatch``).
        """
        now = self._clock()

        def apply(rec: ChannelRecord | None) -> ChannelRecord | None:
            if rec is None:
                raise ChannelNotFound(f"channel {channel_id} is not open with this server",
                                      channelId=channel_id)
            if rec.closed:
                raise ChannelFinalized(f"channel {channel_id} is closed", channelId=channel_id)
            if rec.close_requested_at:
                raise ChannelClosing(f"channel {channel_id} has a forced close pending", channelId=channel_id)
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
        if settle_due(record, self.settings, self._clock()):
            self.schedule_settle(channel_id)
        return record

    # --- settlement ----------------------------------------------------------------------------

    def schedule_settle(self, channel_id: str) -> asyncio.Task[None]:
        """Start settling ``channel_id`` in the background (the running settlement, if one is)."""
        task = self._settling.get(channel_id)
        if task is None:
            task = asyncio.get_running_loop().create_task(self._settle(channel_id))
            self._settling[channel_id] = task
            task.add_done_callback(lambda _t: self._settling.pop(channel_id, None))
        return task

    async def _state(self, channel_id: str, *, fresh: bool = False) -> ChannelState:
        raise NotImplementedError  # SessionGate reads the escrow

    async def _settle(self, channel_id: str) -> None:
        """Settle ``channel_id`` with ``settle_voucher``, once across every worker and replica.

        The lease is the store's idempotency entry ``session-settle:<channel>:<amount>``: only the
        worker that reserves it (``NEW``) broadcasts; it completes the entry with the transaction
        hash, so a worker that read the books before they said ``settled`` finds ``COMPLETED`` and
        only updates its books.  A failed transaction releases the lease (retried by the next
        sweep); a reverted one is reconciled with the escrow's state and, if that does not explain
        it, not tried again for the same amount by this process (each attempt would cost a fee).
        """
        rec = await self.book.get(channel_id)
        chosen = settle_voucher(rec) if rec is not None and not rec.closed else None
        if chosen is None or self._reverted.get(channel_id) == chosen[0]:
            return
        amount, signature = chosen
        key = f"session-settle:{channel_id}:{amount}"
        lease = await self.store.idem_begin(key, "settle", ttl_s=SETTLE_DONE_TTL_S, lease_s=SETTLE_LEASE_S)
        if lease.state is IdemState.COMPLETED:  # settled by another worker: catch the books up
            await self._settled(channel_id, amount)
            return
        if lease.state is not IdemState.NEW:
            return
        try:
            tx_hash = await self._payee.settle(channel_id, amount, signature)
        except (ChainError, EscrowReverted) as exc:
            with anyio.CancelScope(shield=True):
                await self.store.idem_abort(key)
            if isinstance(exc, EscrowReverted):
                log.warning("settling channel %s for %d reverted (not retried for this amount): %s",
                            channel_id, amount, safe_error(exc))
                self._reverted[channel_id] = amount
                await self._reconcile(channel_id)
            else:
                log.warning("settling channel %s for %d failed (retried by the next sweep): %s", channel_id,
                            amount, safe_error(exc))
            return
        except BaseException:
            with anyio.CancelScope(shield=True):
                await self.store.idem_abort(key)
            raise
        with anyio.CancelScope(shield=True):
            await self.store.idem_complete(key, StoredResponse(200, (("tx-hash", tx_hash),)))
            await self.store.record("session_tx", {"kind": "settle", "tx_hash": tx_hash,
                                                   "channel_id": channel_id, "amount": str(amount),
                                                   "at": int(self._clock())})
            await self._settled(channel_id, amount)

    async def _settled(self, channel_id: str, amount: int) -> None:
        """Books: ``amount`` is settled on chain (no-op when they already say so)."""
        now = self._clock()

        def apply(r: ChannelRecord | None) -> ChannelRecord | None:
            if r is None or amount <= r.account.settled:
                return None
            return replace(r, last_settle_at=now).with_account(replace(r.account, settled=amount))

        await self.book.update(channel_id, apply)

    async def _reconcile(self, channel_id: str) -> None:
        """After a reverted settlement: take the escrow's ``settled``; a finalized channel is closed."""
        try:
            state = await self._state(channel_id, fresh=True)
        except VerificationError:
            return
        if not state.exists or state.finalized:
            def close(r: ChannelRecord | None) -> ChannelRecord | None:
                return None if r is None or r.closed else replace(r, closed=True)

            await self.book.update(channel_id, close)
            log.warning("channel %s is finalized on chain; its unsettled spent can no longer be settled",
                        channel_id)
        elif state.settled:
            await self._settled(channel_id, state.settled)

    async def aclose(self) -> None:
        """Wait for settlements and after-response work in progress."""
        for task in [*self._settling.values(), *self._after]:
            try:
                await task
            except Exception:  # logged by _settle
                pass


def safe_error(exc: BaseException) -> str:
    """A log line for a failure, without the RPC URL (which may carry an API key) of chain errors."""
    if isinstance(exc, RpcError):
        return f"RpcError {exc.code}: {exc.rpc_message}"
    if isinstance(exc, (EscrowReverted, ReceiptTimeout)) or not isinstance(exc, ChainError):
        return f"{type(exc).__name__}: {exc}"
    return type(exc).__name__
