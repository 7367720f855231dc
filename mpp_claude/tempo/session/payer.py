"""The payer's side of a channel: what to sign next, when to top up, within a cap (pure).

A client streaming over a session receives ``payment-need-voucher`` events carrying
``requiredCumulative`` and the on-chain ``deposit`` (draft "Insufficient Balance During
Streaming").  ``plan_payment`` turns one into the next step: a voucher for a cumulative
amount, preceded by a ``topUp`` when the amount exceeds the deposit ("the client MUST
submit topUp first").  ``headroom`` signs ahead so that not every metered tick costs a
round trip (mppx signs exactly ``requiredCumulative``, one voucher POST per tick).

Money rules kept here, whatever the server asks:

* the signed cumulative amount never goes down and never exceeds the deposit;
* the deposit never exceeds ``max_deposit`` (``BudgetExceeded`` instead);
* a server asking for less than already signed gets the already-signed amount again.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from ...errors import BudgetExceeded
from ._abi import normalize_address, normalize_channel_id


@dataclass(frozen=True, slots=True)
class PayerChannel:
    """What the payer remembers about one open channel (persist it to resume after a restart).

    Attributes:
        channel_id, escrow, chain_id, payee, token: the channel's identity (lower-case hex).
        deposit: the on-chain deposit including confirmed top-ups.
        signed_cumulative: the highest cumulative amount this payer has signed.
    """

    channel_id: str
    escrow: str
    chain_id: int
    payee: str
    token: str
    deposit: int
    signed_cumulative: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "channel_id", normalize_channel_id(self.channel_id))
        for name in ("escrow", "payee", "token"):
            object.__setattr__(self, name, normalize_address(getattr(self, name)))
        if not 0 <= self.signed_cumulative <= self.deposit:
            raise ValueError(f"signed cumulative {self.signed_cumulative} outside "
                             f"[0, deposit {self.deposit}]")

    @property
    def remaining(self) -> int:
        """Deposit not yet promised to the payee."""
        return self.deposit - self.signed_cumulative


@dataclass(frozen=True, slots=True)
class PaymentStep:
    """The next thing to send: a ``topUp`` of ``top_up`` (when > 0), then a voucher for ``cumulative``."""

    top_up: int
    cumulative: int

    @property
    def needs_top_up(self) -> bool:
        return self.top_up > 0


def plan_payment(channel: PayerChannel, required_cumulative: int, *, max_deposit: int, headroom: int = 0,
                 min_top_up: int = 0) -> PaymentStep:
    """Decide the next voucher (and top-up) for a server's ``requiredCumulative``.

    Args:
        channel: the payer's channel state.
        required_cumulative: from the server's ``payment-need-voucher`` (or the amount a
            request will cost on top of what was signed).
        max_deposit: the most this payer will ever lock in this channel (its cap).
        headroom: extra base units to authorise beyond the requirement (sign-ahead),
            clipped to what the deposit allows without an extra top-up.
        min_top_up: the smallest top-up worth a transaction (e.g. the offer's
            ``suggestedDeposit``), still bounded by ``max_deposit``.
    Returns:
        ``PaymentStep``; sign ``cumulative`` after the top-up (if any) is confirmed.
    Raises:
        ValueError: negative inputs (a caller bug).
        BudgetExceeded: covering ``required_cumulative`` needs a deposit above ``max_deposit``.
    """
    if required_cumulative < 0 or headroom < 0 or min_top_up < 0:
        raise ValueError("amounts must be >= 0")
    required = max(required_cumulative, channel.signed_cumulative)
    if required <= channel.deposit:
        return PaymentStep(0, min(required + headroom, channel.deposit))
    if required > max_deposit:
        raise BudgetExceeded(
            f"the server asks for a cumulative {required}, above this channel's cap {max_deposit}",
            limit="max_deposit", limit_value=max_deposit, requested=required)
    top_up = min(max(required + headroom - channel.deposit, min_top_up), max_deposit - channel.deposit)
    return PaymentStep(top_up, min(required + headroom, channel.deposit + top_up))


def after_top_up(channel: PayerChannel, amount: int) -> PayerChannel:
    """The channel once a top-up of ``amount`` is confirmed on chain."""
    if amount <= 0:
        raise ValueError("a top-up adds a positive amount")
    return replace(channel, deposit=channel.deposit + amount)


def after_voucher(channel: PayerChannel, cumulative: int) -> PayerChannel:
    """The channel once a voucher for ``cumulative`` has been signed (persist before sending it).

    Raises:
        ValueError: ``cumulative`` would go down or exceed the deposit.
    """
    if not channel.signed_cumulative <= cumulative <= channel.deposit:
        raise ValueError(f"cumulative {cumulative} outside [{channel.signed_cumulative}, {channel.deposit}]")
    return replace(channel, signed_cumulative=cumulative)
