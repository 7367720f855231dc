"""``mpp-claude wallet new|show|balance|fund`` against the devnet (in process, real chain)."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest
from eth_account import Account

from mpp_claude.cli import main
from mpp_claude.devnet import Devnet
from mpp_claude.tempo import tip20

pytestmark = pytest.mark.devnet


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, devnet: Devnet) -> Path:
    """A private user data dir and the devnet's RPC URL; no inherited MPP_* settings."""
    for key in list(os.environ):
        if key.startswith("MPP_"):
            monkeypatch.delenv(key)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    monkeypatch.setenv("MPP_RPC_URL", devnet.rpc_url)
    monkeypatch.setenv("NO_COLOR", "1")
    return tmp_path


def test_new_show_fund_balance(env: Path, devnet: Devnet, capsys: pytest.CaptureFixture[str],
                               monkeypatch: pytest.MonkeyPatch) -> None:
    """The whole wallet life on the devnet; the key never appears in any output."""
    password = env / "pw"
    password.write_text("s3cret\n")
    assert main(["-q", "wallet", "new", "--password-file", str(password), "--scrypt-n", "1024"]) == 0
    created = capsys.readouterr()
    address = created.out.strip()
    keystore = env / "data" / "mpp-claude" / "wallet.json"
    assert stat.S_IMODE(keystore.stat().st_mode) == 0o600
    key = Account.decrypt(json.loads(keystore.read_text()), "s3cret").hex().removeprefix("0x")
    assert Account.from_key(bytes.fromhex(key)).address == address
    outputs = created.out + created.err

    assert main(["wallet", "show"]) == 0
    shown = capsys.readouterr()
    assert shown.out == address + "\n"
    assert main(["wallet", "fund", "--amount", "2.5", "--json"]) == 0
    funded = capsys.readouterr()
    assert json.loads(funded.out)["balance"] == 2_500_000 == devnet.balance(address)
    assert main(["wallet", "balance", "--json"]) == 0
    balances = json.loads(capsys.readouterr().out)
    assert balances["chain_id"] == 31337 and balances["address"] == address
    assert {b["symbol"]: b["amount"] for b in balances["balances"]}["pathUSD"] == 2_500_000
    assert main(["wallet", "balance"]) == 0
    table = capsys.readouterr().out
    assert f"{address} on chain 31337" in table and "pathUSD   2.5" in table
    for text in (outputs, shown.out, shown.err, funded.out, funded.err, table):
        assert key not in text.lower()

    assert main(["wallet", "new", "--password-file", str(password)]) == 1  # never overwrites
    assert "already exists" in capsys.readouterr().err
    assert Account.decrypt(json.loads(keystore.read_text()), "s3cret").hex().removeprefix("0x") == key


def test_address_sources(env: Path, devnet: Devnet, capsys: pytest.CaptureFixture[str],
                         monkeypatch: pytest.MonkeyPatch) -> None:
    """--address beats MPP_PRIVATE_KEY; a malformed address or no wallet at all exits 1."""
    acct, other = Account.create(), Account.create()
    monkeypatch.setenv("MPP_PRIVATE_KEY", acct.key.hex())
    assert main(["wallet", "show", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == {"address": acct.address, "source": "$MPP_PRIVATE_KEY"}
    assert main(["-q", "wallet", "fund", "--address", other.address.lower(), "--amount", "1"]) == 0
    assert f"funded {other.address} with 1 pathUSD" in capsys.readouterr().out
    assert devnet.balance(other.address) == tip20.UNIT
    assert main(["wallet", "balance", "--address", "0x1234"]) == 1
    assert "not a 0x-prefixed 20-byte hex address" in capsys.readouterr().err
    monkeypatch.delenv("MPP_PRIVATE_KEY")
    assert main(["wallet", "show"]) == 1
    assert "no wallet: create one with `mpp-claude wallet new`" in capsys.readouterr().err


def test_fund_elsewhere_explains(env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """An anvil answering as the Moderato testnet (chain 42431) is not our devnet: explain, exit 1."""
    address = Account.create().address
    with Devnet.start(extra_args=("--chain-id", "42431")) as testnet:
        assert main(["wallet", "fund", "--address", address, "--rpc-url", testnet.rpc_url]) == 1
        assert testnet.balance(address) == 0
    message = capsys.readouterr().err
    assert "Tempo Moderato testnet" in message and "https://tempo.xyz/developers/api/faucet" in message
    assert address in message
