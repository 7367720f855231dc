"""The spend report (``mpp-claude spend``) and its CLI subcommand."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest

from mpp_claude.cli import main
from mpp_claude.client.ledger import Entry, Ledger
from mpp_claude.client.report import spend_report

W = "0x2c7536E3605D9C16a7a3D7b1898e529396a65c23"


@pytest.fixture
def ledger_path(tmp_path: Path) -> Path:
    path = tmp_path / "ledger.sqlite3"
    led = Ledger(path)
    a = led.reserve(Entry(W, 10_000, "0x20c0000000000000000000000000000000000000", 31337, "0xab", "https://p.test",
                          "/v1/chat/completions", model="claude-haiku-4-5"), now=1_800_000_000.0,
                    max_per_day=None, max_per_minute=None)
    led.mark_signed(a, tx_hash="0x" + "12" * 32, valid_before=1, now=1_800_000_001.0)
    led.settle(a, reference="0x" + "12" * 32, now=1_800_000_002.0)
    b = led.reserve(Entry(W, 5, "0x20c0000000000000000000000000000000000000", 31337, "0xab", "https://p.test",
                          "/v1/x"), now=1_800_000_010.0, max_per_day=None, max_per_minute=None)
    led.release(b, error="approval callback declined", now=1_800_000_011.0)
    led.close()
    return path


def test_table(ledger_path: Path) -> None:
    out = spend_report(ledger_path)
    lines = out.splitlines()
    assert lines[0].split()[:4] == ["id", "created", "status", "amount"]
    assert all(word in lines[1].split() for word in ("settled", "0.01", "pathUSD", "claude-haiku-4-5"))
    assert "released" in lines[2]
    assert lines[3] == "2 row(s); 1 counted against budgets, total 0.01"
    # then the totals per day, model and origin; the released row counts nowhere
    assert lines[5:8] == ["totals per day (UTC)", "day         payments  amount  token",
                          "2027-01-15  1         0.01    pathUSD"]
    assert "claude-haiku-4-5  1         0.01    pathUSD" in lines
    assert lines[-1] == "https://p.test  1         0.01    pathUSD"


def test_totals_by_group(ledger_path: Path) -> None:
    """--by day|model|origin: only the totals; several days and models sum apart; released rows never."""
    led = Ledger(ledger_path)
    for when, model, amount in ((1_800_086_400.0, "claude-haiku-4-5", 7), (1_800_086_500.0, None, 3),
                                (1_800_086_600.0, "claude-haiku-4-5", 2)):
        led.reserve(Entry(W, amount, "0x20c0000000000000000000000000000000000000", 31337, "0xab",
                          "https://q.test", "/v1/chat/completions", model=model), now=when,
                    max_per_day=None, max_per_minute=None)
    led.close()
    days = json.loads(spend_report(ledger_path, fmt="json", by="day"))
    assert days == [{"day": "2027-01-15", "payments": 1, "amount": 10_000, "currency": "pathUSD"},
                    {"day": "2027-01-16", "payments": 3, "amount": 12, "currency": "pathUSD"}]
    models = list(csv.DictReader(io.StringIO(spend_report(ledger_path, fmt="csv", by="model"))))
    assert [(m["model"], m["payments"], m["amount"]) for m in models] == [
        ("(none)", "1", "3"), ("claude-haiku-4-5", "3", "10009")]
    table = spend_report(ledger_path, by="origin").splitlines()
    assert table == ["origin          payments  amount    token",
                     "https://p.test  1         0.01      pathUSD",
                     "https://q.test  3         0.000012  pathUSD"]
    assert json.loads(spend_report(ledger_path.with_name("none.sqlite3"), fmt="json", by="model")) == []


def test_json_and_csv(ledger_path: Path) -> None:
    rows = json.loads(spend_report(ledger_path, fmt="json"))
    assert [r["status"] for r in rows] == ["settled", "released"] and rows[0]["amount"] == 10_000
    parsed = list(csv.DictReader(io.StringIO(spend_report(ledger_path, fmt="csv"))))
    assert parsed[0]["tx_hash"] == "0x" + "12" * 32 and parsed[1]["error"] == "approval callback declined"


def test_filters_and_missing_file(ledger_path: Path, tmp_path: Path) -> None:
    assert json.loads(spend_report(ledger_path, fmt="json", since=1_800_000_005.0))[0]["amount"] == 5
    assert json.loads(spend_report(ledger_path, fmt="json", wallet="0xother")) == []
    assert json.loads(spend_report(tmp_path / "none.sqlite3", fmt="json")) == []


def test_cli(ledger_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["spend", "--ledger", str(ledger_path), "--json"]) == 0
    assert len(json.loads(capsys.readouterr().out)) == 2
    assert main(["spend", "--ledger", str(ledger_path), "--csv"]) == 0
    assert capsys.readouterr().out.startswith("id,wallet,status")
    assert main(["spend", "--ledger", str(ledger_path)]) == 0
    assert "total 0.01" in capsys.readouterr().out
