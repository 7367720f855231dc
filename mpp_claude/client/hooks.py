"""``Hooks``: the observer callbacks a client calls (challenge, payment, receipt, budget, balance).

Observers never change whether or what is paid: an exception one raises is logged and ignored
(:func:`safe_hook`); only a ``BaseException`` (e.g. Ctrl-C) goes through.  The engine
(``_engine.py``) decides when each is called; ``alerts.py`` holds the budget and low-balance rules.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from .alerts import DEFAULT_THRESHOLDS, BudgetAlert, LowBalance, Threshold, thresholds
from .policy import usd
from .receipts import PaymentReceipt, Quote

log = logging.getLogger("mpp_claude.client")


@dataclass
class Hooks:
    """Observer callbacks (exceptions they raise are logged, never change a payment).

    ``on_challenge(quote)``: a 402 was answered with an allowed offer (before budgets).
    ``on_payment(quote, tx_hash)``: a credential was signed (the credential itself is a
    bearer secret and is never handed out).  ``on_receipt(receipt)``: a paid response arrived.

    ``on_budget(alert)``: a payment took a budget (``max_per_client``, ``max_per_day``, an active
    ``spending_limit`` scope) to a threshold of its cap (``budget_thresholds``, default
    50/80/95 %): one :class:`~mpp_claude.client.alerts.BudgetAlert` per budget and payment, for
    the highest threshold reached; each threshold alerts once per budget (``max_per_day`` re-arms
    as its 24 h window rolls).  Called once the payment's credential is signed, with the usage
    its reservation counted (a payment vetoed by the approval callback or refused before signing
    alerts nothing); each alert is also logged at INFO.

    ``on_low_balance(low)``: after a payment the wallet's balance of the token, as the payer
    tracks it (no extra RPC), is below ``low_balance_floor`` (base units as an ``int``, dollars as
    a ``str``/``Decimal``; default ``None``: 10x that payment's amount).  Called once per crossing,
    with one WARNING log line (logged even without a hook); again only after a payment left the
    balance at or above the floor.

    Raises:
        ConfigError: a threshold outside ``(0, 1]``, a malformed ``low_balance_floor``.
    """

    on_challenge: Callable[[Quote], None] | None = None
    on_payment: Callable[[Quote, str | None], None] | None = None
    on_receipt: Callable[[PaymentReceipt], None] | None = None
    on_budget: Callable[[BudgetAlert], None] | None = None
    on_low_balance: Callable[[LowBalance], None] | None = None
    budget_thresholds: Iterable[float] = DEFAULT_THRESHOLDS
    low_balance_floor: int | str | Decimal | None = None
    #: ``budget_thresholds`` validated, as exact fractions (``alerts.thresholds``)
    threshold_table: tuple[Threshold, ...] = field(init=False, repr=False, compare=False)
    #: ``low_balance_floor`` in base units (``None``: 10x each payment)
    floor_units: int | None = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        self.budget_thresholds = tuple(self.budget_thresholds)
        self.threshold_table = thresholds(self.budget_thresholds)
        self.floor_units = None if self.low_balance_floor is None else usd(self.low_balance_floor)


def safe_hook(name: str, fn: Callable[..., None] | None, *args: Any) -> None:
    """Call the observer ``fn`` (if set) with ``args``; an ``Exception`` it raises is logged."""
    if fn is None:
        return
    try:
        fn(*args)
    except Exception:  # observers must not change whether money moves
        log.exception("mpp_claude hook %s raised; ignored", name)
