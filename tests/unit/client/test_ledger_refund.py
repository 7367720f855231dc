"""Session bookkeeping in the ledger: a voucher row written settled in one write, and the refund of
what a finalised channel's vouchers authorised beyond what the payee was paid."""

from __future__ import annotations

from pathlib import Path

import pytest

from mpp_claude.client.ledger import Entry, Ledger, MemoryLedger

W = "0x2c7536e3605d9c16a7a3d7b1898e529396a65c23"
CID = "0x" + "ab" * 32
NOW = 1_800_000_000.0


def entry(amount: int) -> Entry:
    return Entry(W, amount, "0x20c0", 31337, "0xab", "https://a.test", "/v1/x")


@pytest.fixture(params=["sqlite", "memory"])
def ledger(request: pytest.FixtureRequest, tmp_path: Path) -> Ledger | MemoryLedger:
    return Ledger(tmp_path / "l.sqlite3") if request.param == "sqlite" else MemoryLedger()


def test_settled_row_in_one_write(ledger: Ledger | MemoryLedger) -> None:
    row_id = ledger.reserve(entry(50), now=NOW, max_per_day=None, max_per_minute=None, status="settled",
                            reference=CID)
    (row,) = ledger.rows(wallet=W)
    assert (row.id, row.status, row.reference, row.amount) == (row_id, "settled", CID, 50)
    with pytest.raises(ValueError):
        ledger.reserve(entry(1), now=NOW, max_per_day=None, max_per_minute=None, status="unknown")


def test_refund_newest_first_whole_then_part(ledger: Ledger | MemoryLedger) -> None:
    for amount in (100, 200, 300):
        ledger.reserve(entry(amount), now=NOW, max_per_day=None, max_per_minute=None, status="settled",
                       reference=CID)
    ledger.reserve(entry(999), now=NOW, max_per_day=None, max_per_minute=None, status="settled",
                   reference="0x" + "cd" * 32)
    assert ledger.day_spent(W, now=NOW) == 1599
    assert ledger.refund(W, CID, 450, error="channel finalised", now=NOW + 1) == 450
    rows = {r.amount: r.status for r in ledger.rows(wallet=W)}
    assert rows == {100: "settled", 50: "settled", 300: "released", 999: "settled"}
    assert ledger.day_spent(W, now=NOW + 1) == 1149
    # more than is left: gives back only what the channel's rows still count
    assert ledger.refund(W, CID, 10_000, error="again", now=NOW + 2) == 150
    assert ledger.day_spent(W, now=NOW + 2) == 999
    assert ledger.refund(W, CID, 5, error="nothing left", now=NOW + 3) == 0
