"""Budget alerts and the low-balance observer (``Hooks(on_budget=..., on_low_balance=...)``): the pure
rules of alerts.py, then the four shells over the MockTransport shop (price 10 000 base units)."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from _shop import ORIGIN, AsyncFakePayer, FakePayer, Shop

from mpp_claude.client import BudgetAlert, Hooks, Ledger, LowBalance, MemoryLedger, Policy, _engine
from mpp_claude.client.alerts import DEFAULT_THRESHOLDS, Marks, highest_reached, low_floor, thresholds
from mpp_claude.client.ledger import Entry
from mpp_claude.client.payer import Signed, _Balances
from mpp_claude.errors import ApprovalDenied, ConfigError
from mpp_claude.protocol.challenge import Challenge
from mpp_claude.tempo import tip20

Make = Callable[..., tuple[Any, Shop]]
URL = ORIGIN + "/v1/chat/completions"
LOGGER = "mpp_claude.client"


def summary(alerts: list[BudgetAlert]) -> list[tuple[str, int, int, float]]:
    return [(a.limit, a.cap, a.used, a.threshold) for a in alerts]


def pay(client: Any, n: int = 1) -> None:
    for _ in range(n):
        assert client.post(URL, json={"model": "m"}).status_code == 200


# -- pure rules ------------------------------------------------------------------------------------


class TestThresholds:
    def test_sorted_deduplicated_exact(self) -> None:
        assert thresholds([0.95, 0.5, 0.8, 0.5]) == ((0.5, 1, 2), (0.8, 4, 5), (0.95, 19, 20))
        assert thresholds([1]) == ((1.0, 1, 1),)
        assert [t for t, _, _ in thresholds(DEFAULT_THRESHOLDS)] == [0.5, 0.8, 0.95]

    @pytest.mark.parametrize("bad", [0, 0.0, -0.1, 1.01, 2, float("nan"), float("inf"), "0.5", True, None])
    def test_out_of_range_is_a_config_error(self, bad: Any) -> None:
        with pytest.raises(ConfigError, match="0 < t <= 1"):
            thresholds([0.5, bad])
        with pytest.raises(ConfigError):
            Hooks(budget_thresholds=(bad,))

    def test_reached_at_the_exact_base_unit(self) -> None:
        table = thresholds(DEFAULT_THRESHOLDS)
        # 0.95 of 20 is exactly 19; a float product (0.95 * 20 = 19.000000000000004) would miss it
        assert [highest_reached(table, 20, used) for used in (9, 10, 15, 16, 18, 19, 20, 25)] == \
            [0, 1, 1, 2, 2, 3, 3, 3]

    def test_low_balance_floor(self) -> None:
        assert low_floor(None, 7) == 70 and low_floor(5, 7) == 5
        assert Hooks(low_balance_floor="0.05").floor_units == 50_000
        assert Hooks(low_balance_floor=123).floor_units == 123 and Hooks().floor_units is None
        for bad in (-1, "ten", "0.0000001"):
            with pytest.raises(ConfigError):
                Hooks(low_balance_floor=bad)


class TestMarks:
    def test_each_threshold_once_highest_first(self) -> None:
        table, marks = thresholds(DEFAULT_THRESHOLDS), Marks()
        assert [marks.advance(table, 100, used) for used in (40, 50, 60, 96, 99, 100)] == \
            [None, 0.5, None, 0.95, None, None]

    def test_the_window_moving_on_rearms(self) -> None:
        table, marks = thresholds(DEFAULT_THRESHOLDS), Marks()
        assert marks.advance(table, 100, 80) == 0.8
        marks.rearm(table, 100, 80)      # the sum before the next payment still reaches 80 %
        assert marks.advance(table, 100, 85) is None
        marks.rearm(table, 100, 60)      # the window rolled below 80 %, not below 50 %
        assert marks.reached == 1 and marks.advance(table, 100, 85) == 0.8
        marks.rearm(table, 100, 0)       # all rolled out: everything re-armed
        assert marks.reached == 0 and marks.advance(table, 100, 50) == 0.5

    def test_zero_cap_never_alerts(self) -> None:
        assert Marks().advance(thresholds([0.5]), 0, 0) is None


class TestLedgerCounted:
    @pytest.mark.parametrize("kind", ["sqlite", "memory"])
    def test_reserve_counted_returns_the_24h_sum(self, kind: str, tmp_path: Path) -> None:
        led: Any = Ledger(tmp_path / "l.sqlite3") if kind == "sqlite" else MemoryLedger()
        entry = Entry("0xw", 300, tip20.PATH_USD, 1, "0xp", ORIGIN, "/x")
        assert led.reserve_counted(entry, now=1000.0, max_per_day=1_000, max_per_minute=None) == (1, 300)
        assert led.reserve_counted(entry, now=1001.0, max_per_day=1_000, max_per_minute=5) == (2, 600)
        assert led.reserve_counted(entry, now=1002.0, max_per_day=None, max_per_minute=5) == (3, None)
        assert led.reserve(entry, now=1003.0, max_per_day=2_000, max_per_minute=None) == 4
        led.release(4, error="not paid", now=1004.0)
        assert led.reserve_counted(entry, now=1005.0, max_per_day=None, max_per_minute=None)[1] is None
        assert led.reserve_counted(entry, now=1006.0, max_per_day=2_000, max_per_minute=None) == (6, 1_500)
        assert led.day_spent("0xw", now=1007.0) == 1_500


def test_balances_debit_returns_what_is_left() -> None:
    balances = _Balances()
    assert balances.debit(tip20.PATH_USD, 5) is None  # never read: unknown
    balances.set(tip20.PATH_USD, 100, now=0.0)
    assert balances.debit(tip20.PATH_USD, 30) == 70 and balances.debit(tip20.PATH_USD, 70) == 0


# -- budget alerts through the clients -------------------------------------------------------------


class TestBudgetAlerts:
    def test_lifetime_50_80_95(self, make_client: Make, caplog: pytest.LogCaptureFixture) -> None:
        seen: list[tuple[int, BudgetAlert]] = []
        client, shop = make_client(policy=Policy(max_per_client=100_000),
                                   hooks=Hooks(on_budget=lambda a: seen.append((len(shop.accepted), a))))
        with caplog.at_level(logging.INFO, logger=LOGGER):
            pay(client, 10)
        # the hook runs at the reservation, before the payment it reports was sent
        assert [n for n, _ in seen] == [4, 7, 9]
        assert summary([a for _, a in seen]) == [("max_per_client", 100_000, 50_000, 0.5),
                                                 ("max_per_client", 100_000, 80_000, 0.8),
                                                 ("max_per_client", 100_000, 100_000, 0.95)]
        first = seen[0][1]
        assert (first.origin, first.path, first.amount, first.currency, first.symbol, first.decimals) == \
            (ORIGIN, "/v1/chat/completions", 10_000, tip20.PATH_USD, "pathUSD", 6)
        assert first.fraction == 0.5
        lines = [r.getMessage() for r in caplog.records if "budget max_per_client" in r.getMessage()]
        assert len(lines) == 3 and all(r.levelno == logging.INFO for r in caplog.records
                                       if "budget max_per_client" in r.getMessage())
        assert lines[0] == ("mpp_claude budget max_per_client at 50% (threshold 50%): 0.05 of 0.1 pathUSD "
                            "used after paying 0.01 for https://shop.test/v1/chat/completions")

    @pytest.mark.parametrize("kind", ["sqlite", "memory"])
    def test_rolling_day_one_call_for_the_highest_threshold(self, make_client: Make, kind: str,
                                                            tmp_path: Path) -> None:
        seen: list[BudgetAlert] = []
        led: Any = Ledger(tmp_path / "l.sqlite3") if kind == "sqlite" else MemoryLedger()
        client, _ = make_client(ledger=led, policy=Policy(max_per_day=40_000),
                                hooks=Hooks(on_budget=seen.append))
        pay(client, 4)  # 20 000 = 50 %; 30 000 = 75 %; 40 000 = 100 %: 0.8 and 0.95 at once, one call
        assert summary(seen) == [("max_per_day", 40_000, 20_000, 0.5), ("max_per_day", 40_000, 40_000, 0.95)]

    def test_rolling_day_counts_what_another_client_spent(self, make_client: Make, tmp_path: Path) -> None:
        path = tmp_path / "l.sqlite3"
        first, _ = make_client(ledger=Ledger(path), policy=Policy(max_per_day=40_000))
        pay(first, 3)
        first.close()
        seen: list[BudgetAlert] = []
        second, _ = make_client(ledger=Ledger(path), policy=Policy(max_per_day=40_000),
                                hooks=Hooks(on_budget=seen.append))
        pay(second)
        assert summary(seen) == [("max_per_day", 40_000, 40_000, 0.95)]

    def test_scope_and_custom_thresholds(self, make_client: Make) -> None:
        seen: list[BudgetAlert] = []
        client, _ = make_client(hooks=Hooks(on_budget=seen.append, budget_thresholds=[0.25, 1]))
        with client.budget(40_000, name="agent step") as step:
            pay(client, 4)
        assert step.spent == 40_000
        assert summary(seen) == [("agent step", 40_000, 10_000, 0.25), ("agent step", 40_000, 40_000, 1.0)]

    def test_nested_scopes_and_lifetime_in_one_payment(self, make_client: Make) -> None:
        seen: list[BudgetAlert] = []
        client, _ = make_client(policy=Policy(max_per_client=20_000), hooks=Hooks(on_budget=seen.append))
        with client.budget(10_000, name="outer"), client.budget(20_000, name="inner"):
            pay(client)
        # outermost scope first, the lifetime budget last (the order they are reserved in)
        assert summary(seen) == [("outer", 10_000, 10_000, 0.95), ("inner", 20_000, 10_000, 0.5),
                                 ("max_per_client", 20_000, 10_000, 0.5)]

    def test_no_call_below_the_first_threshold(self, make_client: Make) -> None:
        seen: list[BudgetAlert] = []
        client, shop = make_client(policy=Policy(max_per_client=100_000, max_per_day=1_000_000),
                                   hooks=Hooks(on_budget=seen.append))
        with client.budget(210_000):
            pay(client, 4)  # lifetime 40 %, scope 19 %, day 4 %
            assert summary(seen) == []
            pay(client)
        assert len(shop.accepted) == 5 and summary(seen) == [("max_per_client", 100_000, 50_000, 0.5)]

    def test_a_raising_hook_changes_nothing(self, make_client: Make,
                                            caplog: pytest.LogCaptureFixture) -> None:
        calls: list[float] = []

        def boom(alert: BudgetAlert) -> None:
            calls.append(alert.threshold)
            raise RuntimeError("broken observer")

        client, shop = make_client(policy=Policy(max_per_client=20_000), hooks=Hooks(on_budget=boom))
        with caplog.at_level(logging.ERROR, logger=LOGGER):
            pay(client, 2)
        assert calls == [0.5, 0.95] and len(shop.accepted) == 2 and client.spent == 20_000
        messages = [r.getMessage() for r in caplog.records]
        assert messages.count("mpp_claude hook on_budget raised; ignored") == 2

    def test_interrupting_hook_stops_before_sending(self, make_client: Make) -> None:
        """A BaseException from the hook (after signing, like ``on_payment``'s) goes through: the
        credential is never sent, and its budget stays held (the credential exists)."""
        def interrupt(alert: BudgetAlert) -> None:
            raise KeyboardInterrupt

        client, shop = make_client(policy=Policy(max_per_client=20_000), hooks=Hooks(on_budget=interrupt))
        with pytest.raises(KeyboardInterrupt):
            client.post(URL, json={})
        assert shop.accepted == [] and client.spent == 10_000

    def test_a_payment_never_signed_alerts_nothing(self, make_client: Make, tmp_path: Path) -> None:
        """A vetoed payment gives its budget back and alerts nothing; the next payment that does
        reach the threshold alerts it."""
        seen: list[BudgetAlert] = []
        verdicts = [False, True, True]
        led = Ledger(tmp_path / "l.sqlite3")
        client, shop = make_client(ledger=led, policy=Policy(max_per_client=20_000, max_per_day=20_000),
                                   hooks=Hooks(on_budget=seen.append), approve=lambda q: verdicts.pop(0))
        with pytest.raises(ApprovalDenied):
            client.post(URL, json={})
        assert client.spent == 0 and [r.status for r in led.rows()] == ["released"] and seen == []
        pay(client)
        assert summary(seen) == [("max_per_client", 20_000, 10_000, 0.5),
                                 ("max_per_day", 20_000, 10_000, 0.5)]
        pay(client)
        assert summary(seen[2:]) == [("max_per_client", 20_000, 20_000, 0.95),
                                     ("max_per_day", 20_000, 20_000, 0.95)]
        assert len(shop.accepted) == 2

    def test_async(self, make_client: Make) -> None:
        seen: list[BudgetAlert] = []
        client, _ = make_client(asynchronous=True, policy=Policy(max_per_client=20_000),
                                hooks=Hooks(on_budget=seen.append))

        async def run() -> None:
            async with client:
                for _ in range(2):
                    assert (await client.post(URL, json={})).status_code == 200

        asyncio.run(run())
        assert summary(seen) == [("max_per_client", 20_000, 10_000, 0.5),
                                 ("max_per_client", 20_000, 20_000, 0.95)]


# -- low balance -----------------------------------------------------------------------------------


class BalancePayer(FakePayer):
    """A FakePayer whose signatures report a tracked balance, debited like ``payer._Balances``."""

    def __init__(self, balance: int) -> None:
        super().__init__()
        self.balance = balance

    def sign(self, challenge: Challenge, charge: Any) -> Signed:
        self.balance -= charge.amount
        return dataclasses.replace(FakePayer.sign(self, challenge, charge), balance=self.balance)


class AsyncBalancePayer(AsyncFakePayer):
    def __init__(self, balance: int) -> None:
        super().__init__()
        self.balance = balance

    async def sign(self, challenge: Challenge, charge: Any) -> Signed:  # type: ignore[override]
        return BalancePayer.sign(self, challenge, charge)  # type: ignore[arg-type]


def low_warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records
            if r.levelno == logging.WARNING and "low balance" in r.getMessage()]


class TestLowBalance:
    def test_once_per_crossing_default_floor(self, make_client: Make,
                                             caplog: pytest.LogCaptureFixture) -> None:
        seen: list[tuple[int, LowBalance]] = []
        payer = BalancePayer(130_000)  # default floor: 10 x 10 000
        client, shop = make_client(payer=payer, hooks=Hooks(on_low_balance=lambda b: seen.append(
            (len(shop.accepted), b))))
        with caplog.at_level(logging.WARNING, logger=LOGGER):
            pay(client, 3)  # 120 000, 110 000, 100 000: not below
            assert seen == [] and low_warnings(caplog) == []
            pay(client, 2)  # 90 000: below (hook, before the credential is sent); 80 000: still below
            assert [(n, b.balance) for n, b in seen] == [(3, 90_000)]
            payer.balance = 200_000
            pay(client)     # 190 000: back above, re-armed
            payer.balance = 105_000
            pay(client)     # 95 000: below again
        assert [(n, b.balance) for n, b in seen] == [(3, 90_000), (6, 95_000)]
        low = seen[0][1]
        assert (low.token, low.symbol, low.balance, low.amount, low.floor, low.decimals) == \
            (tip20.PATH_USD, "pathUSD", 90_000, 10_000, 100_000, 6)
        assert low_warnings(caplog) == [
            f"mpp_claude low balance: wallet balance 0.09 pathUSD is below 0.1 after paying 0.01 "
            f"(token {tip20.PATH_USD})",
            f"mpp_claude low balance: wallet balance 0.095 pathUSD is below 0.1 after paying 0.01 "
            f"(token {tip20.PATH_USD})"]
        assert len(shop.accepted) == 7

    def test_configured_floor_and_raising_hook(self, make_client: Make,
                                               caplog: pytest.LogCaptureFixture) -> None:
        calls: list[int] = []

        def boom(low: LowBalance) -> None:
            calls.append(low.floor)
            raise RuntimeError("broken observer")

        client, shop = make_client(payer=BalancePayer(30_000),
                                   hooks=Hooks(on_low_balance=boom, low_balance_floor="0.015"))
        with caplog.at_level(logging.WARNING, logger=LOGGER):
            pay(client, 3)  # 20 000 (above 15 000), 10 000 (below), 0
        assert calls == [15_000] and len(shop.accepted) == 3 and len(low_warnings(caplog)) == 1

    def test_warning_without_a_hook(self, make_client: Make, caplog: pytest.LogCaptureFixture) -> None:
        client, _ = make_client(payer=BalancePayer(50_000))
        with caplog.at_level(logging.WARNING, logger=LOGGER):
            pay(client, 2)
        assert len(low_warnings(caplog)) == 1

    def test_async(self, make_client: Make) -> None:
        seen: list[LowBalance] = []
        client, _ = make_client(asynchronous=True, payer=AsyncBalancePayer(105_000),
                                hooks=Hooks(on_low_balance=seen.append))

        async def run() -> None:
            async with client:
                assert (await client.post(URL, json={})).status_code == 200

        asyncio.run(run())
        assert [(b.balance, b.floor) for b in seen] == [(95_000, 100_000)]


def test_no_hooks_no_alert_work(make_client: Make, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without on_budget, the alert code never runs (budgets at 100 % and no payer balance)."""
    def forbidden(*args: Any) -> None:
        raise AssertionError("alert code ran without a hook")

    monkeypatch.setattr(_engine.Engine, "budget_alerts", forbidden)
    monkeypatch.setattr(_engine.Engine, "_balance_left", forbidden)
    client, shop = make_client(policy=Policy(max_per_client=20_000, max_per_day=20_000))
    with client.budget(20_000):
        pay(client, 2)
    assert len(shop.accepted) == 2 and client.spent == 20_000
