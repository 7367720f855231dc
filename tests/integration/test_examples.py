"""Smoke tests of examples/*.py: each runs as a user runs it (a subprocess) and pays on a devnet.

``budget_agent.py`` and ``serve_your_own.py`` start their own devnet and server (no arguments);
the others get the session devnet and a server started here through MPP_CLAUDE_URL,
MPP_RPC_URL and MPP_PRIVATE_KEY, the variables the examples document.
"""

from __future__ import annotations

import csv
import os
import re
import secrets
import subprocess
import sys
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest
from eth_account import Account

from mpp_claude.devnet import Devnet
from mpp_claude.server.app import create_app
from mpp_claude.server.background import serve_in_thread
from mpp_claude.server.config import build_config
from mpp_claude.tempo import tip20

pytestmark = pytest.mark.devnet

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def run(script: str, *args: str, env: dict[str, str] | None = None) -> str:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("MPP_")}
    done = subprocess.run([sys.executable, str(EXAMPLES / script), *args], env={**clean, **(env or {})},
                          capture_output=True, text=True, timeout=240, stdin=subprocess.DEVNULL)
    assert done.returncode == 0, f"{script} exited {done.returncode}:\n{done.stdout}\n{done.stderr}"
    return done.stdout


class Server:
    def __init__(self, url: str, payee: str, net: Devnet) -> None:
        self.url, self.payee, self.net = url, payee, net

    def env(self, pathusd: int = 2) -> dict[str, str]:
        """The documented variables, with a fresh wallet holding ``pathusd`` pathUSD."""
        acct = self.net.new_funded_account(pathusd * tip20.UNIT)
        return {"MPP_CLAUDE_URL": self.url, "MPP_RPC_URL": self.net.rpc_url,
                "MPP_PRIVATE_KEY": acct.key.hex()}


@pytest.fixture(scope="module")
def server(devnet: Devnet) -> Iterator[Server]:
    payee = Account.create().address
    config = build_config(flags={"realm": "localhost", "recipient": payee, "rpc_url": devnet.rpc_url,
                                 "chain_id": devnet.chain_id, "upstream": "local", "store": "memory://",
                                 "secret_key": secrets.token_hex(32)})
    with serve_in_thread(create_app(config)) as url:
        yield Server(url, payee, devnet)


def test_budget_agent_standalone() -> None:
    """No arguments: own devnet; tool calls run; the run budget stops the loop cleanly."""
    out = run("budget_agent.py")
    assert "tool get_weather({\"city\":\"Paris\"}) -> Paris: 17 degrees C" in out
    assert "answer: The tool returned: Paris: 17 degrees C" in out
    assert "stopped cleanly: run budget reached" in out
    done = re.search(r"(\d+) task\(s\) done, (\d+) payment\(s\), spent ([\d.]+) USD", out)
    assert done is not None and int(done[1]) >= 1 and int(done[2]) >= 2 * int(done[1])
    assert Decimal(done[3]) <= Decimal("0.02")


def test_budget_agent_step_budget_stops_before_paying(server: Server) -> None:
    """A step budget below one call's price: the first step is declined, nothing is paid."""
    before = server.net.balance(server.payee)
    out = run("budget_agent.py", "--step-budget", "0.0001", env=server.env())
    assert "stopped cleanly: step budget reached" in out
    assert "0 task(s) done, 0 payment(s), spent 0.000000 USD" in out
    assert server.net.balance(server.payee) == before


def test_pay_per_call_experiment(server: Server, tmp_path: Path) -> None:
    """models x prompts rows in the CSV, each a mined payment; the PNG opens."""
    from PIL import Image

    models = ["claude-haiku-4-5", "claude-opus-4-8"]
    before = server.net.balance(server.payee)
    run("pay_per_call_experiment.py", "--out", str(tmp_path), "--models", *models, env=server.env())
    with open(tmp_path / "calls.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [r["model"] for r in rows] == [m for m in models for _ in range(3)]
    assert all(int(r["completion_tokens"]) > 0 and float(r["latency_s"]) > 0 for r in rows)
    costs = [tip20.from_display(r["cost_usd"]) for r in rows]
    assert min(costs[3:]) > max(costs[:3]) > 0  # opus costs more than haiku
    assert server.net.balance(server.payee) - before == sum(costs)
    assert server.net.rpc.receipt(rows[0]["tx_hash"]) is not None
    with Image.open(tmp_path / "calls.png") as png:
        assert png.format == "PNG" and png.size == (900, 450)
        png.verify()


def test_async_fanout_shares_one_budget(server: Server) -> None:
    before = server.net.balance(server.payee)
    out = run("async_fanout.py", "--calls", "12", "--budget", "0.005", env=server.env())
    summary = re.search(r"12 calls in [\d.]+ s: (\d+) paid and answered, (\d+) declined by the budget, "
                        r"0 failed", out)
    assert summary is not None and int(summary[1]) >= 1 and int(summary[2]) >= 1, out
    assert int(summary[1]) + int(summary[2]) == 12
    spent = re.search(r"spent ([\d.]+) of 0.005 USD in (\d+) payment\(s\)", out)
    assert spent is not None and int(spent[2]) == int(summary[1])
    assert tip20.from_display(spent[1]) == server.net.balance(server.payee) - before <= 5000


def test_serve_your_own_prices() -> None:
    """The custom table is what is charged: haiku below and opus above their list prices."""
    out = run("serve_your_own.py")
    paid = dict(re.findall(r"^(claude-[\w-]+): .* paid ([\d.]+) USD", out, flags=re.M))
    assert set(paid) == {"claude-haiku-4-5", "claude-opus-4-8"}
    assert Decimal(paid["claude-haiku-4-5"]) < Decimal("0.0025")  # list: $5/M output -> >= 0.005
    assert Decimal(paid["claude-opus-4-8"]) >= Decimal("0.09")    # 1000 tokens at $90/M
    total = re.search(r"received ([\d.]+) USD", out)
    assert total is not None and Decimal(total[1]) == sum(Decimal(v) for v in paid.values())
