"""The settlement sweeper on the devnet: an idle channel is settled by time, once, even with two
server instances (replicas) sharing one store; the close pays the rest."""

from __future__ import annotations

import asyncio
import time
import uuid
from pathlib import Path
from typing import Any

import openai
import pytest
from eth_account import Account
from server_harness import running, server_config

from mpp_claude.client import MppClient, Policy, SessionPolicy, Wallet
from mpp_claude.client._session_shell import attach_session
from mpp_claude.client.ledger import Ledger
from mpp_claude.devnet import Devnet
from mpp_claude.server.app import create_app
from mpp_claude.server.sessions import ChannelRecord, RedisBook, SessionSettings, enable_sessions
from mpp_claude.server.stores import SQLiteStore
from mpp_claude.server.upstreams import LocalUpstream
from mpp_claude.tempo import tip20
from mpp_claude.tempo.session import ChannelAccount, escrow_events

pytestmark = pytest.mark.devnet

MODEL = "claude-haiku-4-5"
FEE = tip20.ALPHA_USD


class Clock:
    """Frozen while ``frozen`` is set (no settlement is due by time), else the real time."""

    def __init__(self) -> None:
        self.frozen: float | None = time.time()

    def __call__(self) -> float:
        return self.frozen if self.frozen is not None else time.time()


def settled_events(devnet: Devnet, channel_id: str) -> list[str]:
    logs = devnet.rpc.call("eth_getLogs", [{"address": devnet.escrow_address, "fromBlock": "0x0",
                                            "topics": [None, channel_id]}])
    return [e.name for e in escrow_events(logs, devnet.escrow_address)]


def records(path: Path, kind: str) -> list[dict[str, Any]]:
    store = SQLiteStore(path)
    try:
        return list(asyncio.run(store.records(kind)))
    finally:
        asyncio.run(store.close())


def test_idle_channel_is_settled_once_by_two_replicas(devnet: Devnet, tmp_path: Path) -> None:
    """The client signs no voucher ahead (``headroom=0``), so after a few requests some accepted
    voucher is not above what was spent: the payee settles with it (never with unspent money)."""
    payee = Account.create()
    devnet.fund(payee.address, 5 * tip20.UNIT, token=FEE, native=False)
    settings = SessionSettings(payee_key=payee.key.hex(), escrow=devnet.escrow_address, fee_token=FEE,
                               suggested_deposit=tip20.UNIT, settle_every_seconds=1)
    config = server_config(devnet.rpc_url, devnet.chain_id, recipient=payee.address)
    path = tmp_path / "shared.sqlite3"
    clock = Clock()

    def replica() -> Any:
        app = create_app(config, upstream=LocalUpstream(seed=b"sweep"), store=SQLiteStore(path, clock=clock),
                         clock=clock)
        return enable_sessions(app, settings)

    acct = devnet.new_funded_account(10 * tip20.UNIT)
    devnet.fund(acct.address, 5 * tip20.UNIT, token=FEE, native=False)
    with running(replica()) as url, running(replica()):
        c = MppClient(Wallet.from_private_key(bytes(acct.key)), rpc_url=devnet.rpc_url, allowed_origins=[url],
                      ledger=Ledger(tmp_path / "ledger.sqlite3"), policy=Policy(max_per_minute=120))
        attach_session(c, SessionPolicy(max_deposit="3", deposit="1", fee_token=FEE, headroom=0,
                                        escrows={devnet.chain_id: devnet.escrow_address}))
        oai = openai.OpenAI(base_url=url + "/v1", api_key="unused", http_client=c, max_retries=0)
        expected = 0
        for _ in range(8):  # until some accepted voucher is at most what was spent
            chunks: Any = oai.chat.completions.create(model=MODEL, max_tokens=40, stream=True,
                                                      messages=[{"role": "user", "content": "hi"}])
            assert "".join((ch.choices[0].delta.content or "") for ch in chunks if ch.choices)
            receipts = c.session.receipts  # type: ignore[attr-defined]
            spent = receipts[-1].spent
            expected = max([r.accepted_cumulative for r in receipts if r.accepted_cumulative <= spent],
                           default=0)
            if expected:
                break
        assert expected > 0
        cid = receipts[-1].channel_id
        assert devnet.balance(payee.address) == 0  # nothing was due while the clock stood still
        clock.frozen = None  # from now on the channel is idle and its last settlement ages
        deadline = time.monotonic() + 30
        while devnet.balance(payee.address) == 0 and time.monotonic() < deadline:
            time.sleep(0.1)
        # the settlement takes the highest accepted voucher not above spent: never unspent money
        assert devnet.balance(payee.address) == expected
        time.sleep(2.5)  # both replicas sweep again (each second): nothing more is settled
        assert settled_events(devnet, cid) == ["ChannelOpened", "Settled"]
        assert devnet.rpc.nonce(payee.address) == 1  # one transaction sent, no reverted duplicate
        settles = [r for r in records(path, "session_tx") if r["kind"] == "settle"]
        assert [(r["channel_id"], int(r["amount"])) for r in settles] == [(cid, expected)]
        (closed,) = c.session_transport.close_sessions()  # type: ignore[attr-defined]
        assert closed.spent == spent
    assert devnet.balance(payee.address) == spent  # the close paid the rest
    assert devnet.rpc.nonce(payee.address) == 2
    assert settled_events(devnet, cid) == ["ChannelOpened", "Settled", "Settled", "ChannelClosed"]


