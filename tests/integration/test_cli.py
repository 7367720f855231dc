"""``mpp-claude chat`` / ``quote`` / ``spend`` against the reference server on the devnet.

The CLI runs in a subprocess (as a user runs it) against a server started here with
``serve_in_thread``; every paid case is checked on chain (payer and payee balances).  The
wallet subcommands are in test_cli_wallet.py; parsing and formatting in tests/unit/cli/.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from eth_account import Account

from mpp_claude.cli import main
from mpp_claude.client import Wallet
from mpp_claude.client.ledger import Ledger
from mpp_claude.devnet import Devnet
from mpp_claude.server.app import create_app
from mpp_claude.server.background import serve_in_thread
from mpp_claude.server.config import build_config
from mpp_claude.tempo import tip20

pytestmark = pytest.mark.devnet

PROMPT = "hello from the command line"
MODEL = "claude-haiku-4-5"


class Setup:
    def __init__(self, net: Devnet, url: str, payee: str, workdir: Path) -> None:
        self.net, self.url, self.payee, self.workdir = net, url, payee, workdir

    def env(self, **extra: str) -> dict[str, str]:
        """A clean environment: no inherited MPP_* settings, a private user data dir, no colours."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("MPP_")}
        env.update(XDG_DATA_HOME=str(self.workdir / "data"), NO_COLOR="1", MPP_RPC_URL=self.net.rpc_url,
                   MPP_CLAUDE_URL=self.url, **extra)
        return env

    def cli(self, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "mpp_claude.cli", *args], env=self.env(**env),
                              capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)


@pytest.fixture(scope="module")
def setup(devnet: Devnet, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    payee = Account.create().address
    config = build_config(flags={"realm": "localhost", "recipient": payee, "rpc_url": devnet.rpc_url,
                                 "chain_id": devnet.chain_id, "upstream": "local", "store": "memory://",
                                 "secret_key": secrets.token_hex(32)})
    with serve_in_thread(create_app(config)) as url:
        yield Setup(devnet, url, payee, tmp_path_factory.mktemp("cli"))


def quote(setup: Setup, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
          *args: str) -> dict[str, Any]:
    """``mpp-claude quote --json`` in this process (no wallet needed)."""
    for key, value in setup.env().items():
        monkeypatch.setenv(key, value)
    capsys.readouterr()
    assert main(["quote", "--json", "--model", MODEL, *args, PROMPT]) == 0
    result: dict[str, Any] = json.loads(capsys.readouterr().out)
    assert result["free"] is False and result["payee"].lower() == setup.payee.lower()
    return result


def test_chat_above_max_price_exits_3_and_pays_nothing(setup: Setup, capsys: pytest.CaptureFixture[str],
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """The acceptance case: --max-price below the quote names the limit and the price, pays nothing."""
    price = quote(setup, capsys, monkeypatch)["amount"]
    acct = setup.net.new_funded_account(5 * tip20.UNIT)
    payer_before, payee_before = setup.net.balance(acct.address), setup.net.balance(setup.payee)
    limit = tip20.to_display(price - 1)
    ledger = setup.workdir / "declined.sqlite3"
    done = setup.cli("chat", "--model", MODEL, "--max-price", str(limit), "--ledger", str(ledger), PROMPT,
                     MPP_PRIVATE_KEY=acct.key.hex())
    assert done.returncode == 3, done.stderr
    assert done.stdout == ""
    price_text = format(tip20.to_display(price), "f").rstrip("0")
    assert f"the price {price_text} USD" in done.stderr
    assert f"--max-price (max_payment) of {format(limit, 'f').rstrip('0')} USD" in done.stderr
    assert "nothing was paid" in done.stderr
    setup.net.mine()
    assert setup.net.balance(acct.address) == payer_before
    assert setup.net.balance(setup.payee) == payee_before
    led = Ledger(ledger)
    try:
        assert [r.status for r in led.rows()] == []  # declined before the ledger reserved anything
    finally:
        led.close()


def test_chat_pays_the_quoted_price_and_prints_answer_and_cost(setup: Setup, tmp_path: Path,
                                                                capsys: pytest.CaptureFixture[str],
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """Keystore wallet; the price paid is the quote; answer on stdout, cost on stderr; spend sees it."""
    price = quote(setup, capsys, monkeypatch)["amount"]
    keystore, password = tmp_path / "wallet.json", tmp_path / "password"
    password.write_text("correct horse\n")
    wallet = Wallet.create(keystore, "correct horse", iterations=1024)
    setup.net.fund(wallet.address, 5 * tip20.UNIT)
    payee_before = setup.net.balance(setup.payee)
    ledger = tmp_path / "ledger.sqlite3"
    done = setup.cli("chat", "--model", MODEL, "--keystore", str(keystore), "--password-file", str(password),
                     "--max-price", "0.05", "--ledger", str(ledger), PROMPT)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith('You said "hello from the command line"')
    assert f"paid {tip20.to_display(price).normalize():f} pathUSD to {setup.payee.lower()}" in done.stderr
    assert setup.net.balance(setup.payee) == payee_before + price
    assert setup.net.balance(wallet.address) <= 5 * tip20.UNIT - price  # amount + network fee

    capsys.readouterr()
    assert main(["spend", "--ledger", str(ledger), "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [(r["status"], r["amount"], r["model"], r["wallet"]) for r in rows] == [
        ("settled", price, MODEL, wallet.address)]
    assert main(["spend", "--ledger", str(ledger), "--by", "origin", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == [
        {"origin": setup.url, "payments": 1, "amount": price, "currency": "pathUSD"}]


def test_chat_stream_json_with_env_key(setup: Setup, tmp_path: Path) -> None:
    """--stream --json with MPP_PRIVATE_KEY: one JSON object; the payment is mined on chain."""
    acct = setup.net.new_funded_account(5 * tip20.UNIT)
    done = setup.cli("chat", "--stream", "--json", "--model", MODEL, "--max-tokens", "64",
                     "--ledger", str(tmp_path / "l.sqlite3"), PROMPT, MPP_PRIVATE_KEY=acct.key.hex())
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["answer"].startswith("You said") and result["finish_reason"] == "stop"
    assert result["usage"]["completion_tokens"] > 0
    mined = setup.net.rpc.receipt(result["payment"]["tx_hash"])
    assert mined is not None and int(mined["status"], 16) == 1
    assert acct.key.hex().removeprefix("0x") not in done.stdout + done.stderr


def test_failures_exit_1_without_paying(setup: Setup, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """Unknown model (server 404 before any 402), unreachable server, no RPC: exit 1, one line."""
    acct = setup.net.new_funded_account(tip20.UNIT)
    for key, value in setup.env(MPP_PRIVATE_KEY=acct.key.hex()).items():
        monkeypatch.setenv(key, value)
    before = setup.net.balance(acct.address)
    ledger = str(tmp_path / "l.sqlite3")
    assert main(["-q", "chat", "--model", "no-such-model", "--ledger", ledger, PROMPT]) == 1
    assert "the server answered 404: The model `no-such-model` does not exist" in capsys.readouterr().err
    monkeypatch.setenv("MPP_PRIVATE_KEY", acct.key.hex())  # the CLI removed it after reading
    assert main(["-q", "chat", "--url", "http://127.0.0.1:9", "--ledger", ledger, PROMPT]) == 1
    assert "the request failed" in capsys.readouterr().err
    monkeypatch.delenv("MPP_RPC_URL")
    assert main(["quote", PROMPT]) == 1
    assert "a Tempo RPC endpoint is needed" in capsys.readouterr().err
    assert setup.net.balance(acct.address) == before
