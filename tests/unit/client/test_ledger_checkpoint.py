"""WAL checkpoints of the ledger run on the background writer, not inside a reservation's commit.

SQLite's default copies the write-ahead log back into the file (with an fsync, ~15 ms on a small
VM) inside the commit that passes 1 000 log pages: every ~200th paid request waited for it.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from mpp_claude.client import _sqlite, _writebehind
from mpp_claude.client import ledger as ledger_mod
from mpp_claude.client.ledger import CHECKPOINT_EVERY, Entry, Ledger

W = "0x2c7536E3605D9C16a7a3D7b1898e529396a65c23"
NOW = 1_800_000_000.0


def entry(i: int) -> Entry:
    return Entry(W, 1, "0x20c0", 31337, "0xAB", "https://a.test", "/v1/x", request_id=f"r{i}")


def log_frames(path: Path) -> int:
    """Pages in the write-ahead log file (32-byte header, then a 24-byte header per page)."""
    db = sqlite3.connect(path)
    try:
        (page,) = db.execute("PRAGMA page_size").fetchone()
    finally:
        db.close()
    size = (path.parent / (path.name + "-wal")).stat().st_size
    return max(0, (size - 32) // (page + 24))


def test_reservations_never_checkpoint_in_their_commit(tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """With the background job held back, over 1 000 pages of log pass without a copy back into the
    file (SQLite's default checkpoints inside the commit that passes 1 000)."""
    jobs: list[Callable[[], None]] = []
    monkeypatch.setattr(_writebehind, "run_soon", jobs.append)
    path = tmp_path / "l.sqlite3"
    led = Ledger(path)
    assert led._db.execute("PRAGMA wal_autocheckpoint").fetchone()[0] == _sqlite.SAFETY_FRAMES > 5 * 1000
    db_size = path.stat().st_size
    for i in range(2 * CHECKPOINT_EVERY - 1):
        led.reserve(entry(i), now=NOW + i, max_per_day=None, max_per_minute=None)
    assert len(jobs) == 1  # asked for at the CHECKPOINT_EVERY-th write, not run here
    assert log_frames(path) > 1000  # the log only grew past SQLite's default threshold
    assert path.stat().st_size == db_size  # and nothing was copied back into the file
    led.reserve(entry(-1), now=NOW, max_per_day=None, max_per_minute=None)
    assert len(jobs) == 2
    led.close()


def test_the_background_checkpoint_lets_the_log_start_over(tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    jobs: list[Callable[[], None]] = []
    monkeypatch.setattr(_writebehind, "run_soon", jobs.append)
    path = tmp_path / "l.sqlite3"
    led = Ledger(path)
    for i in range(CHECKPOINT_EVERY):
        rid = led.reserve(entry(i), now=NOW + i, max_per_day=None, max_per_minute=None)
    (job,) = jobs
    grown = log_frames(path)
    job()  # what the writer thread runs
    led.settle(rid, reference="0xr", now=NOW, defer=False)  # the next write starts the log over
    size = (tmp_path / "l.sqlite3-wal").stat().st_size
    db = sqlite3.connect(path)
    try:
        busy, frames, done = db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
    finally:
        db.close()
    assert grown > 100 and frames < 10 and done == frames and busy == 0
    assert size > 0  # the file is reused from its start, not truncated
    assert [r.status for r in led.rows()].count("reserved") == CHECKPOINT_EVERY - 1  # nothing lost
    led.close()


def test_run_soon_runs_the_job_on_the_writer_thread() -> None:
    ran = threading.Event()
    where: list[str] = []

    def job() -> None:
        where.append(threading.current_thread().name)
        ran.set()

    _writebehind.run_soon(job)
    assert ran.wait(5)
    assert where == ["mpp-claude-ledger-writer"]


def test_a_failing_job_is_logged_and_the_thread_goes_on(caplog: pytest.LogCaptureFixture) -> None:
    after = threading.Event()

    def bad() -> None:
        raise RuntimeError("boom")

    with caplog.at_level(logging.ERROR, logger="mpp_claude.client.ledger"):
        _writebehind.run_soon(bad)
        _writebehind.run_soon(after.set)
        assert after.wait(5)
    assert "background job failed" in caplog.text


def test_a_checkpoint_of_a_removed_file_does_not_create_it(tmp_path: Path,
                                                           caplog: pytest.LogCaptureFixture) -> None:
    """A checkpoint queued before its ledger's directory was removed (a temporary one, after the
    client closed) neither creates the file again nor warns: there is no log left to copy."""
    gone = tmp_path / "gone.sqlite3"
    with caplog.at_level(logging.DEBUG, logger="mpp_claude.client.ledger"):
        _sqlite.checkpoint(gone)
    assert not gone.exists()
    assert [r.levelno for r in caplog.records] == [logging.DEBUG] and "removed" in caplog.text


def test_a_failing_checkpoint_of_an_existing_file_warns(tmp_path: Path,
                                                        caplog: pytest.LogCaptureFixture) -> None:
    broken = tmp_path / "broken.sqlite3"
    broken.write_bytes(b"this is not an SQLite database, but it is here" * 100)
    with caplog.at_level(logging.WARNING, logger="mpp_claude.client.ledger"):
        _sqlite.checkpoint(broken)
    assert "WAL checkpoint failed" in caplog.text


def test_every_kind_of_write_is_counted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """reserve, the deferred and the direct settle, mark_signed/unknown, release and refund."""
    counted: list[int] = []
    real = Ledger._wrote

    def spy(self: Ledger, n: int = 1) -> None:
        counted.append(n)
        real(self, n)

    monkeypatch.setattr(ledger_mod.Ledger, "_wrote", spy)
    led = Ledger(tmp_path / "l.sqlite3")
    a = led.reserve(entry(1), now=NOW, max_per_day=None, max_per_minute=None)
    b = led.reserve(entry(2), now=NOW, max_per_day=None, max_per_minute=None)
    led.mark_signed(a, tx_hash="0xa", valid_before=1, now=NOW)
    led.mark_unknown(a, error="lost", now=NOW)
    led.settle(a, reference="0xr", now=NOW)
    led.settle(b, reference="0xs", now=NOW, defer=True)
    led.flush()
    c = led.reserve(entry(3), now=NOW, max_per_day=None, max_per_minute=None)
    led.release(c, error="declined", now=NOW)
    led.refund(W, "0xr", 1, error="closed", now=NOW)
    assert len(counted) == 9
    led.close()
