"""Spending limits as values, and scoped sub-budgets carried in a context variable.

:class:`Budget` is immutable in the style of urllib3's ``Retry``: :meth:`Budget.reserve`
returns a new budget with the amount added (or raises :class:`BudgetExceeded`), and
``history`` lists the latest reservations (``HISTORY_MAX``), so one value can be shared and
inspected safely.

:class:`BudgetScope` is the mutable holder for one limit that many requests draw from
(the client's lifetime cap, or a ``with client.budget("0.20"):`` block).  Scopes nest: the
active chain lives in a :class:`contextvars.ContextVar`, so asyncio tasks created inside a
block inherit its cap, and a thread started inside it does not (use ``contextvars.copy_context``).
"""

from __future__ import annotations

import contextvars
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from decimal import Decimal

from ..errors import BudgetExceeded
from .alerts import Marks
from .policy import usd

#: Reservations (and releases, negative) a :class:`Budget` remembers in ``history``, newest last.
#: Bounded: a client's lifetime budget sees every payment, and copying an ever-growing tuple on
#: each one would make a payment's cost grow with the number made before it.
HISTORY_MAX = 100


@dataclass(frozen=True, slots=True)
class Budget:
    """A limit and what has been reserved against it.  ``limit=None`` means unlimited."""

    name: str
    limit: int | None
    spent: int = 0
    history: tuple[int, ...] = ()

    @property
    def remaining(self) -> int | None:
        """Base units still available (``None`` when unlimited)."""
        return None if self.limit is None else max(self.limit - self.spent, 0)

    def reserve(self, amount: int) -> Budget:
        """A new budget with ``amount`` reserved.

        Raises:
            BudgetExceeded: ``spent + amount`` would pass ``limit`` (names the limit, its value
                and the amount asked).
            ValueError: ``amount`` is negative.
        """
        if amount < 0:
            raise ValueError(f"cannot reserve a negative amount ({amount})")
        if self.limit is not None and self.spent + amount > self.limit:
            raise BudgetExceeded(
                f"payment of {amount} base units would exceed {self.name} {self.limit} "
                f"({self.spent} already spent)", limit=self.name, limit_value=self.limit,
                requested=amount, spent=self.spent)
        return Budget(self.name, self.limit, self.spent + amount, (*self.history[1 - HISTORY_MAX:], amount))

    def release(self, amount: int) -> Budget:
        """A new budget with ``amount`` given back (a payment that provably did not happen)."""
        return Budget(self.name, self.limit, max(self.spent - amount, 0),
                      (*self.history[1 - HISTORY_MAX:], -amount))


class BudgetScope:
    """A thread-safe, shareable spending cap.  Enter it with ``with`` to cap a block of code.

    Args:
        limit: base units (``int``) or dollars (``str``/``Decimal``); ``None`` = unlimited.
        name: how errors name this limit (``"scope"`` by default).
    """

    def __init__(self, limit: int | str | Decimal | None, *, name: str = "scope") -> None:
        self._lock = threading.Lock()
        self._budget = Budget(name, None if limit is None else usd(limit))
        self._token: contextvars.Token[tuple[BudgetScope, ...]] | None = None
        #: the thresholds this scope already alerted (``Hooks.on_budget``; alerts.py): each once,
        #: whichever client pays from the scope
        self.alerts = Marks()

    @property
    def budget(self) -> Budget:
        """The current immutable snapshot (limit, spent, history)."""
        return self._budget

    @property
    def spent(self) -> int:
        return self._budget.spent

    @property
    def remaining(self) -> int | None:
        return self._budget.remaining

    def reserve(self, amount: int) -> None:
        """Reserve ``amount`` atomically.  Raises ``BudgetExceeded`` (nothing reserved)."""
        with self._lock:
            self._budget = self._budget.reserve(amount)

    def release(self, amount: int) -> None:
        """Give ``amount`` back after a payment that provably did not happen."""
        with self._lock:
            self._budget = self._budget.release(amount)

    def __enter__(self) -> BudgetScope:
        if self._token is not None:
            raise RuntimeError("this BudgetScope is already active; create a new one to nest")
        self._token = _ACTIVE.set((*_ACTIVE.get(), self))
        return self

    def __exit__(self, *exc: object) -> None:
        if self._token is not None:
            _ACTIVE.reset(self._token)
            self._token = None

    def __repr__(self) -> str:
        b = self._budget
        return f"BudgetScope(name={b.name!r}, limit={b.limit}, spent={b.spent})"


_ACTIVE: contextvars.ContextVar[tuple[BudgetScope, ...]] = contextvars.ContextVar(
    "mpp_claude_budget_scopes", default=())


def active_scopes() -> tuple[BudgetScope, ...]:
    """The scoped budgets active in the current context, outermost first."""
    return _ACTIVE.get()


def reserve_all(scopes: tuple[BudgetScope, ...], amount: int) -> None:
    """Reserve ``amount`` in every scope or in none.

    Raises:
        BudgetExceeded: from the first scope that cannot take it (earlier ones are released).
    """
    done: list[BudgetScope] = []
    try:
        for scope in scopes:
            scope.reserve(amount)
            done.append(scope)
    except BudgetExceeded:
        for scope in done:
            scope.release(amount)
        raise


def release_all(scopes: tuple[BudgetScope, ...], amount: int) -> None:
    """Give ``amount`` back to every scope."""
    for scope in scopes:
        scope.release(amount)


@contextmanager
def spending_limit(limit: int | str | Decimal, *, name: str = "scope") -> Iterator[BudgetScope]:
    """Cap every payment made inside the block (any client, this context and its tasks).

    Example::

        with spending_limit("0.20", name="agent step 3") as step:
            client.chat.completions.create(...)
        print(step.spent)
    """
    with BudgetScope(limit, name=name) as scope:
        yield scope
