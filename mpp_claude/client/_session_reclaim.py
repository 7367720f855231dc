"""Forced close for the payer: ``requestClose``, the escrow's grace period, ``withdraw``.

For a channel whose server is gone or will not close it, the payer reclaims its deposit minus
what the payee already settled, in two transactions some time apart (``tempo.session.reclaim``
explains the rules).  ``Reclaimer`` (sync) and ``AsyncReclaimer`` do it for the channels in the
client's channel store:

* ``request_close(id)``: stop paying from the channel (store status ``closing``, written before
  anything is sent), then send ``requestClose``; records the chain time of the request and the
  time from which ``withdraw`` is accepted.  A close requested before (by this or another
  process) is only recorded, no transaction.
* ``withdraw(id)``: once the grace period is over, send ``withdraw``; records ``withdrawn`` and
  the refund, and gives back to the ledger and the budget what the vouchers authorised beyond
  what the payee settled (as a cooperative close does, ``record_final``).
* ``reclaim(id=None)``: whichever step is due, for one channel or every ``closing`` one (the
  store remembers them across restarts) and every ``evicted`` one (the server answered 410: it
  closed the channel, which is then only recorded, or lost it, and its deposit would stay
  locked); a grace period still running is reported, not raised.

Before any transaction the channel's on-chain state and the chain's time are read and the call
is simulated, so nothing is sent that the escrow would revert; ``GracePeriodNotOver`` (with the
chain time it ends) and ``ChannelAlreadyFinalized`` say why nothing was sent.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from typing import Any

from ..errors import ChannelAlreadyFinalized, ChannelCloseError
from ..tempo.session.channel import ChannelState
from ..tempo.session.onchain import (
    Sent,
    chain_time,
    chain_time_async,
    read_channel,
    read_channel_async,
    read_grace_period,
    read_grace_period_async,
    send_calls,
    send_calls_async,
    simulate,
    simulate_async,
)
from ..tempo.session.reclaim import ReclaimPlan, plan_reclaim, require_withdrawable
from ..tempo.session.transactions import GAS_REQUEST_CLOSE, GAS_WITHDRAW, request_close_call, withdraw_call
from ._session_core import SessionCore
from .channels import StoredChannel


@dataclass(frozen=True, slots=True)
class ReclaimStatus:
    """Where a channel's forced close stands (amounts in base units, times in chain seconds).

    Attributes:
        channel_id: the channel.
        status: the store's status after this call: ``closing`` (grace period running or over,
            ``withdraw`` due at ``withdrawable_at``), ``withdrawn`` (deposit reclaimed) or
            ``closed`` (the payee finalised it meanwhile).
        deposit, settled: on chain (``settled`` went to the payee).
        close_requested_at, withdrawable_at: chain times (0 before the request).
        refunded: what the escrow returned at finalisation (``None`` while not finalised).
        tx_hash: the transaction this call sent (``None``: nothing sent).
        chain_now: the chain time the decision was made at.
    """

    channel_id: str
    status: str
    deposit: int
    settled: int
    close_requested_at: int
    withdrawable_at: int
    refunded: int | None
    tx_hash: str | None
    chain_now: int

    @property
    def withdrawable(self) -> bool:
        """Whether ``withdraw`` is due (grace period over, not finalised)."""
        return self.status == "closing" and 0 < self.withdrawable_at <= self.chain_now


# --- bookkeeping shared by both shells (store, ledger, budget; no network) -------------------------


def current(core: SessionCore, channel_id: str) -> StoredChannel:
    """The channel as the store says (status, close times) with the highest signed amount any
    process recorded.

    Raises:
        ChannelCloseError: not in this wallet's channel store.
    """
    cid = channel_id.lower()
    with core.lock:
        row = core.store.get(cid)
        if row is None or row.wallet != core.wallet_address:
            raise ChannelCloseError(f"channel {cid} is not in this wallet's channel store", channel_id=cid)
        known = core.get(cid, fresh=True) or row
        if known.channel.signed_cumulative > row.channel.signed_cumulative:
            row = replace(row, channel=known.channel, signature=known.signature)
        return row


def mark_closing(core: SessionCore, stored: StoredChannel, *, requested_at: int = 0,
                 withdrawable_at: int = 0) -> StoredChannel:
    """Record ``closing`` (nothing pays from it any more) with the chain times when known."""
    new = replace(stored, status="closing", close_requested_at=requested_at or stored.close_requested_at,
                  withdrawable_at=withdrawable_at or stored.withdrawable_at)
    core.save(new)
    return new


def record_final(core: SessionCore, stored: StoredChannel, *, status: str, settled: int,
                 refunded: int | None) -> StoredChannel:
    """The escrow finalised the channel: ``settled`` went to the payee, ``refunded`` back.

    The first time, gives back to the ledger (this channel's rows, newest first) and to this
    client's lifetime budget what the vouchers authorised beyond ``settled``: it can never be
    claimed any more.  The same rule after a cooperative close and after a withdraw.
    """
    with core.lock:
        if stored.status in ("withdrawn", "closed") and stored.refunded is not None:
            return stored  # recorded before (by another call or process): nothing to give back twice
        cid = stored.channel_id
        over = stored.channel.signed_cumulative - settled
        if over > 0:
            back = core.engine.ledger.refund(core.wallet_address, cid, over, now=time.time(),
                                             error=f"channel finalised with {settled} settled to the payee")
            here = min(back, core.take_reserved(cid))
            if here:
                core.engine.lifetime.release(here)
        new = replace(stored, status=status, refunded=refunded)
        core.save(new)
        return new


def closed_as_said(core: SessionCore, stored: StoredChannel, state: ChannelState | None) -> None:
    """After the server answered a cooperative close: record it from the chain's ``state``
    (``record_final`` when finalised; only the status ``closed`` when the chain could not be read
    or does not show the close yet, so nothing is given back on the server's word alone)."""
    if state is not None and state.finalized:
        record_final(core, stored, status="closed", settled=state.settled,
                     refunded=state.deposit - state.settled)
    else:
        core.evict(stored.channel_id, "closed")


def _status(stored: StoredChannel, state: ChannelState, now: int, tx_hash: str | None) -> ReclaimStatus:
    return ReclaimStatus(stored.channel_id, stored.status, state.deposit, state.settled,
                         stored.close_requested_at, stored.withdrawable_at, stored.refunded, tx_hash, now)


def _finalised(core: SessionCore, stored: StoredChannel, state: ChannelState, now: int,
               status: str = "closed") -> ReclaimStatus:
    final = record_final(core, stored, status=status, settled=state.settled,
                         refunded=state.deposit - state.settled)
    return _status(final, state, now, None)


def _event(sent: Sent, name: str) -> dict[str, Any]:
    for event in sent.events:
        if event.name == name:
            return dict(event.values)
    return {}


class _Base:
    def __init__(self, core: SessionCore, rpc: Any) -> None:
        self.core = core
        self.rpc = rpc
        self._grace: dict[str, int] = {}

    @property
    def _signer(self) -> Any:
        return self.core.engine.wallet.signer

    def _plan(self, stored: StoredChannel, state: ChannelState, now: int) -> ReclaimPlan:
        return plan_reclaim(state, channel_id=stored.channel_id, payer=self.core.wallet_address, now=now,
                            grace=self._grace[stored.channel.escrow])

    def _plan_recorded(self, stored: StoredChannel, state: ChannelState, now: int) -> ReclaimPlan:
        """``_plan``; a channel found finalised is recorded in the store before the error goes up.

        Raises:
            ChannelAlreadyFinalized: closed or withdrawn already.
        """
        try:
            return self._plan(stored, state, now)
        except ChannelAlreadyFinalized:
            _finalised(self.core, stored, state, now)
            raise

    def _closing(self, stored: StoredChannel, plan: ReclaimPlan, state: ChannelState, now: int,
                 tx_hash: str | None) -> ReclaimStatus:
        new = mark_closing(self.core, stored, requested_at=plan.close_requested_at,
                           withdrawable_at=plan.withdrawable_at)
        return _status(new, state, now, tx_hash)

    def _due(self, channel_id: str | None) -> list[str]:
        if channel_id is not None:
            return [channel_id]
        mine = self.core.store.channels(self.core.wallet_address)
        return [s.channel_id for s in mine if s.status in ("closing", "evicted")]

    def _after_request(self, stored: StoredChannel, sent: Sent, state: ChannelState) -> ReclaimStatus:
        grace = self._grace[stored.channel.escrow]
        ends = int(_event(sent, "CloseRequested").get("closeGraceEnd", 0))
        # no event: a close was requested meanwhile by another process (the escrow keeps the first
        # time); times unknown here (0), the next reclaim reads them from the chain
        requested = ends - grace if ends > grace else 0
        plan = ReclaimPlan("wait", requested, ends if requested else 0, state.deposit - state.settled)
        return self._closing(stored, plan, state, requested, sent.tx_hash)

    def _after_withdraw(self, stored: StoredChannel, sent: Sent, state: ChannelState, now: int
                        ) -> ReclaimStatus:
        values = _event(sent, "ChannelClosed")
        settled = int(values.get("settledToPayee", state.settled))
        refunded = int(values.get("refundedToPayer", state.deposit - settled))
        final = record_final(self.core, stored, status="withdrawn", settled=settled, refunded=refunded)
        return replace(_status(final, state, now, sent.tx_hash), settled=settled)


class Reclaimer(_Base):
    """Forced close over a sync ``RpcClient`` (see the module docstring).

    Args:
        core: the client's session core (channel store, ledger, budgets, wallet, fee token).
        rpc: the chain to send on.
    """

    def _read(self, stored: StoredChannel) -> tuple[ChannelState, int]:
        c = stored.channel
        if c.escrow not in self._grace:
            self._grace[c.escrow] = read_grace_period(self.rpc, c.escrow)
        return read_channel(self.rpc, c.escrow, c.channel_id), chain_time(self.rpc)

    def _send(self, stored: StoredChannel, call: Any, gas: int) -> Sent:
        simulate(self.rpc, self.core.wallet_address, call)
        return send_calls(self.rpc, self._signer, (call,), escrow=stored.channel.escrow, gas_limit=gas,
                          fee_token=self.core.policy.fee_token)

    def request_close(self, channel_id: str) -> ReclaimStatus:
        """Stop paying from the channel and send ``requestClose`` (nothing when already requested).

        Raises:
            ChannelAlreadyFinalized: closed or withdrawn already (recorded in the store).
            ChannelCloseError: not this wallet's channel, or unknown to the escrow.
            ChainError: the node failed (``EscrowReverted`` if the call would revert after all).
        """
        stored = current(self.core, channel_id)
        state, now = self._read(stored)
        plan = self._plan_recorded(stored, state, now)
        if plan.step != "request_close":
            return self._closing(stored, plan, state, now, None)
        stored = mark_closing(self.core, stored)  # no voucher is signed on it from here on
        call = request_close_call(stored.channel.escrow, stored.channel_id)
        try:
            simulate(self.rpc, self.core.wallet_address, call)
        except BaseException:
            self.core.save(replace(stored, status="open"))  # provably not sent
            raise
        sent = send_calls(self.rpc, self._signer, (call,), escrow=stored.channel.escrow,
                          gas_limit=GAS_REQUEST_CLOSE, fee_token=self.core.policy.fee_token)
        return self._after_request(stored, sent, state)

    def withdraw(self, channel_id: str) -> ReclaimStatus:
        """Send ``withdraw`` once the grace period is over; the refund returns to the wallet.

        Raises:
            GracePeriodNotOver: too early (``ends_at``: the chain time it becomes possible).
            ChannelAlreadyFinalized: closed or withdrawn already (recorded in the store).
            ChannelCloseError: no close requested, not this wallet's channel, unknown channel.
            ChainError: the node failed.
        """
        stored = current(self.core, channel_id)
        state, now = self._read(stored)
        plan = self._plan_recorded(stored, state, now)
        if plan.step != "request_close":
            stored = mark_closing(self.core, stored, requested_at=plan.close_requested_at,
                                  withdrawable_at=plan.withdrawable_at)
        require_withdrawable(plan, channel_id=stored.channel_id, now=now)
        sent = self._send(stored, withdraw_call(stored.channel.escrow, stored.channel_id), GAS_WITHDRAW)
        return self._after_withdraw(stored, sent, state, now)

    def reclaim(self, channel_id: str | None = None) -> list[ReclaimStatus]:
        """Do whichever step is due: ``requestClose`` for a live channel, ``withdraw`` once its grace
        period is over; a grace period still running is reported (``withdrawable_at``).

        Args:
            channel_id: one channel (an error for a finalised one), or ``None``: every channel of
                this wallet the store has as ``closing`` or ``evicted`` (finalised ones are recorded
                and reported).
        Raises:
            ChannelAlreadyFinalized, ChannelCloseError: for an explicit ``channel_id`` only.
            ChainError: the node failed.
        """
        out = []
        for cid in self._due(channel_id):
            stored = current(self.core, cid)
            state, now = self._read(stored)
            try:
                plan = self._plan(stored, state, now)
            except ChannelAlreadyFinalized:
                done = _finalised(self.core, stored, state, now)
                if channel_id is not None:
                    raise
                out.append(done)
                continue
            if plan.step == "request_close":
                out.append(self.request_close(cid))
            elif plan.step == "wait":
                out.append(self._closing(stored, plan, state, now, None))
            else:
                out.append(self.withdraw(cid))
        return out


class AsyncReclaimer(_Base):
    """Async twin of :class:`Reclaimer` over an ``AsyncRpcClient``."""

    async def _read(self, stored: StoredChannel) -> tuple[ChannelState, int]:
        c = stored.channel
        if c.escrow not in self._grace:
            self._grace[c.escrow] = await read_grace_period_async(self.rpc, c.escrow)
        return await read_channel_async(self.rpc, c.escrow, c.channel_id), await chain_time_async(self.rpc)

    async def request_close(self, channel_id: str) -> ReclaimStatus:
        """See :meth:`Reclaimer.request_close`."""
        stored = current(self.core, channel_id)
        state, now = await self._read(stored)
        plan = self._plan_recorded(stored, state, now)
        if plan.step != "request_close":
            return self._closing(stored, plan, state, now, None)
        stored = mark_closing(self.core, stored)
        call = request_close_call(stored.channel.escrow, stored.channel_id)
        try:
            await simulate_async(self.rpc, self.core.wallet_address, call)
        except BaseException:
            self.core.save(replace(stored, status="open"))
            raise
        sent = await send_calls_async(self.rpc, self._signer, (call,), escrow=stored.channel.escrow,
                                      gas_limit=GAS_REQUEST_CLOSE, fee_token=self.core.policy.fee_token)
        return self._after_request(stored, sent, state)

    async def withdraw(self, channel_id: str) -> ReclaimStatus:
        """See :meth:`Reclaimer.withdraw`."""
        stored = current(self.core, channel_id)
        state, now = await self._read(stored)
        plan = self._plan_recorded(stored, state, now)
        if plan.step != "request_close":
            stored = mark_closing(self.core, stored, requested_at=plan.close_requested_at,
                                  withdrawable_at=plan.withdrawable_at)
        require_withdrawable(plan, channel_id=stored.channel_id, now=now)
        call = withdraw_call(stored.channel.escrow, stored.channel_id)
        await simulate_async(self.rpc, self.core.wallet_address, call)
        sent = await send_calls_async(self.rpc, self._signer, (call,), escrow=stored.channel.escrow,
                                      gas_limit=GAS_WITHDRAW, fee_token=self.core.policy.fee_token)
        return self._after_withdraw(stored, sent, state, now)

    async def reclaim(self, channel_id: str | None = None) -> list[ReclaimStatus]:
        """See :meth:`Reclaimer.reclaim`."""
        out = []
        for cid in self._due(channel_id):
            stored = current(self.core, cid)
            state, now = await self._read(stored)
            try:
                plan = self._plan(stored, state, now)
            except ChannelAlreadyFinalized:
                done = _finalised(self.core, stored, state, now)
                if channel_id is not None:
                    raise
                out.append(done)
                continue
            if plan.step == "request_close":
                out.append(await self.request_close(cid))
            elif plan.step == "wait":
                out.append(self._closing(stored, plan, state, now, None))
            else:
                out.append(await self.withdraw(cid))
        return out


__all__ = ["AsyncReclaimer", "ReclaimStatus", "Reclaimer", "closed_as_said", "current", "mark_closing",
           "record_final"]
