"""``mpp-claude channels``: listing a channel store and the forced-close messages (no network)."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from mpp_claude.cli import main
from mpp_claude.cli.channels import _describe, utc
from mpp_claude.client._session_reclaim import ReclaimStatus
from mpp_claude.client.channels import ChannelStore, StoredChannel
from mpp_claude.tempo.session import PayerChannel

CID = "0x" + "0a" * 32
W = "0x" + "0b" * 20
PAYEE = "0x" + "0d" * 20


def store_with_channels(path: Path) -> None:
    store = ChannelStore(path)
    channel = PayerChannel(CID, "0x" + "0c" * 20, 31337, PAYEE, "0x" + "0e" * 20, 1_000_000, 40_000)
    store.save(StoredChannel(channel, W, "https://llm.test", "/v1/chat/completions", "ab", 30_000, "open",
                             accepted=40_000), now=1.0)
    other = replace(channel, channel_id="0x" + "0f" * 32)
    store.save(StoredChannel(other, W, "https://llm.test", "/v1/chat/completions", "ab", 0, "closing",
                             close_requested_at=1_800_000_000, withdrawable_at=1_800_000_900), now=2.0)
    store.close()


def test_list_table_and_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "ledger.sqlite3"
    store_with_channels(path)
    assert main(["channels", "list", "--ledger", str(path)]) == 0
    header, first, second = capsys.readouterr().out.splitlines()
    assert header.split() == ["channel", "origin", "payee", "deposit", "accepted", "spent", "state"]
    assert first.split()[:7] == ["0x" + "0f" * 32, "https://llm.test", PAYEE, "1", "0", "0", "closing"]
    assert f"withdraw after {utc(1_800_000_900)}" in first
    assert second.split()[3:] == ["1", "0.04", "0.03", "open"]
    assert main(["channels", "list", "--ledger", str(path), "--json", "--wallet", "0x" + W[2:].upper()]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [(r["status"], r["accepted"], r["withdrawable_at"]) for r in rows] == [
        ("closing", 0, 1_800_000_900), ("open", 40_000, None)]


def test_list_without_a_store_creates_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["channels", "list", "--ledger", str(tmp_path / "none.sqlite3")]) == 0
    assert "no channels" in capsys.readouterr().err and not list(tmp_path.iterdir())


def test_close_usage_errors(tmp_path: Path) -> None:
    with pytest.raises(SystemExit) as bad:
        main(["channels", "close", "0x12"])
    assert bad.value.code == 2
    missing = str(tmp_path / "none.sqlite3")
    assert main(["channels", "close", CID, "--ledger", missing]) == 1  # not in the store


def test_forced_close_messages_say_what_and_when() -> None:
    waiting = ReclaimStatus(CID, "closing", 1_000_000, 250_000, 1_800_000_000, 1_800_000_900, None, "0xab",
                            1_800_000_000)
    text = _describe(waiting, W)
    assert "tx 0xab" in text and f"after {utc(1_800_000_900)} (in 15 min 0 s)" in text and "0.75 USD" in text
    done = replace(waiting, status="withdrawn", refunded=750_000, chain_now=1_800_001_000)
    assert _describe(done, W).startswith("withdrawn (tx 0xab): 0.75 USD refunded to " + W)
