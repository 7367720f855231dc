"""The SQLite ledger: atomic reservations, row life cycle, persistence, and 8 processes sharing
one file never passing the daily cap together."""

from __future__ import annotations

import multiprocessing
import os
import time
from pathlib import Path
from typing import Any

import pytest
from _old_ledger import downgrade

from mpp_claude.client.ledger import Entry, Ledger, MemoryLedger
from mpp_claude.errors import BudgetExceeded

W = "0x2c7536E3605D9C16a7a3D7b1898e529396a65c23"
NOW = 1_800_000_000.0


def entry(amount: int = 100, **kw: object) -> Entry:
    base: dict[str, object] = {"wallet": W, "amount": amount, "currency": "0x20c0", "chain_id": 31337,
                               "payee": "0xAB", "origin": "https://a.test", "path": "/v1/x"}
    base.update(kw)
    return Entry(**base)  # type: ignore[arg-type]


@pytest.fixture(params=["sqlite", "memory"])
def ledger(request: pytest.FixtureRequest, tmp_path: Path) -> Ledger | MemoryLedger:
    return Ledger(tmp_path / "l.sqlite3") if request.param == "sqlite" else MemoryLedger()


class TestReserve:
    def test_daily_cap_counts_held_rows_and_forgets_old_ones(self, ledger: Ledger | MemoryLedger) -> None:
        """Reserved/signed/settled/unknown count for 24 h; released rows never do."""
        a = ledger.reserve(entry(400), now=NOW, max_per_day=1000, max_per_minute=None)
        b = ledger.reserve(entry(400), now=NOW, max_per_day=1000, max_per_minute=None)
        ledger.mark_signed(a, tx_hash="0x1", valid_before=1, now=NOW)
        ledger.mark_unknown(b, error="lost", now=NOW)
        with pytest.raises(BudgetExceeded) as info:
            ledger.reserve(entry(201), now=NOW, max_per_day=1000, max_per_minute=None)
        assert (info.value.limit, info.value.limit_value, info.value.requested) == ("max_per_day", 1000, 201)
        ledger.release(b, error="not mined", now=NOW)
        ledger.reserve(entry(600), now=NOW, max_per_day=1000, max_per_minute=None)
        ledger.reserve(entry(1000), now=NOW + 86_460, max_per_day=1000, max_per_minute=None)

    def test_window_edge_errs_on_the_safe_side(self, ledger: Ledger | MemoryLedger) -> None:
        """A payment still counts 24 h after it was made, and is gone one minute later."""
        ledger.reserve(entry(1000), now=NOW + 30, max_per_day=1000, max_per_minute=None)
        with pytest.raises(BudgetExceeded):
            ledger.reserve(entry(1), now=NOW + 30 + 86_399, max_per_day=1000, max_per_minute=None)
        ledger.reserve(entry(1000), now=NOW + 30 + 86_400 + 60, max_per_day=1000, max_per_minute=None)
        assert ledger.day_spent(W, now=NOW + 30 + 86_400 + 60) == 1000

    def test_rate_limit(self, ledger: Ledger | MemoryLedger) -> None:
        for i in range(3):
            ledger.reserve(entry(1), now=NOW + i, max_per_day=None, max_per_minute=3)
        with pytest.raises(BudgetExceeded) as info:
            ledger.reserve(entry(1), now=NOW + 10, max_per_day=None, max_per_minute=3)
        assert info.value.limit == "max_per_minute"
        ledger.reserve(entry(1), now=NOW + 61, max_per_day=None, max_per_minute=3)

    def test_other_wallets_do_not_count(self, ledger: Ledger | MemoryLedger) -> None:
        ledger.reserve(entry(1000), now=NOW, max_per_day=1000, max_per_minute=None)
        ledger.reserve(entry(1000, wallet="0xother"), now=NOW, max_per_day=1000, max_per_minute=None)

    def test_row_life_cycle_and_pins(self, ledger: Ledger | MemoryLedger) -> None:
        rid = ledger.reserve(entry(5, model="claude", request_id="k1", challenge_id="c1"), now=NOW,
                             max_per_day=None, max_per_minute=None)
        ledger.mark_signed(rid, tx_hash="0xabc", valid_before=123, now=NOW + 1)
        ledger.settle(rid, reference="0xabc", now=NOW + 2)
        (row,) = ledger.rows()
        assert (row.status, row.tx_hash, row.reference, row.model, row.request_id) == (
            "settled", "0xabc", "0xabc", "claude", "k1")
        assert ledger.pinned_payee(W, "https://a.test") == "0xab"
        assert ledger.pinned_payee(W, "https://b.test") is None
        assert ledger.spent(W, since=NOW - 1) == 5
        assert ledger.rows(status=("released",)) == []

    def test_outcome_records_the_transaction(self, ledger: Ledger | MemoryLedger) -> None:
        """settle/mark_unknown write the signed transaction with the outcome; None keeps it."""
        a = ledger.reserve(entry(5), now=NOW, max_per_day=None, max_per_minute=None)
        b = ledger.reserve(entry(5), now=NOW, max_per_day=None, max_per_minute=None)
        ledger.settle(a, reference="0xref", now=NOW + 1, tx_hash="0xa", valid_before=1234)
        ledger.mark_unknown(b, error="lost", now=NOW + 1, tx_hash="0xb", valid_before=99)
        ledger.settle(b, reference="0xb", now=NOW + 2)
        rows = ledger.rows()
        assert [(r.status, r.tx_hash, r.valid_before, r.reference) for r in rows] == [
            ("settled", "0xa", 1234, "0xref"), ("settled", "0xb", 99, "0xb")]

    def test_pins_and_old_buckets_with_a_second_handle(self, tmp_path: Path) -> None:
        """Skipping known pins and pruning once a minute changes nothing another handle sees."""
        one, two = Ledger(tmp_path / "l.sqlite3"), Ledger(tmp_path / "l.sqlite3")
        one.reserve(entry(5, payee="0xAB"), now=NOW, max_per_day=100, max_per_minute=None)
        two.reserve(entry(5, payee="0xCD"), now=NOW + 1, max_per_day=100, max_per_minute=None)
        one.reserve(entry(5, payee="0xEF"), now=NOW + 2, max_per_day=100, max_per_minute=None)
        assert one.pinned_payee(W, "https://a.test") == two.pinned_payee(W, "https://a.test") == "0xab"
        later = NOW + 2 * 86_400
        two.reserve(entry(100), now=later, max_per_day=100, max_per_minute=None)
        assert one.day_spent(W, now=later) == two.day_spent(W, now=later) == 100
        with pytest.raises(BudgetExceeded):
            one.reserve(entry(1), now=later, max_per_day=100, max_per_minute=None)


