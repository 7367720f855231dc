"""The deferred outcome write (``settle(defer=True)``): read-your-writes in the process, visible to
other connections after ``flush``/``close``, failures logged and counted instead of raised later."""

from __future__ import annotations

import logging
import sqlite3
import threading
from pathlib import Path
from typing import Any

import pytest
from _shop import ORIGIN, Shop

from mpp_claude.client import _writebehind
from mpp_claude.client.ledger import Entry, Ledger, MemoryLedger

W = "0x2c7536E3605D9C16a7a3D7b1898e529396a65c23"
NOW = 1_800_000_000.0


def entry(amount: int = 100) -> Entry:
    return Entry(W, amount, "0x20c0", 31337, "0xAB", "https://a.test", "/v1/x")


def raw_status(path: Path) -> list[str]:
    """Statuses as a connection outside this module's write-behind sees them (another process)."""
    db = sqlite3.connect(path)
    try:
        return [s for (s,) in db.execute("SELECT status FROM payments ORDER BY id")]
    finally:
        db.close()


def test_every_read_sees_the_deferred_write(tmp_path: Path) -> None:
    """rows/spent/day_spent/pinned_payee and a second handle on the same file see ``settled``."""
    led = Ledger(tmp_path / "l.sqlite3")
    rid = led.reserve(entry(5), now=NOW, max_per_day=None, max_per_minute=None)
    for i in range(20):  # repeated: the reads must not depend on the writer thread's timing
        led.settle(rid, reference=f"0xref{i}", now=NOW + 1, tx_hash="0xa", valid_before=77, defer=True)
        (row,) = led.rows()
        assert (row.status, row.reference, row.tx_hash, row.valid_before) == (
            "settled", f"0xref{i}", "0xa", 77)
        led.settle(rid, reference=f"0xsecond{i}", now=NOW + 1, defer=True)
        assert [r.reference for r in Ledger(tmp_path / "./l.sqlite3").rows()] == [f"0xsecond{i}"]
    assert led.spent(W, since=NOW - 1) == led.day_spent(W, now=NOW) == 5
    assert led not in _writebehind.WAITING
    assert led.failed_writes == 0


def test_flush_and_close_make_it_visible_to_other_processes(tmp_path: Path) -> None:
    path = tmp_path / "l.sqlite3"
    led = Ledger(path)
    a = led.reserve(entry(), now=NOW, max_per_day=None, max_per_minute=None)
    b = led.reserve(entry(), now=NOW, max_per_day=None, max_per_minute=None)
    led.settle(a, reference="0xa", now=NOW, defer=True)
    led.flush()
    assert raw_status(path)[0] == "settled"
    led.settle(b, reference="0xb", now=NOW, defer=True)
    led.close()
    assert raw_status(path) == ["settled", "settled"]


def test_a_failed_deferred_write_is_logged_and_counted_never_raised_later(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Another process holds the write lock past the busy timeout: the row stays ``reserved``
    (counted), the failure is logged with its row and transaction, and later calls work."""
    path = tmp_path / "l.sqlite3"
    led = Ledger(path, busy_timeout=0.05)
    rid = led.reserve(entry(40), now=NOW, max_per_day=100, max_per_minute=None)
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    with caplog.at_level(logging.ERROR, logger="mpp_claude.client.ledger"):
        led.settle(rid, reference="0xref", now=NOW + 1, tx_hash="0xfeed", defer=True)
        led.flush()  # waits for the writer thread, or applies the write itself
    other.execute("ROLLBACK")
    other.close()
    assert led.failed_writes == 1
    (record,) = [r for r in caplog.records if r.name == "mpp_claude.client.ledger"]
    assert f"row {rid}" in record.getMessage() and "0xfeed" in record.getMessage()
    assert "locked" in record.getMessage()
    led.reserve(entry(60), now=NOW + 2, max_per_day=100, max_per_minute=None)  # no error from before
    assert [r.status for r in led.rows()] == ["reserved", "reserved"]  # still counted: the safe side
    assert led.day_spent(W, now=NOW + 2) == 100


def test_memory_ledger_writes_at_once() -> None:
    led = MemoryLedger()
    rid = led.reserve(entry(), now=NOW, max_per_day=None, max_per_minute=None)
    led.settle(rid, reference="0xa", now=NOW, defer=True)
    assert led.rows()[0].status == "settled"
    led.flush()


def test_a_paid_call_reads_settled_at_once_and_after_close(make_client: Any, tmp_path: Path) -> None:
    """The client settles its row in the background; its own reads and, after ``close()``, any
    other connection see ``settled`` with the transaction."""
    path = tmp_path / "l.sqlite3"
    client, _ = make_client(ledger=path)
    for _ in range(3):
        r = client.post(ORIGIN + "/v1/chat/completions", json={"model": "m"})
        assert r.status_code == 200
        assert client.ledger.rows()[-1].status == "settled"
    assert {r.tx_hash is not None for r in client.ledger.rows()} == {True}
    client.close()
    assert raw_status(path) == ["settled"] * 3


def test_the_fallback_thread_applies_it_after_the_delay(tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """Nobody touches the ledger again: the background thread writes it (other processes see it)."""
    monkeypatch.setattr(_writebehind, "DELAY", 0.01)
    path = tmp_path / "l.sqlite3"
    led = Ledger(path)
    rid = led.reserve(entry(), now=NOW, max_per_day=None, max_per_minute=None)
    led.settle(rid, reference="0xa", now=NOW, defer=True)
    event = threading.Event()
    for _ in range(500):
        if raw_status(path) == ["settled"]:
            break
        event.wait(0.01)
    assert raw_status(path) == ["settled"]
    assert led not in _writebehind.WAITING


def test_while_waiting_applies_it_and_skips_a_ledger_busy_elsewhere(tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_writebehind, "submit", lambda owner: None)  # only while_waiting applies it
    path = tmp_path / "l.sqlite3"
    led = Ledger(path)
    rid = led.reserve(entry(), now=NOW, max_per_day=None, max_per_minute=None)
    led.settle(rid, reference="0xa", now=NOW, defer=True)
    with led._lock:  # another thread inside the ledger: not waited for
        _writebehind.while_waiting()
    assert raw_status(path) == ["reserved"]
    _writebehind.while_waiting()
    assert raw_status(path) == ["settled"]
    assert led not in _writebehind.WAITING


class _BadReceiptShop(Shop):
    """Answers a paid request with a malformed Payment-Receipt."""

    def __call__(self, request: Any) -> Any:
        response = super().__call__(request)
        if "payment-receipt" in response.headers:
            response.headers["payment-receipt"] = "!!!"
        return response


def test_a_malformed_receipt_is_logged_and_the_row_keeps_our_tx(
        make_client: Any, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """The receipt is parsed when the outcome is written: the response is delivered, the row is
    settled with our transaction's hash as reference, and the bad receipt is logged."""
    client, _ = make_client(ledger=tmp_path / "l.sqlite3", shop=_BadReceiptShop())
    with caplog.at_level(logging.WARNING, logger="mpp_claude.client"):
        r = client.post(ORIGIN + "/v1/chat/completions", json={"model": "m"})
        assert r.status_code == 200
        (row,) = client.ledger.rows()
    paid = client.last_receipt
    assert paid is not None and paid.receipt_header == "!!!"
    assert paid.receipt is None and paid.receipt_error and paid.reference == paid.tx_hash
    assert (row.status, row.reference, row.tx_hash) == ("settled", paid.tx_hash, paid.tx_hash)
    assert any("no valid Payment-Receipt" in rec.getMessage() for rec in caplog.records)
    client.close()
