"""The payer's forced close (pure): what the escrow would accept next, from its channel state.

When the payee is gone or will not close, the payer gets its deposit back in two on-chain
steps (draft-tempo-session-00; ``Escrow.sol``)::

    requestClose(channelId)   payer only, on a live channel; starts the grace period
                              (a repeated call keeps the first timestamp)
    withdraw(channelId)       payer only, once chain time >= closeRequestedAt + grace;
                              refunds deposit - settled and finalises the channel

During the grace period the payee may still ``settle`` or ``close`` with the vouchers it holds,
and a ``topUp`` cancels the request.  ``plan_reclaim`` reads the state the escrow reports and
says which call is due, so a client never sends a transaction the escrow would revert.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from ...errors import ChannelAlreadyFinalized, ChannelCloseError, GracePeriodNotOver
from ._abi import normalize_address
from .channel import CLOSE_GRACE_PERIOD, ChannelState

Step = Literal["request_close", "wait", "withdraw"]


@dataclass(frozen=True, slots=True)
class ReclaimPlan:
    """The next forced-close step of a live channel.

    Attributes:
        step: ``request_close`` (no close requested yet), ``wait`` (grace period running) or
            ``withdraw`` (grace period over).
        close_requested_at: chain time of the request (0 before it).
        withdrawable_at: chain time from which ``withdraw`` is accepted (0 before the request).
        refund: ``deposit - settled`` now: what a withdraw returns unless the payee settles more.
    """

    step: Step
    close_requested_at: int
    withdrawable_at: int
    refund: int


def plan_reclaim(state: ChannelState, *, channel_id: str, payer: str, now: int,
                 grace: int = CLOSE_GRACE_PERIOD) -> ReclaimPlan:
    """Decide the payer's next forced-close step.

    Args:
        state: the escrow's ``getChannel`` answer.
        channel_id: for the error messages.
        payer: the account that would send the transaction.
        now: chain time (the latest block's timestamp), not the local clock.
        grace: the escrow's ``CLOSE_GRACE_PERIOD`` in seconds.
    Raises:
        ChannelAlreadyFinalized: closed or withdrawn already.
        ChannelCloseError: no such channel, or ``payer`` is not its payer.
    """
    if not state.exists:
        raise ChannelCloseError(f"channel {channel_id} does not exist on this escrow", channel_id=channel_id)
    if state.finalized:
        raise ChannelAlreadyFinalized(
            f"channel {channel_id} is already finalised: {state.settled} base units went to the payee, "
            "the rest of the deposit to the payer", channel_id=channel_id, settled=state.settled)
    if state.payer != normalize_address(payer):
        raise ChannelCloseError(f"channel {channel_id} belongs to payer {state.payer}, not {payer.lower()}",
                                channel_id=channel_id)
    refund = state.deposit - state.settled
    if state.close_requested_at == 0:
        return ReclaimPlan("request_close", 0, 0, refund)
    ends = state.close_requested_at + grace
    return ReclaimPlan("withdraw" if now >= ends else "wait", state.close_requested_at, ends, refund)


def require_withdrawable(plan: ReclaimPlan, *, channel_id: str, now: int) -> None:
    """Raise unless ``plan`` allows a ``withdraw`` now.

    Raises:
        ChannelCloseError: no close was requested (``requestClose`` first).
        GracePeriodNotOver: the grace period ends at ``ends_at`` (chain time).
    """
    if plan.step == "request_close":
        raise ChannelCloseError(f"channel {channel_id}: no close was requested; requestClose first",
                                channel_id=channel_id)
    if plan.step == "wait":
        raise GracePeriodNotOver(f"channel {channel_id}: the grace period ends at chain time "
                                 f"{plan.withdrawable_at} ({plan.withdrawable_at - now} s from now)",
                                 channel_id=channel_id, ends_at=plan.withdrawable_at)
