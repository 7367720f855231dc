"""Observer values for budgets nearing their caps and a wallet running low, and the pure rules for them.

Pure: no clock, no I/O, no logging; ``_engine.py`` calls these once a payment's credential was
signed and hands the values to ``Hooks``.

Budget alerts (``Hooks(on_budget=...)``, agent-payments-ux.md §4.2): once a payment is signed,
each budget whose usage (as the payment's reservation counted it) reached a threshold it had not
alerted yet gives one :class:`BudgetAlert`, for the *highest* threshold reached (a payment that
takes a budget from 40 % to 90 % alerts once, at 0.8).  A budget alerts each threshold at most
once; a payment that was never signed (vetoed, refused, given back) alerts nothing.  The rolling
``max_per_day`` re-arms a threshold once its 24 h sum, as the ledger reads it at a later
reservation, fell back below that threshold as the window moved on.

Low balance (``Hooks(on_low_balance=...)``, §4.7): the wallet's token balance the payer tracks,
after a payment, below a floor (``Hooks(low_balance_floor=...)``, default 10x that payment).
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from dataclasses import dataclass
from fractions import Fraction
from typing import TYPE_CHECKING

from ..errors import ConfigError
from .receipts import Quote, display

if TYPE_CHECKING:  # budget.py imports Marks from here
    from .budget import BudgetScope

#: The fractions of a budget at which ``Hooks.on_budget`` is called by default.
DEFAULT_THRESHOLDS: tuple[float, ...] = (0.5, 0.8, 0.95)

#: The default low-balance floor, in payments: the balance after a payment is "low" below this many
#: times that payment's amount.
LOW_BALANCE_PAYMENTS = 10

Threshold = tuple[float, int, int]
"""A threshold as given (``0.8``) and as an exact fraction ``(numerator, denominator)``."""


@dataclass(frozen=True, slots=True)
class BudgetAlert:
    """A budget's usage reached ``threshold`` of its cap with the payment described here.

    Attributes:
        limit: the budget's name, as ``BudgetExceeded.limit`` names it: ``"max_per_client"``,
            ``"max_per_day"``, or a scope's name (``spending_limit(..., name=...)``).
        cap: the budget's limit, base units.
        used: what it counts after this payment's reservation, base units (the 24 h sum for
            ``max_per_day``).
        threshold: the highest threshold reached and not alerted before (e.g. ``0.8``).
        origin, path: where the payment that reached it goes.
        amount, currency, symbol, decimals: that payment (base units of ``currency``).
    """

    limit: str
    cap: int
    used: int
    threshold: float
    origin: str
    path: str
    amount: int
    currency: str
    symbol: str
    decimals: int

    @property
    def fraction(self) -> float:
        """``used / cap`` (may exceed ``threshold``)."""
        return self.used / self.cap

    def __str__(self) -> str:
        return (f"budget {self.limit} at {self.fraction:.0%} (threshold {self.threshold:.0%}): "
                f"{display(self.used, self.decimals)} of {display(self.cap, self.decimals)} {self.symbol} "
                f"used after paying {display(self.amount, self.decimals)} for {self.origin}{self.path}")


@dataclass(frozen=True, slots=True)
class LowBalance:
    """The wallet's balance of ``token`` after a payment is below ``floor``.

    Attributes:
        token: the token's address; ``symbol`` its symbol (``"units"`` when unknown).
        balance: the balance after the payment, base units: the payer's locally tracked value
            (read from the chain at most ``payer.BALANCE_TTL`` seconds before, then debited by
            each payment; the fee, when paid in another token or by a fee payer, is not counted).
        amount: the payment that took it below.
        floor: the floor it is below, base units.
        decimals: the token's decimals.
    """

    token: str
    symbol: str
    balance: int
    amount: int
    floor: int
    decimals: int

    def __str__(self) -> str:
        return (f"wallet balance {display(self.balance, self.decimals)} {self.symbol} is below "
                f"{display(self.floor, self.decimals)} after paying {display(self.amount, self.decimals)} "
                f"(token {self.token})")


@dataclass(frozen=True, slots=True)
class Spend:
    """The signed payment a budget alert names: a charge's quote, or a session voucher's increase."""

    origin: str
    path: str
    amount: int
    currency: str
    symbol: str
    decimals: int

    @classmethod
    def of(cls, quote: Quote) -> Spend:
        """The spend of a charge payment's ``quote``."""
        return cls(quote.origin, quote.path, quote.amount, quote.currency, quote.symbol, quote.decimals)


