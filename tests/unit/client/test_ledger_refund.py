"""Session bookkeeping in the ledger: a voucher row written settled in one write, and the refund of
what a finalised channel's vouchers authorised beyond what the payee was paid."""

from __future__ import annotations

from pathlib import Path

import pytest
from _old_ledger import downgrade

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
    # a channel is refunded once: a second call gives back nothing
    assert ledger.refund(W, CID, 10_000, error="again", now=NOW + 2) == 0
    assert ledger.day_spent(W, now=NOW + 2) == 1149


def test_refund_gives_back_only_what_the_rows_still_count(ledger: Ledger | MemoryLedger) -> None:
    for amount in (100, 50):
        ledger.reserve(entry(amount), now=NOW, max_per_day=None, max_per_minute=None, status="settled",
                       reference=CID)
    assert ledger.refund(W, CID, 10_000, error="channel finalised", now=NOW + 1) == 150
    assert ledger.day_spent(W, now=NOW + 1) == 0
    assert {r.status for r in ledger.rows(wallet=W)} == {"released"}


def test_refund_once_per_wallet_and_reference(ledger: Ledger | MemoryLedger) -> None:
    other = "0x" + "cd" * 32
    for ref in (CID, other):
        ledger.reserve(entry(100), now=NOW, max_per_day=None, max_per_minute=None, status="settled",
                       reference=ref)
    assert ledger.refund(W, CID, 0, error="channel finalised", now=NOW + 1) == 0  # nothing over: marked
    assert ledger.refund(W, CID, 60, error="channel finalised", now=NOW + 2) == 0
    assert ledger.refund(W, other, 60, error="channel finalised", now=NOW + 2) == 60
    assert ledger.day_spent(W, now=NOW + 2) == 140


def _refund_in_a_process(path: str, start: object, out: object) -> None:
    led = Ledger(path)
    start.wait()  # type: ignore[attr-defined]
    out.put(led.refund(W, CID, 250, error="channel finalised", now=NOW + 1))  # type: ignore[attr-defined]
    led.close()


def test_processes_finalising_one_channel_at_once_refund_it_once(tmp_path: Path) -> None:
    """Two or more processes recording one channel's finalisation together (each saw it open) give
    its over-authorised part back once in total, not once each."""
    import multiprocessing

    path = tmp_path / "l.sqlite3"
    led = Ledger(path)
    for amount in (200, 200, 200):
        led.reserve(entry(amount), now=NOW, max_per_day=None, max_per_minute=None, status="settled",
                    reference=CID)
    ctx = multiprocessing.get_context("spawn")
    start, out = ctx.Event(), ctx.Queue()
    procs = [ctx.Process(target=_refund_in_a_process, args=(str(path), start, out)) for _ in range(4)]
    for p in procs:
        p.start()
    start.set()
    got = sorted(out.get(timeout=60) for _ in procs)
    for p in procs:
        p.join(30)
    assert got == [0, 0, 0, 250]
    assert led.day_spent(W, now=NOW + 2) == 350
    led.close()


def test_an_old_file_keeps_its_whole_refunds(tmp_path: Path) -> None:
    """Opening a version-1 ledger marks the channels whose rows a finalisation released."""
    path = tmp_path / "old.sqlite3"
    led = Ledger(path)
    for amount in (100, 100):
        led.reserve(entry(amount), now=NOW, max_per_day=None, max_per_minute=None, status="settled",
                    reference=CID)
    why = "channel finalised with 100 settled to the payee"
    assert led.refund(W, CID, 100, error=why, now=NOW + 1) == 100
    led.close()
    downgrade(path, drop_table="refunds", version=1)
    again = Ledger(path)
    assert again.refund(W, CID, 100, error="channel finalised", now=NOW + 2) == 0
    assert again.day_spent(W, now=NOW + 2) == 100
