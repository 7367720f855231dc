"""The session intent end to end on the devnet: the reference server and the paying client.

Real channels on the devnet escrow, real upstream usage (the local model), the openai SDK
on top.  Money is counted on chain: the payee holds exactly what the receipts say was
spent, the payer gets the rest of the deposit back at close.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx2
import openai
import pytest
import uvicorn
from eth_account import Account
from server_harness import running, server_config

from mpp_claude.client import AsyncMppClient, MppClient, Policy, Wallet
from mpp_claude.client._session_shell import attach_session
from mpp_claude.client.ledger import Ledger
from mpp_claude.client.session import SessionPolicy, session_receipt_of
from mpp_claude.devnet import Devnet
from mpp_claude.server.app import create_app
from mpp_claude.server.sessions import SessionSettings, SQLiteBook, enable_sessions
from mpp_claude.server.stores import SQLiteStore
from mpp_claude.server.upstreams import LocalUpstream
from mpp_claude.tempo import tip20
from mpp_claude.tempo.session import escrow_events

pytestmark = pytest.mark.devnet

MODEL = "claude-haiku-4-5"
MSG: Any = [{"role": "user", "content": "hello"}]
FEE = tip20.ALPHA_USD


class Server:
    def __init__(self, devnet: Devnet, tmp: Path, **settings: Any) -> None:
        self.devnet = devnet
        self.payee = Account.create()
        devnet.fund(self.payee.address, 5 * tip20.UNIT, token=FEE, native=False)
        self.store_path = tmp / "server.sqlite3"
        self.settings = SessionSettings(payee_key=self.payee.key.hex(), escrow=devnet.escrow_address,
                                        fee_token=FEE, suggested_deposit=tip20.UNIT, **settings)
        self.config = server_config(devnet.rpc_url, devnet.chain_id, recipient=self.payee.address)

    def app(self) -> Any:
        store = SQLiteStore(self.store_path)
        app = create_app(self.config, upstream=LocalUpstream(seed=b"session"), store=store)
        return enable_sessions(app, self.settings)

    def records(self, kind: str) -> list[dict[str, Any]]:
        store = SQLiteStore(self.store_path)
        try:
            return list(asyncio.run(store.records(kind)))
        finally:
            asyncio.run(store.close())


def payer(devnet: Devnet) -> Any:
    acct = devnet.new_funded_account(10 * tip20.UNIT)
    devnet.fund(acct.address, 5 * tip20.UNIT, token=FEE, native=False)
    return acct


def session_policy(devnet: Devnet, **kw: Any) -> SessionPolicy:
    return SessionPolicy(max_deposit=kw.pop("max_deposit", "3"), deposit=kw.pop("deposit", "1"),
                         fee_token=FEE,
                         escrows={devnet.chain_id: devnet.escrow_address}, **kw)


def client(devnet: Devnet, acct: Any, url: str, ledger: Path, **kw: Any) -> MppClient:
    c = MppClient(Wallet.from_private_key(bytes(acct.key)), rpc_url=devnet.rpc_url, allowed_origins=[url],
                  ledger=Ledger(ledger), policy=Policy(max_per_minute=120))
    attach_session(c, session_policy(devnet, **kw))
    return c


def stream_text(oai: openai.OpenAI, max_tokens: int = 40) -> str:
    chunks: Any = oai.chat.completions.create(model=MODEL, messages=MSG, max_tokens=max_tokens, stream=True)
    return "".join((c.choices[0].delta.content or "") for c in chunks if c.choices)


@pytest.fixture
def server(devnet: Devnet, tmp_path: Path) -> Server:
    return Server(devnet, tmp_path, settle_every_amount=2_000)


def test_fifty_streams_one_channel(devnet: Devnet, server: Server, tmp_path: Path) -> None:
    """50 streamed completions: 1 open, at most spent/2000 settlements, 1 close; exact balances."""
    acct = payer(devnet)
    start = devnet.balance(acct.address)
    with running(server.app()) as url:
        c = client(devnet, acct, url, tmp_path / "ledger.sqlite3")
        oai = openai.OpenAI(base_url=url + "/v1", api_key="unused", http_client=c, max_retries=0)
        for _ in range(50):
            assert stream_text(oai)
        receipts = c.session.receipts  # type: ignore[attr-defined]
        finals = [r for r in receipts if r.amount is not None]
        assert len(finals) == 50 and len({r.channel_id for r in receipts}) == 1
        spent = finals[-1].spent
        assert spent == sum(r.amount or 0 for r in finals) > 0
        (closed,) = c.session_transport.close_sessions()  # type: ignore[attr-defined]
        assert closed.tx_hash and closed.spent == spent
        usage = server.records("usage")
        assert sum(int(row["cost"]) for row in usage) == spent
    txs = [r["kind"] for r in server.records("session_tx")]
    assert txs.count("open") == 1 and txs.count("close") == 1 and txs.count("topUp") == 0
    assert 1 <= txs.count("settle") <= spent // 2_000 and txs[-1] == "close"
    logs = devnet.rpc.call("eth_getLogs", [{"address": devnet.escrow_address, "fromBlock": "0x0",
                                            "topics": [None, closed.channel_id]}])
    events = [e.name for e in escrow_events(logs, devnet.escrow_address)]
    # the close settles the rest (one more Settled event) and finalizes
    assert events == ["ChannelOpened", *["Settled"] * (txs.count("settle") + 1), "ChannelClosed"]
    assert devnet.balance(server.payee.address) == spent
    assert devnet.balance(acct.address) == start - spent
    rows = c.ledger.rows()
    assert sum(r.amount for r in rows) >= spent and all(r.status == "settled" for r in rows)


@contextmanager
def serving_on(app: Any, port: int) -> Iterator[str]:
    """``app`` on a fixed loopback port (a restarted server keeps its origin)."""
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning",
                                           lifespan="on"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "server did not start"
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)


def test_restarts_resume_the_channel(devnet: Devnet, tmp_path: Path) -> None:
    """Client and server restart half-way: same channel, accepted amount kept, one open."""
    server = Server(devnet, tmp_path)
    acct = payer(devnet)
    ledger = tmp_path / "ledger.sqlite3"
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
    with serving_on(server.app(), port) as url:
        c1 = client(devnet, acct, url, ledger)
        oai = openai.OpenAI(base_url=url + "/v1", api_key="unused", http_client=c1, max_retries=0)
        for _ in range(3):
            stream_text(oai)
        first = c1.session.receipts[-1]  # type: ignore[attr-defined]
        c1.close()
    book = SQLiteBook(str(server.store_path))
    kept = asyncio.run(book.get(first.channel_id))
    asyncio.run(book.close())
    assert kept is not None and kept.account.accepted_cumulative == first.accepted_cumulative
    assert kept.account.spent == first.spent
    with serving_on(server.app(), port) as url:  # same store file and origin, fresh process state
        c2 = client(devnet, acct, url, ledger)  # a new client on the same ledger/channel store
        stored = c2.session.store.open_channels(acct.address)  # type: ignore[attr-defined]
        assert [s.channel_id for s in stored] == [first.channel_id]
        oai2 = openai.OpenAI(base_url=url + "/v1", api_key="unused", http_client=c2, max_retries=0)
        for _ in range(3):
            stream_text(oai2)
        later = c2.session.receipts[-1]  # type: ignore[attr-defined]
        assert later.channel_id == first.channel_id
        assert later.accepted_cumulative >= first.accepted_cumulative and later.spent > first.spent
        c2.close()
        # a third client process closes: no cached challenge (HEAD for one), and a stored `spent`
        # older than the server's (the close voucher is corrected to what the server reports)
        c3 = client(devnet, acct, url, ledger)
        (closed,) = c3.session_transport.close_sessions()  # type: ignore[attr-defined]
    assert [r["kind"] for r in server.records("session_tx")].count("open") == 1
    assert devnet.balance(server.payee.address) == closed.spent == later.spent


def test_sdk_streams_are_clean_sync_and_async(devnet: Devnet, server: Server, tmp_path: Path) -> None:
    """No payment frame reaches the openai SDK, also when the server pauses for a voucher."""
    acct = payer(devnet)
    with running(server.app()) as url:
        c = client(devnet, acct, url, tmp_path / "ledger.sqlite3")
        oai = openai.OpenAI(base_url=url + "/v1", api_key="unused", http_client=c, max_retries=0)
        stream_text(oai, 20)
        shell = c.session_transport  # type: ignore[attr-defined]
        manage = shell._manage
        sent: list[str] = []

        def spy(url: Any, value: str) -> Any:
            sent.append(value)
            return manage(url, value)

        shell._manage = spy
        # a dearer request than the cached quote: the stream pauses with payment-need-voucher
        with oai.chat.completions.with_streaming_response.create(model=MODEL, messages=MSG, max_tokens=3000,
                                                                  stream=True) as raw:
            body = b"".join(raw.http_response.iter_bytes())
            assert b"payment-" not in body and body.rstrip().endswith(b"data: [DONE]")
            assert session_receipt_of(raw) is not None
        assert len(sent) == 1  # the out-of-band voucher answering payment-need-voucher
        chunks: list[Any] = list(oai.chat.completions.create(model=MODEL, messages=MSG, max_tokens=3000,
                                                             stream=True))
        assert chunks and all(ch.object == "chat.completion.chunk" for ch in chunks)

        async def run_async() -> list[Any]:
            ac = AsyncMppClient(Wallet.from_private_key(bytes(acct.key)), rpc_url=devnet.rpc_url,
                                allowed_origins=[url], ledger=Ledger(tmp_path / "ledger.sqlite3"))
            attach_session(ac, session_policy(devnet))
            aoai = openai.AsyncOpenAI(base_url=url + "/v1", api_key="unused", http_client=ac, max_retries=0)
            out = []
            for max_tokens in (20, 4000):
                stream: Any = await aoai.chat.completions.create(model=MODEL, messages=MSG,
                                                                 max_tokens=max_tokens, stream=True)
                out += [chunk async for chunk in stream]
            await ac.session_transport.close_sessions()  # type: ignore[attr-defined]
            await ac.aclose()
            return out

        async_chunks = asyncio.run(run_async())
        assert async_chunks and all(ch.object == "chat.completion.chunk" for ch in async_chunks)
    assert devnet.balance(server.payee.address) > 0


def test_unpaid_402_offers_session_beside_charge(devnet: Devnet, server: Server) -> None:
    with running(server.app()) as url:
        r = httpx2.post(url + "/v1/chat/completions", json={"model": MODEL, "messages": MSG,
                                                            "max_tokens": 10})
    assert r.status_code == 402
    offers = r.headers.get_list("www-authenticate")
    assert any('intent="charge"' in o for o in offers) and any('intent="session"' in o for o in offers)


def test_refusals_use_the_spec_error_types(devnet: Devnet, server: Server, tmp_path: Path) -> None:
    """Other signer, lower, above deposit, other channel, replayed, closed: refused, nothing lost."""
    import os
    from dataclasses import replace

    from mpp_claude.client._session_core import SessionCore
    from mpp_claude.tempo.session import VoucherDomain, sign_voucher, voucher_payload
    from mpp_claude.tempo.signer import LocalSigner

    acct = payer(devnet)
    start = devnet.balance(acct.address)
    with running(server.app()) as url:
        c = client(devnet, acct, url, tmp_path / "ledger.sqlite3")
        oai = openai.OpenAI(base_url=url + "/v1", api_key="unused", http_client=c, max_retries=0)
        stream_text(oai)
        core: SessionCore = c.session  # type: ignore[attr-defined]
        (stored,) = core.store.open_channels(acct.address)
        cid, deposit = stored.channel_id, stored.channel.deposit
        challenge = core.challenges[url + "/v1/chat/completions"]
        domain = VoucherDomain(devnet.chain_id, devnet.escrow_address)
        me, other = LocalSigner(bytes(acct.key)), LocalSigner(os.urandom(32))

        def send(signer: LocalSigner, channel: str, amount: int) -> tuple[int, dict[str, Any]]:
            value = core.credential(challenge, voucher_payload(sign_voucher(signer, domain, channel, amount)))
            r = httpx2.post(url + "/v1/chat/completions", headers={"authorization": value})
            return r.status_code, (r.json() if r.content else {})

        accepted = core.receipts[-1].accepted_cumulative
        status, problem = send(other, cid, accepted + 10)
        assert (status, problem["type"].rsplit("/", 2)[-2:]) == (402, ["session", "signer-mismatch"])
        status, problem = send(me, cid, accepted - 1)
        assert status == 402 and problem["title"] == "Stale Voucher"
        status, problem = send(me, cid, deposit + 1)
        assert (status, problem["type"].rsplit("/", 1)[-1]) == (402, "amount-exceeds-deposit")
        status, problem = send(me, "0x" + os.urandom(32).hex(), 10)
        assert (status, problem["type"].rsplit("/", 1)[-1]) == (410, "channel-not-found")
        first = send(me, cid, accepted + 5)
        replay = send(me, cid, accepted + 5)
        assert first[0] == replay[0] == 204
        spent = core.receipts[-1].spent
        (closed,) = c.session_transport.close_sessions()  # type: ignore[attr-defined]
        assert closed.spent == spent
        status, problem = send(me, cid, accepted + 50)
        assert (status, problem["type"].rsplit("/", 1)[-1]) == (410, "channel-finalized")
        # a client that still believes the channel open meets the 410, evicts it and opens a new one
        core.save(replace(core.get(cid) or stored, status="open"))
        core.store.set_status(cid, "open", now=0)
        stream_text(oai)
        assert (core.store.get(cid) or stored).status == "evicted"
        (fresh,) = core.store.open_channels(acct.address)
        assert fresh.channel_id != cid
        spent += core.receipts[-1].spent
        c.session_transport.close_sessions()  # type: ignore[attr-defined]
    assert devnet.balance(server.payee.address) == spent
    assert devnet.balance(acct.address) == start - spent


def test_json_request_short_balance_pays_the_402(devnet: Devnet, server: Server, tmp_path: Path) -> None:
    """A JSON request dearer than the cached quote: 402 insufficient-balance, one voucher, 200."""
    acct = payer(devnet)
    with running(server.app()) as url:
        c = client(devnet, acct, url, tmp_path / "ledger.sqlite3")
        oai = openai.OpenAI(base_url=url + "/v1", api_key="unused", http_client=c, max_retries=0)
        oai.chat.completions.create(model=MODEL, messages=MSG, max_tokens=20)
        raw = oai.chat.completions.with_raw_response.create(model=MODEL, messages=MSG, max_tokens=3000)
        receipt = session_receipt_of(raw)
        assert raw.http_response.status_code == 200 and receipt is not None and receipt.amount
        (closed,) = c.session_transport.close_sessions()  # type: ignore[attr-defined]
    assert devnet.balance(server.payee.address) == closed.spent == receipt.spent


def test_budgets_count_vouchers_like_charges(devnet: Devnet, server: Server, tmp_path: Path) -> None:
    """A scoped budget below a voucher's increase refuses it before signing; the ledger rows of the
    vouchers add up to exactly what was authorised."""
    from mpp_claude.errors import BudgetExceeded

    acct = payer(devnet)
    with running(server.app()) as url:
        c = client(devnet, acct, url, tmp_path / "ledger.sqlite3")
        oai = openai.OpenAI(base_url=url + "/v1", api_key="unused", http_client=c, max_retries=0)
        stream_text(oai)
        (stored,) = c.session.open_channels()  # type: ignore[attr-defined]
        signed = stored.channel.signed_cumulative
        with c.budget(1), pytest.raises(BudgetExceeded):
            oai.chat.completions.create(model=MODEL, messages=MSG, max_tokens=3000)
        (after,) = c.session.open_channels()  # type: ignore[attr-defined]
        assert after.channel.signed_cumulative == signed  # nothing new was signed
        stream_text(oai)
        (last,) = c.session.open_channels()  # type: ignore[attr-defined]
        rows = [r for r in c.ledger.rows() if r.status != "released"]
        assert sum(r.amount for r in rows) == last.channel.signed_cumulative
        assert c.spent == last.channel.signed_cumulative
        c.session_transport.close_sessions()  # type: ignore[attr-defined]


def test_legacy_httpx_client_pays_with_a_session(devnet: Devnet, server: Server, tmp_path: Path) -> None:
    """The ``httpx`` twins (anthropic SDK, openai < 3) get the same session transport."""
    import mpp_claude.httpx as legacy

    acct = payer(devnet)
    body = {"model": MODEL, "messages": MSG, "max_tokens": 30, "stream": True}
    with running(server.app()) as url:
        c = legacy.MppClient(Wallet.from_private_key(bytes(acct.key)), rpc_url=devnet.rpc_url,
                             allowed_origins=[url], ledger=Ledger(tmp_path / "ledger.sqlite3"))
        attach_session(c, session_policy(devnet))
        for _ in range(2):
            with c.stream("POST", url + "/v1/chat/completions", json=body) as r:
                text = r.read()
                assert r.status_code == 200 and b"payment-" not in text and text.endswith(b"data: [DONE]\n\n")
                receipt = session_receipt_of(r)
                assert receipt is not None and receipt.amount
        (closed,) = c.session_transport.close_sessions()  # type: ignore[attr-defined]
        c.close()
    assert devnet.balance(server.payee.address) == closed.spent > 0


def test_refused_open_moves_nothing_and_gives_the_budget_back(devnet: Devnet, tmp_path: Path) -> None:
    from mpp_claude.errors import PaymentRejected

    server = Server(devnet, tmp_path, min_deposit=5 * tip20.UNIT)  # more than this client deposits
    acct = payer(devnet)
    start = devnet.balance(acct.address)
    with running(server.app()) as url:
        c = client(devnet, acct, url, tmp_path / "ledger.sqlite3")
        oai = openai.OpenAI(base_url=url + "/v1", api_key="unused", http_client=c, max_retries=0)
        with pytest.raises(PaymentRejected) as info:
            stream_text(oai)
        assert "deposit" in str(info.value)
    assert c.session.open_channels() == [] and c.spent == 0  # type: ignore[attr-defined]
    assert all(r.status == "released" for r in c.ledger.rows())
    assert devnet.balance(acct.address) == start


def test_upstream_failure_charges_nothing(devnet: Devnet, server: Server, tmp_path: Path) -> None:
    """An upstream error after the hold: the client gets the error, the channel is charged nothing."""
    acct = payer(devnet)
    with running(server.app()) as url:
        c = client(devnet, acct, url, tmp_path / "ledger.sqlite3")
        oai = openai.OpenAI(base_url=url + "/v1", api_key="unused", http_client=c, max_retries=0)
        stream_text(oai)
        spent = c.session.receipts[-1].spent  # type: ignore[attr-defined]
        failing: Any = [{"role": "user", "content": "[[mpp-fault:529]]"}]
        with pytest.raises(openai.APIError):  # an error status, or an error frame once streaming began
            list(oai.chat.completions.create(model=MODEL, messages=failing, max_tokens=40, stream=True))
        with pytest.raises(openai.APIStatusError):
            oai.chat.completions.create(model=MODEL, messages=failing, max_tokens=40)
        (closed,) = c.session_transport.close_sessions()  # type: ignore[attr-defined]
    assert closed.spent == spent == devnet.balance(server.payee.address)
