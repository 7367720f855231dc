"""The payer's planning: vouchers within the deposit, top-ups within the cap."""

from __future__ import annotations

from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mpp_claude.errors import BudgetExceeded
from mpp_claude.tempo.session.payer import (
    PayerChannel,
    PaymentStep,
    after_top_up,
    after_voucher,
    plan_payment,
)

CH = PayerChannel(channel_id="0x" + "5D" * 32, escrow="0x" + "E4" * 20, chain_id=4217, payee="0x" + "b2" * 20,
                  token="0x20c0000000000000000000000000000000000000", deposit=1_000, signed_cumulative=200)


def test_identity_is_normalised_and_checked() -> None:
    """Hex is lower-cased; a signed amount above the deposit is refused."""
    assert CH.channel_id == "0x" + "5d" * 32 and CH.escrow == "0x" + "e4" * 20 and CH.remaining == 800
    with pytest.raises(ValueError):
        replace(CH, signed_cumulative=1_001)


def test_within_deposit_signs_the_requirement_plus_headroom() -> None:
    """No top-up while the deposit covers it; headroom is clipped to the deposit."""
    assert plan_payment(CH, 300, max_deposit=5_000) == PaymentStep(0, 300)
    assert plan_payment(CH, 300, max_deposit=5_000, headroom=100) == PaymentStep(0, 400)
    assert plan_payment(CH, 950, max_deposit=5_000, headroom=100) == PaymentStep(0, 1_000)


def test_never_goes_below_what_was_signed() -> None:
    """A server asking for less than already signed gets the signed amount again."""
    assert plan_payment(CH, 50, max_deposit=5_000) == PaymentStep(0, 200)


def test_above_deposit_tops_up_first() -> None:
    """Beyond the deposit: top up at least the shortfall (or min_top_up), capped by max_deposit."""
    assert plan_payment(CH, 1_200, max_deposit=5_000) == PaymentStep(200, 1_200)
    assert plan_payment(CH, 1_200, max_deposit=5_000, min_top_up=1_000) == PaymentStep(1_000, 1_200)
    assert plan_payment(CH, 1_200, max_deposit=1_500, min_top_up=1_000) == PaymentStep(500, 1_200)
    assert plan_payment(CH, 1_200, max_deposit=1_250, headroom=500) == PaymentStep(250, 1_250)


def test_cap_is_never_exceeded() -> None:
    """A requirement above max_deposit raises BudgetExceeded naming the limit."""
    with pytest.raises(BudgetExceeded) as info:
        plan_payment(CH, 2_001, max_deposit=2_000)
    assert info.value.limit == "max_deposit" and info.value.requested == 2_001


def test_state_transitions() -> None:
    """Top-ups raise the deposit; vouchers only move up and stay within the deposit."""
    ch = after_voucher(after_top_up(CH, 500), 1_500)
    assert (ch.deposit, ch.signed_cumulative) == (1_500, 1_500)
    for bad in (100, 1_501):
        with pytest.raises(ValueError):
            after_voucher(ch if bad > 1_500 else CH, bad)
    with pytest.raises(ValueError):
        after_top_up(CH, 0)
    with pytest.raises(ValueError):
        plan_payment(CH, -1, max_deposit=10)


@settings(max_examples=200, deadline=None)
@given(deposit=st.integers(1, 10**6), signed=st.integers(0, 10**6), required=st.integers(0, 2 * 10**6),
       cap=st.integers(1, 2 * 10**6), headroom=st.integers(0, 10**5), min_top_up=st.integers(0, 10**6))
def test_plan_invariants(deposit: int, signed: int, required: int, cap: int, headroom: int,
                         min_top_up: int) -> None:
    """Any plan: covers the requirement, never lowers the signed amount, stays within deposit and cap."""
    if signed > deposit or deposit > cap:
        return
    ch = replace(CH, deposit=deposit, signed_cumulative=signed)
    try:
        step = plan_payment(ch, required, max_deposit=cap, headroom=headroom, min_top_up=min_top_up)
    except BudgetExceeded:
        assert max(required, signed) > cap
        return
    assert step.cumulative >= max(required, signed)
    assert step.cumulative <= deposit + step.top_up <= cap
    assert step.top_up >= 0
