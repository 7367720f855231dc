"""Budget values and scoped sub-budgets carried in a context variable."""

from __future__ import annotations

import asyncio
import contextvars
import threading

import pytest

from mpp_claude.client.budget import (
    HISTORY_MAX,
    Budget,
    BudgetScope,
    active_scopes,
    reserve_all,
    spending_limit,
)
from mpp_claude.errors import BudgetExceeded


class TestBudget:
    def test_reserve_returns_a_new_value(self) -> None:
        """Immutable: the old value is unchanged and the history grows."""
        b = Budget("cap", 100)
        b2 = b.reserve(60)
        assert (b.spent, b2.spent, b2.remaining, b2.history) == (0, 60, 40, (60,))

    def test_history_keeps_the_latest_entries(self) -> None:
        """A budget drawn from by every payment keeps the newest HISTORY_MAX entries, not all."""
        b = Budget("cap", None)
        for i in range(HISTORY_MAX + 50):
            b = b.reserve(i)
        b = b.release(7)
        assert len(b.history) == HISTORY_MAX and b.history[-2:] == (HISTORY_MAX + 49, -7)
        assert b.spent == sum(range(HISTORY_MAX + 50)) - 7

    def test_exceeding_names_limit_value_and_request(self) -> None:
        with pytest.raises(BudgetExceeded) as info:
            Budget("cap", 100, 60).reserve(41)
        assert (info.value.limit, info.value.limit_value, info.value.requested) == ("cap", 100, 41)

    def test_unlimited(self) -> None:
        assert Budget("x", None).reserve(10**12).remaining is None

    def test_release(self) -> None:
        assert Budget("cap", 100, 60).release(60).spent == 0

    def test_negative_amount(self) -> None:
        with pytest.raises(ValueError):
            Budget("cap", 1).reserve(-1)


class TestScopes:
    def test_nesting_and_reset(self) -> None:
        with spending_limit(10, name="outer") as outer:
            with BudgetScope(5, name="inner") as inner:
                assert active_scopes() == (outer, inner)
            assert active_scopes() == (outer,)
        assert active_scopes() == ()

    def test_reserve_all_is_all_or_nothing(self) -> None:
        """When the inner scope refuses, the outer one gets its reservation back."""
        outer, inner = BudgetScope(100, name="outer"), BudgetScope(5, name="inner")
        with pytest.raises(BudgetExceeded) as info:
            reserve_all((outer, inner), 6)
        assert info.value.limit == "inner" and outer.spent == 0

    def test_async_tasks_inherit_the_scope(self) -> None:
        async def main() -> tuple[BudgetScope, ...]:
            with BudgetScope(5, name="step"):
                return await asyncio.create_task(_scopes())

        async def _scopes() -> tuple[BudgetScope, ...]:
            return active_scopes()

        got = asyncio.run(main())
        assert [s.budget.name for s in got] == ["step"]

    def test_threads_share_one_cap_safely(self) -> None:
        """Many threads reserving at once never pass the limit."""
        scope = BudgetScope(1000)
        ok: list[int] = []

        def worker() -> None:
            for _ in range(100):
                try:
                    scope.reserve(3)
                    ok.append(3)
                except BudgetExceeded:
                    pass

        threads = [threading.Thread(target=contextvars.copy_context().run, args=(worker,)) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert scope.spent == sum(ok) == 999

    def test_reentering_the_same_scope_is_refused(self) -> None:
        scope = BudgetScope(1)
        with scope, pytest.raises(RuntimeError):
            scope.__enter__()