def test_settle_on_shutdown(devnet: Devnet, tmp_path: Path) -> None:
    """``settle_on_shutdown``: stopping the server settles what is settleable, without waiting."""
    payee = Account.create()
    devnet.fund(payee.address, 5 * tip20.UNIT, token=FEE, native=False)
    settings = SessionSettings(payee_key=payee.key.hex(), escrow=devnet.escrow_address, fee_token=FEE,
                               suggested_deposit=tip20.UNIT, settle_on_shutdown=True)
    config = server_config(devnet.rpc_url, devnet.chain_id, recipient=payee.address)
    path = tmp_path / "s.sqlite3"
    acct = devnet.new_funded_account(10 * tip20.UNIT)
    devnet.fund(acct.address, 5 * tip20.UNIT, token=FEE, native=False)
    app = enable_sessions(create_app(config, upstream=LocalUpstream(seed=b"stop"), store=SQLiteStore(path)),
                          settings)
    with running(app) as url:
        c = MppClient(Wallet.from_private_key(bytes(acct.key)), rpc_url=devnet.rpc_url, allowed_origins=[url],
                      ledger=Ledger(tmp_path / "ledger.sqlite3"))
        attach_session(c, SessionPolicy(max_deposit="3", deposit="1", fee_token=FEE, headroom=0,
                                        escrows={devnet.chain_id: devnet.escrow_address}))
        oai = openai.OpenAI(base_url=url + "/v1", api_key="unused", http_client=c, max_retries=0)
        for _ in range(4):
            oai.chat.completions.create(model=MODEL, max_tokens=40,
                                        messages=[{"role": "user", "content": "x"}])
        receipts = c.session.receipts  # type: ignore[attr-defined]
        spent = receipts[-1].spent
        expected = max([r.accepted_cumulative for r in receipts if r.accepted_cumulative <= spent], default=0)
        assert devnet.balance(payee.address) == 0
        c.close()
    assert expected > 0 and devnet.balance(payee.address) == expected


def test_redis_books_list_unsettled_channels(redis_url: str) -> None:
    """``RedisBook.unsettled`` (the sweeper's query) over keys of its own prefix only."""
    import redis.asyncio as aredis

    async def run() -> tuple[list[str], list[str]]:
        client = aredis.from_url(redis_url)
        prefix = f"t{uuid.uuid4().hex}:"
        book, other = RedisBook(client, prefix), RedisBook(client, prefix + "x")
        for i, (spent, last) in enumerate([(5, 0.0), (5, 50.0), (0, 0.0)]):
            cid = "0x" + f"{i:02x}" * 32
            rec = ChannelRecord(ChannelAccount(cid, 10, spent, 0, 100, b""), payer="0x" + "22" * 20,
                                last_settle_at=last)
            await book.update(cid, lambda _r, rec=rec: rec)
            await other.update(cid + "ff", lambda _r, rec=rec: rec)
        found = (sorted(r.channel_id for r in await book.unsettled(10.0)),
                 sorted(r.channel_id for r in await book.unsettled(float("inf"))))
        await client.aclose()
        return found

    due, all_unsettled = asyncio.run(run())
    assert due == ["0x" + "00" * 32]
    assert all_unsettled == ["0x" + "00" * 32, "0x" + "01" * 32]


def test_two_replicas_on_redis_settle_once(redis_url: str) -> None:
    """Two gates' sweepers on one Redis (store and books): one broadcast per settlement."""
    from mpp_claude.server.sessions.meter import Meter
    from mpp_claude.server.sessions.sweeper import Sweeper
    from mpp_claude.server.stores.redis import RedisStore

    cid = "0x" + "ab" * 32
    sent: list[int] = []

    class Payee:
        async def settle(self, channel_id: str, amount: int, signature: bytes) -> str:
            await asyncio.sleep(0.02)  # both replicas are inside their sweep by now
            sent.append(amount)
            return "0x" + "cd" * 32

    class Replica(Meter):
        def __init__(self, store: RedisStore) -> None:
            self.store = store
            self.book = RedisBook(store._redis, store._prefix)  # what open_book(store) picks
            self._payee = Payee()  # type: ignore[assignment]
            self.settings = SessionSettings(payee_key="", settle_every_seconds=1)
            self._clock = time.time
            super().__init__()

    async def run() -> tuple[list[list[str]], ChannelRecord | None]:
        prefix = f"t{uuid.uuid4().hex}:"
        stores = [RedisStore(redis_url, prefix=prefix) for _ in range(2)]
        replicas = [Replica(s) for s in stores]
        rec = ChannelRecord(ChannelAccount(cid, 900, 700, 0, 1_000, b"\x02" * 65), payer="0x" + "22" * 20,
                            vouchers=((400, "01" * 65), (600, "02" * 65), (900, "03" * 65)))
        await replicas[0].book.update(cid, lambda _r: rec)
        swept = await asyncio.gather(*(Sweeper(r, 1, time.time).sweep() for r in replicas))
        got = await replicas[1].book.get(cid)
        for r, s in zip(replicas, stores, strict=True):
            await r.aclose()
            await s.close()
        return swept, got

    swept, got = asyncio.run(run())
    assert swept == [[cid], [cid]] and sent == [600]  # both saw it due; one settled, with 600 <= 700
    assert got is not None and got.account.settled == 600