def test_opening_an_old_file_backfills_the_buckets(tmp_path: Path) -> None:
    """A ledger written before the minute buckets existed keeps its 24 h total after the upgrade."""
    path = tmp_path / "old.sqlite3"
    led = Ledger(path)
    led.reserve(entry(600), now=NOW, max_per_day=None, max_per_minute=None)
    led.close()
    downgrade(path, drop_table="spend_minutes", version=0)
    again = Ledger(path)
    assert again.day_spent(W, now=NOW + 10) == 600
    with pytest.raises(BudgetExceeded):
        again.reserve(entry(401), now=NOW + 10, max_per_day=1000, max_per_minute=None)


def test_persists_across_reopen(tmp_path: Path) -> None:
    """The rolling 24 h budget survives a restart (a new Ledger on the same file)."""
    path = tmp_path / "l.sqlite3"
    first = Ledger(path)
    first.reserve(entry(900), now=NOW, max_per_day=1000, max_per_minute=None)
    first.close()
    again = Ledger(path)
    with pytest.raises(BudgetExceeded):
        again.reserve(entry(101), now=NOW + 10, max_per_day=1000, max_per_minute=None)
    assert os.stat(path).st_mode & 0o777 == 0o600


def _worker(path: str, out: Any) -> None:
    led = Ledger(path)
    ok = 0
    for _ in range(40):
        try:
            led.reserve(Entry("0xW", 7, "t", 1, "p", "o", "/"), now=time.time(), max_per_day=1000,
                        max_per_minute=None)
            ok += 1
        except BudgetExceeded:
            pass
    out.put(ok)


@pytest.mark.filterwarnings("ignore:.*fork.*:DeprecationWarning")  # 3.12+: fork with threads alive
def test_eight_processes_never_pass_the_cap_together(tmp_path: Path) -> None:
    """8 processes x 40 attempts of 7 units against a 1000 cap: exactly 142 succeed in total."""
    path = str(tmp_path / "shared.sqlite3")
    Ledger(path).close()
    ctx = multiprocessing.get_context("fork")  # forked children skip re-importing openai
    out = ctx.Queue()
    procs = [ctx.Process(target=_worker, args=(path, out)) for _ in range(8)]
    for p in procs:
        p.start()
    counts = [out.get(timeout=120) for _ in procs]
    for p in procs:
        p.join(timeout=30)
    assert all(p.exitcode == 0 for p in procs)
    assert sum(counts) == 1000 // 7
    assert Ledger(path).spent("0xW", since=0) == 994
