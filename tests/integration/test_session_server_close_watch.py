"""The server's close watch on a real devnet (issue #8): a payer consumes service over a channel,
then sends ``requestClose`` to the escrow; the server (settlement by amount and by time off)
notices and settles, well within the grace period, the highest accepted voucher not above what
was spent, and serves the channel no more; after the grace period the payer's ``withdraw`` gets
exactly the deposit minus that.

The first test runs on its own devnet: it moves the chain's clock 15 minutes ahead, which would make other
tests' expiring-nonce transactions (channel opens) be refused.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx2
import openai
import pytest
from eth_account import Account
from server_harness import running, server_config

from mpp_claude.client import MppClient, Policy, SessionPolicy, Wallet
from mpp_claude.client.ledger import Ledger
from mpp_claude.devnet import Devnet
from mpp_claude.errors import ChannelClosing, ChannelFinalized
from mpp_claude.server.app import create_app
from mpp_claude.server.sessions import SessionSettings, enable_sessions
from mpp_claude.server.stores import SQLiteStore
from mpp_claude.server.upstreams import LocalUpstream
from mpp_claude.tempo import tip20
from mpp_claude.tempo.session import CLOSE_GRACE_PERIOD, VoucherDomain, sign_voucher, voucher_payload
from mpp_claude.tempo.session.onchain import read_channel, send_calls
from mpp_claude.tempo.session.transactions import (
    GAS_REQUEST_CLOSE,
    GAS_TOP_UP,
    request_close_call,
    top_up_calls,
)
from mpp_claude.tempo.signer import LocalSigner

pytestmark = pytest.mark.devnet

MODEL = "claude-haiku-4-5"
FEE = tip20.ALPHA_USD
WATCH_S = 0.2  # the server reads the escrow this often (15 s by default)


@pytest.fixture(scope="module")
def net() -> Iterator[Devnet]:
    with Devnet.start() as own:
        yield own


def test_forced_close_is_settled_within_the_grace_period(net: Devnet, tmp_path: Path) -> None:
    payee = Account.create()
    net.fund(payee.address, 5 * tip20.UNIT, token=FEE, native=False)
    settings = SessionSettings(payee_key=payee.key.hex(), escrow=net.escrow_address, fee_token=FEE,
                               suggested_deposit=tip20.UNIT, close_watch_seconds=WATCH_S)
    assert settings.settle_every_amount == 0 and settings.settle_every_seconds == 0  # only the watch settles
    config = server_config(net.rpc_url, net.chain_id, recipient=payee.address)
    app = enable_sessions(create_app(config, upstream=LocalUpstream(seed=b"watch"),
                                     store=SQLiteStore(tmp_path / "server.sqlite3")), settings)
    acct = net.new_funded_account(10 * tip20.UNIT)
    net.fund(acct.address, 5 * tip20.UNIT, token=FEE, native=False)
    start = net.balance(acct.address)
    with running(app) as url:
        c = MppClient(Wallet.from_private_key(bytes(acct.key)), rpc_url=net.rpc_url, allowed_origins=[url],
                      ledger=Ledger(tmp_path / "ledger.sqlite3"), policy=Policy(max_per_minute=120),
                      session=SessionPolicy(max_deposit="3", deposit="1", fee_token=FEE, headroom=0,
                                            escrows={net.chain_id: net.escrow_address}))
        oai = openai.OpenAI(base_url=url + "/v1", api_key="unused", http_client=c, max_retries=0)
        core: Any = c.session  # type: ignore[attr-defined]
        expected = 0
        for _ in range(8):  # until some accepted voucher is at most what was spent
            chunks: Any = oai.chat.completions.create(model=MODEL, max_tokens=40, stream=True,
                                                      messages=[{"role": "user", "content": "hi"}])
            assert "".join((ch.choices[0].delta.content or "") for ch in chunks if ch.choices)
            spent = core.receipts[-1].spent
            expected = max([r.accepted_cumulative for r in core.receipts if r.accepted_cumulative <= spent],
                           default=0)
            if expected:
                break
        # headroom=0 signs each voucher for the request's quote, so the last one is above what the
        # request used: the payee can draw the highest accepted voucher not above spent, never more
        assert 0 < expected <= spent
        last = core.receipts[-1]
        cid = last.channel_id
        challenge = core.challenges[url + "/v1/chat/completions"]
        deposit = read_channel(net.rpc, net.escrow_address, cid).deposit
        assert net.balance(payee.address) == 0  # nothing settled so far

        closing = c.request_close(cid)  # the payer starts the forced close on the escrow
        assert closing.tx_hash and closing.status == "closing"
        deadline = time.monotonic() + 8
        while net.balance(payee.address) < expected and time.monotonic() < deadline:
            time.sleep(0.05)
        assert net.balance(payee.address) == expected  # settled by the server within seconds
        state = read_channel(net.rpc, net.escrow_address, cid)
        assert state.settled == expected and state.close_requested_at and not state.finalized

        domain = VoucherDomain(net.chain_id, net.escrow_address)

        def send(amount: int) -> tuple[int, dict[str, Any]]:
            voucher = sign_voucher(LocalSigner(bytes(acct.key)), domain, cid, amount)
            value = core.credential(challenge, voucher_payload(voucher))
            body = {"model": MODEL, "max_tokens": 10, "messages": [{"role": "user", "content": "x"}]}
            r = httpx2.post(url + "/v1/chat/completions", headers={"authorization": value}, json=body)
            return r.status_code, r.json()

        status, problem = send(last.accepted_cumulative + 1_000)  # closing: no new voucher, no new request
        assert (status, problem["type"], problem["title"]) == (
            ChannelClosing.status, ChannelClosing("").problem_type, ChannelClosing.title)
        status, problem = send(last.accepted_cumulative)  # nor does the voucher already accepted
        assert (status, problem["title"]) == (ChannelClosing.status, ChannelClosing.title)

        net.rpc.call("evm_increaseTime", [CLOSE_GRACE_PERIOD + 1])
        net.mine()
        done = c.withdraw(cid)
        assert done.status == "withdrawn" and done.refunded == deposit - expected
        status, problem = send(last.accepted_cumulative + 2_000)
        assert (status, problem["type"]) == (ChannelFinalized.status, ChannelFinalized("").problem_type)
        c.close()
    assert net.balance(payee.address) == expected
    assert net.balance(acct.address) == start - expected
    assert net.rpc.nonce(payee.address) == 1  # one settlement, nothing sent twice


def test_a_cancelled_forced_close_serves_again(devnet: Devnet, tmp_path: Path) -> None:
    """The payer sends ``requestClose`` and then ``topUp`` (which cancels it) straight to the escrow:
    the server settles meanwhile, refuses the channel while it is closing, and serves it again once
    a fresh read of the escrow shows the close cancelled."""
    payee = Account.create()
    devnet.fund(payee.address, 5 * tip20.UNIT, token=FEE, native=False)
    settings = SessionSettings(payee_key=payee.key.hex(), escrow=devnet.escrow_address, fee_token=FEE,
                               suggested_deposit=tip20.UNIT, close_watch_seconds=WATCH_S)
    config = server_config(devnet.rpc_url, devnet.chain_id, recipient=payee.address)
    app = enable_sessions(create_app(config, upstream=LocalUpstream(seed=b"cancel"),
                                     store=SQLiteStore(tmp_path / "server.sqlite3")), settings)
    acct = devnet.new_funded_account(10 * tip20.UNIT)
    devnet.fund(acct.address, 5 * tip20.UNIT, token=FEE, native=False)
    payer, escrow = LocalSigner(bytes(acct.key)), devnet.escrow_address
    with running(app) as url:
        c = MppClient(Wallet.from_private_key(bytes(acct.key)), rpc_url=devnet.rpc_url, allowed_origins=[url],
                      ledger=Ledger(tmp_path / "ledger.sqlite3"), policy=Policy(max_per_minute=120),
                      session=SessionPolicy(max_deposit="3", deposit="1", fee_token=FEE, headroom=0,
                                            escrows={devnet.chain_id: escrow}))
        oai = openai.OpenAI(base_url=url + "/v1", api_key="unused", http_client=c, max_retries=0)
        core: Any = c.session  # type: ignore[attr-defined]

        def ask() -> None:
            out: Any = oai.chat.completions.create(model=MODEL, max_tokens=20,
                                                   messages=[{"role": "user", "content": "hi"}])
            assert out.choices[0].message.content

        expected = 0
        for _ in range(8):  # until some accepted voucher is at most what was spent
            ask()
            spent = core.receipts[-1].spent
            expected = max([r.accepted_cumulative for r in core.receipts if r.accepted_cumulative <= spent],
                           default=0)
            if expected:
                break
        assert expected > 0
        last = core.receipts[-1]
        cid = last.channel_id
        challenge = core.challenges[url + "/v1/chat/completions"]
        send_calls(devnet.rpc, payer, (request_close_call(escrow, cid),), escrow=escrow,
                   gas_limit=GAS_REQUEST_CLOSE, fee_token=FEE)
        deadline = time.monotonic() + 8
        while devnet.balance(payee.address) < expected and time.monotonic() < deadline:
            time.sleep(0.05)
        assert devnet.balance(payee.address) == expected

        domain = VoucherDomain(devnet.chain_id, escrow)
        voucher = sign_voucher(payer, domain, cid, last.accepted_cumulative + 500)
        value = core.credential(challenge, voucher_payload(voucher))
        body = {"model": MODEL, "max_tokens": 5, "messages": [{"role": "user", "content": "x"}]}
        r = httpx2.post(url + "/v1/chat/completions", headers={"authorization": value}, json=body)
        assert (r.status_code, r.json()["title"]) == (ChannelClosing.status, ChannelClosing.title)

        token = read_channel(devnet.rpc, escrow, cid).token
        send_calls(devnet.rpc, payer, top_up_calls(escrow, token=token, channel_id=cid, amount=1_000),
                   escrow=escrow, gas_limit=GAS_TOP_UP, fee_token=FEE)  # cancels the forced close
        assert read_channel(devnet.rpc, escrow, cid).close_requested_at == 0
        ask()  # served again, on the same channel
        assert core.receipts[-1].channel_id == cid and core.receipts[-1].spent > spent
        c.close()
