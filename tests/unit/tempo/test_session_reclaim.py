"""The payer's forced-close decision from the escrow's channel state (pure)."""

from __future__ import annotations

import pytest

from mpp_claude.errors import ChannelAlreadyFinalized, ChannelCloseError, GracePeriodNotOver
from mpp_claude.tempo.session import CLOSE_GRACE_PERIOD, ChannelState
from mpp_claude.tempo.session.reclaim import plan_reclaim, require_withdrawable

PAYER = "0x" + "aa" * 20
CID = "0x" + "01" * 32
ZERO = "0x" + "00" * 20


def state(**kw: object) -> ChannelState:
    base: dict[str, object] = dict(finalized=False, close_requested_at=0, payer=PAYER, payee="0x" + "bb" * 20,
                                   token="0x" + "cc" * 20, authorized_signer=ZERO, deposit=1000, settled=300)
    base.update(kw)
    return ChannelState(**base)  # type: ignore[arg-type]


def test_steps_follow_chain_time() -> None:
    live = plan_reclaim(state(), channel_id=CID, payer=PAYER.upper().replace("0X", "0x"), now=5000)
    assert (live.step, live.close_requested_at, live.withdrawable_at) == ("request_close", 0, 0)
    assert live.refund == 700
    with pytest.raises(ChannelCloseError, match="requestClose first"):
        require_withdrawable(live, channel_id=CID, now=5000)
    requested = state(close_requested_at=4000)
    ends = 4000 + CLOSE_GRACE_PERIOD
    wait = plan_reclaim(requested, channel_id=CID, payer=PAYER, now=ends - 1)
    assert (wait.step, wait.withdrawable_at) == ("wait", ends)
    with pytest.raises(GracePeriodNotOver) as info:
        require_withdrawable(wait, channel_id=CID, now=ends - 1)
    assert info.value.ends_at == ends and info.value.channel_id == CID
    due = plan_reclaim(requested, channel_id=CID, payer=PAYER, now=ends)
    assert due.step == "withdraw"
    require_withdrawable(due, channel_id=CID, now=ends)
    assert plan_reclaim(requested, channel_id=CID, payer=PAYER, now=4010, grace=10).step == "withdraw"


def test_refusals_before_anything_is_sent() -> None:
    with pytest.raises(ChannelAlreadyFinalized):
        plan_reclaim(state(finalized=True), channel_id=CID, payer=PAYER, now=0)
    with pytest.raises(ChannelCloseError, match="does not exist"):
        plan_reclaim(state(payer=ZERO), channel_id=CID, payer=PAYER, now=0)
    with pytest.raises(ChannelCloseError, match="belongs to payer"):
        plan_reclaim(state(), channel_id=CID, payer="0x" + "dd" * 20, now=0)
