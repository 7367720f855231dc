"""Configuration of the server's session intent (off unless a ``SessionSettings`` is given)."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class SessionSettings:
    """How the server offers and runs sessions (payment channels).  Amounts in base units.

    Args:
        payee_key: hex private key of the payment recipient (``config.recipient``): the escrow
            accepts ``settle``/``close`` only from the payee.
        escrow: the v1 escrow address; ``None`` = the canonical escrow of the chain.
        suggested_deposit: ``suggestedDeposit`` of the offer.
        min_deposit: the smallest opening deposit accepted.
        min_voucher_delta: ``minVoucherDelta`` (0: any increase).
        settle_every_amount: settle on chain once this much spent is unsettled (0: never by amount).
        settle_every_seconds: settle when the last settlement is this old and something is
            unsettled (0: never by time).  Without either, the payee is paid at close.
        voucher_wait: seconds a stream waits for a voucher after ``payment-need-voucher``.
        channel_state_ttl: seconds on-chain channel state is cached between vouchers.
        hold_ttl: seconds after which a request's hold is dropped (a crashed worker's).
        fee_token: TIP-20 the payee pays settle/close fees with (``None``: account default).
    """

    payee_key: str = field(repr=False)
    escrow: str | None = None
    suggested_deposit: int = 1_000_000
    min_deposit: int = 1
    min_voucher_delta: int = 0
    settle_every_amount: int = 0
    settle_every_seconds: float = 0.0
    voucher_wait: float = 60.0
    channel_state_ttl: float = 5.0
    hold_ttl: float = 3600.0
    fee_token: str | None = None
