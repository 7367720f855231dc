"""The payer's forced close on a real devnet: the server is gone, ``requestClose``, the escrow's
grace period (``evm_increaseTime``), ``withdraw``; resumed by a restarted client from its channel
store; ledger and budget give back what the payee never settled, as after a cooperative close.

The test that moves the chain's clock runs on its own devnet: 15 minutes ahead of wall time,
expiring-nonce transactions (channel opens) of other tests would be refused.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest
from eth_account import Account
from server_harness import running, server_config

from mpp_claude.client import AsyncMppClient, MppClient, Policy, SessionPolicy, Wallet
from mpp_claude.client.ledger import Ledger
from mpp_claude.devnet import Devnet
from mpp_claude.errors import ChannelAlreadyFinalized, ChannelCloseError, GracePeriodNotOver
from mpp_claude.server.app import create_app
from mpp_claude.server.sessions import SessionSettings, enable_sessions
from mpp_claude.server.stores import SQLiteStore
from mpp_claude.server.upstreams import LocalUpstream
from mpp_claude.tempo import tip20
from mpp_claude.tempo.session import CLOSE_GRACE_PERIOD, VoucherDomain, sign_voucher
from mpp_claude.tempo.session.onchain import read_channel, send_calls
from mpp_claude.tempo.session.transactions import GAS_CLOSE, close_call
from mpp_claude.tempo.signer import LocalSigner

pytestmark = pytest.mark.devnet

MODEL = "claude-haiku-4-5"
FEE = tip20.ALPHA_USD


@pytest.fixture(scope="module")
def net() -> Iterator[Devnet]:
    with Devnet.start() as own:
        yield own


def session_app(net: Devnet, tmp: Path, payee: Any, **settings: Any) -> Any:
    config = server_config(net.rpc_url, net.chain_id, recipient=payee.address)
    store = SQLiteStore(tmp / "server.sqlite3")
    app = create_app(config, upstream=LocalUpstream(seed=b"forced"), store=store)
    return enable_sessions(app, SessionSettings(payee_key=payee.key.hex(), escrow=net.escrow_address,
                                                fee_token=FEE, suggested_deposit=tip20.UNIT, **settings))


def funded(net: Devnet) -> Any:
    acct = net.new_funded_account(10 * tip20.UNIT)
    net.fund(acct.address, 5 * tip20.UNIT, token=FEE, native=False)
    return acct


def session_client(net: Devnet, acct: Any, url: str, ledger: Path, cls: Any = MppClient, **kw: Any) -> Any:
    return cls(Wallet.from_private_key(bytes(acct.key)), rpc_url=net.rpc_url, allowed_origins=[url],
               ledger=Ledger(ledger), policy=Policy(max_per_minute=120),
               session=SessionPolicy(max_deposit="3", deposit="1", fee_token=FEE,
                                     escrows={net.chain_id: net.escrow_address}, **kw))


def stream(c: MppClient, url: str, n: int) -> None:
    oai = openai.OpenAI(base_url=url + "/v1", api_key="unused", http_client=c, max_retries=0)
    for _ in range(n):
        chunks: Any = oai.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "hi"}],
                                                  max_tokens=40, stream=True)
        assert "".join((ch.choices[0].delta.content or "") for ch in chunks if ch.choices)


def counted(ledger: Path, wallet: str) -> int:
    return Ledger(ledger).spent(wallet.lower(), since=0)


def test_server_gone_request_close_wait_withdraw(net: Devnet, tmp_path: Path) -> None:
    """requestClose, too early refused before sending, restart, grace over, withdraw: the deposit minus
    what the payee settled comes back, the ledger keeps only what the payee got."""
    payee, acct = Account.create(), funded(net)
    net.fund(payee.address, 5 * tip20.UNIT, token=FEE, native=False)
    ledger = tmp_path / "ledger.sqlite3"
    start = net.balance(acct.address)
    with running(session_app(net, tmp_path, payee, settle_every_amount=1)) as url:
        c = session_client(net, acct, url, ledger, headroom=0)  # a voucher per request: the payee settles
        stream(c, url, 6)
        cid = c.session.receipts[-1].channel_id
    # the server is gone: nothing can close the channel cooperatively
    state = read_channel(net.rpc, net.escrow_address, cid)
    assert state.settled > 0 and not state.finalized  # the payee settled part of it on the way
    signed = c.session.store.get(cid).channel.signed_cumulative
    assert counted(ledger, acct.address) == signed > state.settled

    first = c.request_close(cid)
    assert first.tx_hash and first.status == "closing"
    assert first.withdrawable_at == first.close_requested_at + CLOSE_GRACE_PERIOD > 0
    assert c.session.open_channels() == []  # nothing pays from it any more
    nonce = net.rpc.nonce(acct.address)
    with pytest.raises(GracePeriodNotOver) as early:
        c.withdraw(cid)
    assert early.value.ends_at == first.withdrawable_at and early.value.channel_id == cid
    again = c.request_close(cid)  # already requested: recorded, nothing sent
    assert again.tx_hash is None and again.withdrawable_at == first.withdrawable_at
    assert net.rpc.nonce(acct.address) == nonce  # no transaction was sent for either
    c.close()

    # a restarted client finds the pending close in its channel store
    c2 = session_client(net, acct, url, ledger)
    (waiting,) = c2.reclaim()
    assert waiting.status == "closing" and not waiting.withdrawable and waiting.tx_hash is None
    net.rpc.call("evm_increaseTime", [CLOSE_GRACE_PERIOD])
    net.mine()
    (done,) = c2.reclaim()
    assert done.status == "withdrawn" and done.tx_hash
    assert done.refunded == state.deposit - state.settled and done.settled == state.settled
    assert net.balance(acct.address) == start - state.settled
    assert net.balance(payee.address) == state.settled
    assert counted(ledger, acct.address) == state.settled  # the unsettled vouchers were given back
    stored = c2.session.store.get(cid)
    assert (stored.status, stored.refunded) == ("withdrawn", done.refunded)
    assert c2.reclaim() == []  # nothing closing any more
    with pytest.raises(ChannelAlreadyFinalized):
        c2.withdraw(cid)
    with pytest.raises(ChannelAlreadyFinalized):
        c2.reclaim(cid)
    assert counted(ledger, acct.address) == state.settled  # given back once only
    with pytest.raises(ChannelCloseError):
        c2.request_close("0x" + "12" * 32)  # not in this wallet's store
    c2.close()


def test_async_reclaim_payee_closes_during_grace(devnet: Devnet, tmp_path: Path) -> None:
    """Async client: reclaim() requests the close of an evicted channel; the payee closes on chain
    during the grace period with a voucher it holds; reclaim records that close (no withdraw) and
    the ledger keeps what the payee got."""
    payee, acct = Account.create(), funded(devnet)
    devnet.fund(payee.address, 5 * tip20.UNIT, token=FEE, native=False)
    ledger = tmp_path / "ledger.sqlite3"
    with running(session_app(devnet, tmp_path, payee)) as url:
        c = session_client(devnet, acct, url, ledger)
        stream(c, url, 2)
        last = c.session.receipts[-1]
        c.close()
    cid, spent = last.channel_id, last.spent
    assert spent > 0

    async def request() -> None:
        ac = session_client(devnet, acct, url, ledger, AsyncMppClient)
        ac.session.evict(cid)  # as after a 410 from a server that lost the channel: reclaim takes it
        (first,) = await ac.reclaim()
        assert first.status == "closing" and first.tx_hash
        with pytest.raises(GracePeriodNotOver):
            await ac.withdraw(cid)
        await ac.aclose()

    asyncio.run(request())
    escrow = devnet.escrow_address
    voucher = sign_voucher(LocalSigner(bytes(acct.key)), VoucherDomain(devnet.chain_id, escrow), cid, spent)
    closing = close_call(escrow, cid, spent, voucher.signature)
    send_calls(devnet.rpc, LocalSigner(bytes(payee.key)), (closing,), escrow=escrow, gas_limit=GAS_CLOSE,
               fee_token=FEE)

    async def later() -> None:
        ac = session_client(devnet, acct, url, ledger, AsyncMppClient)
        (status,) = await ac.reclaim()
        assert status.status == "closed" and status.tx_hash is None and status.settled == spent
        with pytest.raises(ChannelAlreadyFinalized):
            await ac.reclaim(cid)
        await ac.aclose()

    asyncio.run(later())
    assert counted(ledger, acct.address) == spent
