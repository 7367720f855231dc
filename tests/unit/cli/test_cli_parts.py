"""The CLI's parts without a network: parsing, exit codes, terminal output, keys, URLs.

The commands against a real server and chain are in tests/integration/test_cli*.py.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import stat
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from eth_account import Account

from mpp_claude.cli import build_parser, main
from mpp_claude.cli._keys import keystore_address, load_wallet, read_password, resolve_address
from mpp_claude.cli._net import rpc_url, server_url
from mpp_claude.cli._term import Progress, colour_on, paint
from mpp_claude.errors import BudgetExceeded, ConfigError, OriginNotAllowed

COMMANDS = [["devnet"], ["serve"], ["wallet"], ["wallet", "new"], ["wallet", "show"], ["wallet", "balance"],
            ["wallet", "fund"], ["chat"], ["quote"], ["spend"]]


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for key in ("MPP_PRIVATE_KEY", "MPP_KEYSTORE", "MPP_WALLET_PASSWORD", "MPP_RPC_URL", "MPP_CLAUDE_URL"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))


def ns(**kw: Any) -> argparse.Namespace:
    return argparse.Namespace(**kw)


class TestParser:
    @pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
    def test_every_command_has_help(self, command: list[str], capsys: pytest.CaptureFixture[str]) -> None:
        with pytest.raises(SystemExit) as exit_:
            main([*command, "--help"])
        assert exit_.value.code == 0
        assert capsys.readouterr().out.startswith(f"usage: mpp-claude {' '.join(command)}")

    def test_usage_errors_exit_2(self, capsys: pytest.CaptureFixture[str]) -> None:
        assert main([]) == 2
        assert main(["wallet"]) == 2
        for argv in (["chat"], ["chat", "hi", "--max-price", "-1"], ["spend", "--json", "--csv"], ["nope"],
                     ["chat", "hi", "--max-price", "0.0000001"]):
            with pytest.raises(SystemExit) as exit_:
                main(argv)
            assert exit_.value.code == 2, argv
        assert "--max-price" in capsys.readouterr().err

    def test_quiet_and_verbose_on_either_side(self) -> None:
        parser = build_parser()
        assert parser.parse_args(["-q", "spend"]).quiet is True
        assert parser.parse_args(["spend", "-q"]).quiet is True
        assert parser.parse_args(["spend"]).quiet is False
        assert parser.parse_args(["wallet", "show", "-v"]).verbose is True

    def test_bad_input_exits_1_before_any_network(self, capsys: pytest.CaptureFixture[str]) -> None:
        assert main(["chat", "   ", "--url", "http://127.0.0.1:9"]) == 1
        assert "the prompt is empty" in capsys.readouterr().err
        assert main(["chat", "hi", "--max-tokens", "0"]) == 1
        assert "--max-tokens must be positive" in capsys.readouterr().err
        assert main(["chat", "hi"]) == 1  # no wallet anywhere
        assert "no wallet: create one with `mpp-claude wallet new`" in capsys.readouterr().err


class TestDeclinedMessage:
    def run(self, exc: Exception, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> str:
        def boom(args: argparse.Namespace) -> int:
            raise exc

        monkeypatch.setattr("mpp_claude.cli.spend.run", boom)
        assert main(["spend"]) == 3
        return capsys.readouterr().err

    def test_max_price_names_the_limit_and_the_price(self, capsys: pytest.CaptureFixture[str],
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
        err = self.run(BudgetExceeded("x", limit="max_payment", limit_value=1_000, requested=10_472),
                       capsys, monkeypatch)
        assert err == ("mpp-claude: payment declined: the price 0.010472 USD is above the limit --max-price "
                       "(max_payment) of 0.001 USD; nothing was paid\n")

    def test_daily_limit_says_what_was_spent(self, capsys: pytest.CaptureFixture[str],
                                             monkeypatch: pytest.MonkeyPatch) -> None:
        err = self.run(BudgetExceeded("x", limit="max_per_day", limit_value=25_000_000, requested=2_000_000,
                                      used=24_000_000), capsys, monkeypatch)
        assert "above the limit max_per_day of 25 USD with 24 USD already spent; nothing was paid" in err

    def test_policy_refusal(self, capsys: pytest.CaptureFixture[str],
                            monkeypatch: pytest.MonkeyPatch) -> None:
        err = self.run(OriginNotAllowed("https://x.test is not allowed"), capsys, monkeypatch)
        assert err == "mpp-claude: payment declined: https://x.test is not allowed; nothing was paid\n"


class TestTerm:
    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    def test_colours_only_on_a_tty_without_no_color(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.delenv("NO_COLOR", raising=False)
        monkeypatch.setenv("TERM", "xterm")
        assert paint("x", "red", self.Tty()) == "\033[31mx\033[0m"
        assert paint("x", "red", io.StringIO()) == "x"
        monkeypatch.setenv("NO_COLOR", "1")
        assert not colour_on(self.Tty())
        monkeypatch.delenv("NO_COLOR")
        monkeypatch.setenv("TERM", "dumb")
        assert not colour_on(self.Tty())

    def test_progress_one_line_when_not_a_tty(self) -> None:
        buf = io.StringIO()
        with Progress("waiting for the chain", delay=0, stream=buf):
            deadline = time.monotonic() + 10
            while not buf.getvalue() and time.monotonic() < deadline:
                time.sleep(0.01)
        assert buf.getvalue() == "mpp-claude: waiting for the chain...\n"

    def test_progress_silent_for_quick_work_or_when_disabled(self) -> None:
        for progress in (Progress("x", delay=3600, stream=self.Tty()), Progress("x", enabled=False, delay=0)):
            with progress:
                pass
        buf = self.Tty()
        with Progress("x", delay=3600, stream=buf):
            pass
        assert buf.getvalue() == ""


class TestKeys:
    def test_password_sources_in_order(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        pw = tmp_path / "pw"
        pw.write_text("from file\n")
        monkeypatch.setenv("MPP_WALLET_PASSWORD", "from env")
        assert read_password(ns(password_file=pw)) == "from file"
        assert read_password(ns(password_file=None)) == "from env"
        monkeypatch.delenv("MPP_WALLET_PASSWORD")
        monkeypatch.setattr("sys.stdin", io.StringIO())
        with pytest.raises(ConfigError, match="--password-file FILE or set MPP_WALLET_PASSWORD"):
            read_password(ns(password_file=None))
        with pytest.raises(ConfigError, match="cannot read password file"):
            read_password(ns(password_file=tmp_path / "missing"))

    def test_prompt_confirms_a_new_password(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setattr("sys.stdin", TestTerm.Tty())
        answers = iter(["one", "two"])
        monkeypatch.setattr("getpass.getpass", lambda prompt: next(answers))
        with pytest.raises(ConfigError, match="the passwords differ"):
            read_password(ns(), confirm=True)

    def test_wallet_new_then_load(self, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                  monkeypatch: pytest.MonkeyPatch) -> None:
        path, pw = tmp_path / "k" / "w.json", tmp_path / "pw"
        pw.write_text("pw")
        assert main(["wallet", "new", "--keystore", str(path), "--password-file", str(pw), "--scrypt-n",
                     "1024"]) == 0
        address = capsys.readouterr().out.strip()
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert keystore_address(path) == address
        wallet, source = load_wallet(ns(keystore=path, password_file=pw, quiet=True))
        assert wallet.address == address and source == f"keystore {path}"
        pw.write_text("wrong")
        with pytest.raises(ConfigError, match="wrong password"):
            load_wallet(ns(keystore=path, password_file=pw, quiet=True))
        empty = tmp_path / "empty"
        empty.write_text("")
        assert main(["wallet", "new", "--keystore", str(tmp_path / "x.json"),
                     "--password-file", str(empty)]) == 1
        assert "empty password" in capsys.readouterr().err

    def test_address_and_wallet_sources(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        acct = Account.create()
        monkeypatch.setenv("MPP_PRIVATE_KEY", acct.key.hex())
        assert resolve_address(ns(keystore=None)) == (acct.address, "$MPP_PRIVATE_KEY")
        other = Account.create().address
        assert resolve_address(ns(keystore=None, address=other.lower()))[0] == other
        wallet, source = load_wallet(ns(keystore=None))
        assert wallet.address == acct.address and source == "$MPP_PRIVATE_KEY"
        assert "MPP_PRIVATE_KEY" not in os.environ  # removed after reading: child processes don't inherit it
        bad = tmp_path / "bad.json"
        bad.write_text(json.dumps({"crypto": {}}))
        with pytest.raises(ConfigError, match="records no address"):
            resolve_address(ns(keystore=bad))
        with pytest.raises(ConfigError, match="does not exist"):
            resolve_address(ns(keystore=tmp_path / "none.json"))


class TestUrls:
    def test_server_url_accepts_origin_or_v1(self, monkeypatch: pytest.MonkeyPatch) -> None:
        assert server_url(ns(url="http://127.0.0.1:8402")) == "http://127.0.0.1:8402/v1"
        assert server_url(ns(url="https://p.example/v1/")) == "https://p.example/v1"
        monkeypatch.setenv("MPP_CLAUDE_URL", "https://env.example")
        assert server_url(ns(url=None)) == "https://env.example/v1"
        for bad in ("p.example", "ftp://p.example"):
            with pytest.raises(ConfigError, match="absolute http"):
                server_url(ns(url=bad))

    def test_rpc_url_aliases(self, monkeypatch: pytest.MonkeyPatch) -> None:
        assert rpc_url(ns(rpc_url="testnet")) == "https://rpc.moderato.tempo.xyz"
        assert rpc_url(ns(rpc_url="mainnet")) == "https://rpc.tempo.xyz"
        with pytest.raises(ConfigError, match="mpp-claude devnet"):
            rpc_url(ns(rpc_url=None))
        monkeypatch.setenv("MPP_RPC_URL", "ws://x")
        with pytest.raises(ConfigError, match="must start with http"):
            rpc_url(ns(rpc_url=None))


@pytest.mark.skipif(sys.platform == "win32", reason="needs a POSIX pseudo-terminal")
def test_colours_on_a_real_terminal_only(tmp_path: Path) -> None:
    """The CLI run with stderr on a pseudo-terminal colours its error; with NO_COLOR or a pipe, not."""
    import pty
    import subprocess

    def stderr_of(on_tty: bool, **env: str) -> bytes:
        clean = {k: v for k, v in os.environ.items() if not k.startswith("MPP_") and k != "NO_COLOR"}
        clean.update(XDG_DATA_HOME=str(tmp_path), TERM="xterm", **env)
        if not on_tty:
            return subprocess.run([sys.executable, "-m", "mpp_claude.cli", "chat", "hi"], env=clean,
                                  capture_output=True, timeout=60).stderr
        leader, follower = pty.openpty()
        try:
            done = subprocess.run([sys.executable, "-m", "mpp_claude.cli", "chat", "hi"], env=clean,
                                  stdout=subprocess.DEVNULL, stderr=follower, stdin=subprocess.DEVNULL,
                                  timeout=60)
            assert done.returncode == 1
            return os.read(leader, 4096)
        finally:
            os.close(leader)
            os.close(follower)

    assert stderr_of(True).startswith(b"\x1b[31mmpp-claude: no wallet")
    assert stderr_of(True, NO_COLOR="1").startswith(b"mpp-claude: no wallet")
    assert stderr_of(False).startswith(b"mpp-claude: no wallet")