def thresholds(values: Iterable[float]) -> tuple[Threshold, ...]:
    """Validated thresholds, ascending, without duplicates.

    Args:
        values: fractions of a budget, each ``0 < t <= 1`` (``0.8`` = 80 %).
    Returns:
        ``(t, numerator, denominator)`` per threshold, the fraction exact from ``t``'s shortest
        decimal form (``0.95`` is 19/20), so a budget reaches it at an exact base unit.
    Raises:
        ConfigError: a value that is not a number, or outside ``(0, 1]``.
    """
    out: dict[float, Threshold] = {}
    for t in values:
        if isinstance(t, bool) or not isinstance(t, (int, float)) or not 0 < t <= 1:
            raise ConfigError(f"budget thresholds must be numbers with 0 < t <= 1, got {t!r}")
        exact = Fraction(repr(float(t)))
        out[float(t)] = (float(t), exact.numerator, exact.denominator)
    return tuple(out[t] for t in sorted(out))


def highest_reached(table: tuple[Threshold, ...], cap: int, used: int) -> int:
    """How many thresholds of ``table`` ``used`` reached (``used >= t * cap``); 0 for none."""
    n = 0
    for _, num, den in table:
        if used * den < num * cap:
            break
        n += 1
    return n


class Marks:
    """How many thresholds one budget already alerted (its high-water mark), thread-safe."""

    __slots__ = ("_lock", "reached")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.reached = 0

    def advance(self, table: tuple[Threshold, ...], cap: int, used: int) -> float | None:
        """The threshold to alert now that the budget counts ``used`` of ``cap``, or ``None``.

        Raises the mark to every threshold ``used`` reached, so each alerts once (threads that
        reserve together never alert the same threshold twice).
        """
        if cap <= 0:
            return None
        n = highest_reached(table, cap, used)
        with self._lock:
            if n <= self.reached:
                return None
            self.reached = n
        return table[n - 1][0]

    def rearm(self, table: tuple[Threshold, ...], cap: int, before: int) -> None:
        """A rolling budget counted ``before`` ahead of this payment: thresholds that sum no longer
        reaches (the window moved on) alert again."""
        with self._lock:
            if self.reached and cap > 0:
                self.reached = min(self.reached, highest_reached(table, cap, before))


def low_floor(floor: int | None, amount: int) -> int:
    """The balance below which a payment of ``amount`` leaves the wallet low."""
    return LOW_BALANCE_PAYMENTS * amount if floor is None else floor


class Watch:
    """What one client's observers remember: ``max_per_day``'s marks (a scope keeps its own in
    ``BudgetScope.alerts``) and the tokens whose balance is below the floor.  Thread-safe."""

    __slots__ = ("_lock", "day", "low")

    def __init__(self) -> None:
        self.day = Marks()
        self.low: set[str] = set()
        self._lock = threading.Lock()

    def budgets(self, table: tuple[Threshold, ...], spend: Spend, scopes: tuple[BudgetScope, ...],
                day_cap: int | None, day: int | None) -> list[BudgetAlert]:
        """The alerts of a payment of ``spend.amount`` just signed, reserved in ``scopes`` and the ledger.

        Args:
            table: the thresholds (:func:`thresholds`).
            spend: the payment signed.
            scopes: the scoped budgets and the lifetime one it was reserved in, as reserved.
            day_cap: ``max_per_day`` (``None``: unlimited); ``day``: its 24 h sum with this payment.
        Returns:
            one alert per budget that reached a threshold not alerted before, in ``scopes`` order,
            ``max_per_day`` last.
        """
        out: list[BudgetAlert] = []
        for scope in scopes:
            b = scope.budget  # one snapshot: limit and what it counts now, this payment included
            if b.limit is not None:
                self._add(out, spend, b.name, b.limit, b.spent, scope.alerts.advance(table, b.limit, b.spent))
        if day_cap is not None and day is not None:
            self.day.rearm(table, day_cap, day - spend.amount)
            self._add(out, spend, "max_per_day", day_cap, day, self.day.advance(table, day_cap, day))
        return out

    @staticmethod
    def _add(out: list[BudgetAlert], spend: Spend, name: str, cap: int, used: int,
             threshold: float | None) -> None:
        if threshold is not None:
            out.append(BudgetAlert(name, cap, used, threshold, spend.origin, spend.path, spend.amount,
                                   spend.currency, spend.symbol, spend.decimals))

    def balance(self, quote: Quote, balance: int, floor: int | None) -> LowBalance | None:
        """The low-balance report for ``balance`` left after paying ``quote``, once per drop below
        the floor (:func:`low_floor`); a payment that leaves it at or above the floor re-arms it."""
        limit = low_floor(floor, quote.amount)
        token = quote.currency
        if balance >= limit:
            if self.low:
                with self._lock:
                    self.low.discard(token)
            return None
        with self._lock:
            if token in self.low:
                return None
            self.low.add(token)
        return LowBalance(token, quote.symbol, balance, quote.amount, limit, quote.decimals)
