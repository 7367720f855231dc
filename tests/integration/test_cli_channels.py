"""``mpp-claude channels list|close [--force]`` as a user runs it (subprocess) against the devnet.

Channels are opened by a session client in this process; the CLI lists them and closes one
through the reference server and one by force after the server is gone (requestClose, the grace
period moved past with ``evm_increaseTime``, withdraw), checked on chain.  Its own devnet: the
chain's clock ends 15 minutes ahead of wall time.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest
from eth_account import Account
from server_harness import running, server_config

from mpp_claude.client import MppClient, SessionPolicy, Wallet
from mpp_claude.client.ledger import Ledger
from mpp_claude.devnet import Devnet
from mpp_claude.server.app import create_app
from mpp_claude.server.sessions import SessionSettings, enable_sessions
from mpp_claude.server.stores import SQLiteStore
from mpp_claude.server.upstreams import LocalUpstream
from mpp_claude.tempo import tip20
from mpp_claude.tempo.session import CLOSE_GRACE_PERIOD
from mpp_claude.tempo.session.onchain import read_channel

pytestmark = pytest.mark.devnet

FEE = tip20.ALPHA_USD


@pytest.fixture(scope="module")
def net() -> Iterator[Devnet]:
    with Devnet.start() as own:
        yield own


class Payer:
    def __init__(self, net: Devnet, tmp: Path, name: str) -> None:
        self.net, self.tmp = net, tmp
        self.acct = net.new_funded_account(10 * tip20.UNIT)
        net.fund(self.acct.address, 5 * tip20.UNIT, token=FEE, native=False)
        self.ledger = tmp / f"{name}.sqlite3"

    def pay(self, url: str, n: int) -> str:
        """``n`` streamed completions over a session; returns the channel id."""
        c = MppClient(Wallet.from_private_key(bytes(self.acct.key)), rpc_url=self.net.rpc_url,
                      allowed_origins=[url], ledger=Ledger(self.ledger),
                      session=SessionPolicy(max_deposit="3", deposit="1", fee_token=FEE,
                                            escrows={self.net.chain_id: self.net.escrow_address}))
        oai = openai.OpenAI(base_url=url + "/v1", api_key="unused", http_client=c, max_retries=0)
        for _ in range(n):
            chunks: Any = oai.chat.completions.create(model="claude-haiku-4-5", max_tokens=30, stream=True,
                                                      messages=[{"role": "user", "content": "hi"}])
            assert "".join((ch.choices[0].delta.content or "") for ch in chunks if ch.choices)
        cid: str = c.session.receipts[-1].channel_id
        c.close()
        return cid

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("MPP_")}
        env.update(XDG_DATA_HOME=str(self.tmp / "data"), NO_COLOR="1", MPP_RPC_URL=self.net.rpc_url,
                   MPP_PRIVATE_KEY="0x" + bytes(self.acct.key).hex())
        return subprocess.run([sys.executable, "-m", "mpp_claude.cli", "channels", *args, "--ledger",
                               str(self.ledger)], env=env, capture_output=True, text=True, timeout=120,
                              stdin=subprocess.DEVNULL)


def app(net: Devnet, tmp: Path, payee: Any) -> Any:
    config = server_config(net.rpc_url, net.chain_id, recipient=payee.address)
    store = SQLiteStore(tmp / "srv.sqlite3")
    application = create_app(config, upstream=LocalUpstream(seed=b"cli"), store=store)
    return enable_sessions(application, SessionSettings(payee_key=payee.key.hex(), escrow=net.escrow_address,
                                                        fee_token=FEE, suggested_deposit=tip20.UNIT,
                                                        settle_every_amount=1))


def test_list_and_close_cooperatively_then_by_force(net: Devnet, tmp_path: Path) -> None:
    payee = Account.create()
    net.fund(payee.address, 5 * tip20.UNIT, token=FEE, native=False)
    alice, bob = Payer(net, tmp_path, "alice"), Payer(net, tmp_path, "bob")
    with running(app(net, tmp_path, payee)) as url:
        a_cid, b_cid = alice.pay(url, 2), bob.pay(url, 3)
        listed = alice.cli("list")
        assert listed.returncode == 0, listed.stderr
        header, row = listed.stdout.splitlines()
        assert header.split()[:7] == ["channel", "origin", "payee", "deposit", "accepted", "spent", "state"]
        assert row.split()[:4] == [a_cid, url, payee.address.lower(), "1"] and row.split()[-1] == "open"
        (entry,) = json.loads(alice.cli("list", "--json").stdout)
        assert entry["channel_id"] == a_cid and entry["status"] == "open" and entry["deposit"] == tip20.UNIT
        assert entry["accepted"] >= entry["spent"] > 0

        # cooperative: the server closes it, paying itself what it reported spent
        closed = alice.cli("close", a_cid, "--json")
        assert closed.returncode == 0, closed.stderr
        result = json.loads(closed.stdout)
        state = read_channel(net.rpc, net.escrow_address, a_cid)
        assert state.finalized and result["status"] == "closed" and result["tx_hash"]
        assert result["settled"] == state.settled == entry["spent"]
        assert result["refunded"] == tip20.UNIT - state.settled
        assert "closed (" in alice.cli("list").stdout
    # the server is gone: only a forced close gets bob's deposit back
    gone = bob.cli("close", b_cid)
    assert gone.returncode == 1 and "--force" in gone.stderr
    start, settled = net.balance(bob.acct.address), read_channel(net.rpc, net.escrow_address, b_cid).settled
    first = bob.cli("close", b_cid, "--force", "--fee-token", FEE, "--json")
    assert first.returncode == 0, first.stderr
    step1 = json.loads(first.stdout)
    assert step1["status"] == "closing" and step1["tx_hash"]
    assert step1["withdrawable_at"] == step1["close_requested_at"] + CLOSE_GRACE_PERIOD
    again = bob.cli("close", b_cid, "--force", "--fee-token", FEE)
    assert again.returncode == 0 and "withdraw possible after" in again.stdout and "(tx" not in again.stdout
    assert "closing (withdraw after" in bob.cli("list").stdout
    net.rpc.call("evm_increaseTime", [CLOSE_GRACE_PERIOD])
    net.mine()
    done = bob.cli("close", b_cid, "--wait", "--fee-token", FEE, "--json")  # due already: no wait
    assert done.returncode == 0, done.stderr
    step2 = json.loads(done.stdout)
    assert step2["status"] == "withdrawn" and step2["refunded"] == tip20.UNIT - settled
    assert net.balance(bob.acct.address) == start + tip20.UNIT - settled
    finished = bob.cli("close", b_cid, "--force", "--fee-token", FEE)
    assert finished.returncode == 1 and "already finalised" in finished.stderr
    assert bob.cli("close", "0x12").returncode == 2
