"""The paying client against the reference server on the devnet: real Tempo payments, never mocked.

Every case counts money on chain: the recipient's balance must grow by exactly one payment.
The same flows over a MockTransport shop are in tests/unit/client/test_clients.py.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import anthropic
import httpx2
import openai
import pytest
from eth_account import Account
from server_harness import running, server_config

import mpp_claude.httpx as legacy
from mpp_claude.client import AsyncMppClient, MppClient, Policy, Wallet, openai_client, receipt_of
from mpp_claude.client._wire import WireTransport
from mpp_claude.client.ledger import Ledger
from mpp_claude.devnet import Devnet
from mpp_claude.errors import InsufficientFunds, PaymentOutcomeUnknown, PolicyDenied
from mpp_claude.server.app import create_app
from mpp_claude.server.stores import MemoryStore
from mpp_claude.server.upstreams import LocalUpstream
from mpp_claude.tempo import tip20

pytestmark = pytest.mark.devnet

MSG = [{"role": "user", "content": "hello"}]
MODEL = "claude-haiku-4-5"
CLIENTS = {"httpx2": (MppClient, AsyncMppClient), "httpx": (legacy.MppClient, legacy.AsyncMppClient)}


class FirstPaidFails:
    """ASGI wrapper: when armed, the next paid request is fully served by the real app (charged,
    response stored under its Idempotency-Key) but the client gets a bare 500 instead, without
    ``x-should-retry`` so the openai SDK retries it."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.armed = False

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        paid = scope["type"] == "http" and any(
            k == b"authorization" and v.startswith(b"Payment ") for k, v in scope["headers"])
        if not (paid and self.armed):
            await self.app(scope, receive, send)
            return
        self.armed = False

        async def swallow(message: Any) -> None:
            return None

        await self.app(scope, receive, swallow)
        await send({"type": "http.response.start", "status": 500,
                    "headers": [(b"content-type", b"application/json")]})
        await send({"type": "http.response.body", "body": b'{"error": {"message": "proxy hiccup"}}'})


class Proxy:
    def __init__(self, url: str, recipient: str, wrapper: FirstPaidFails, upstream: LocalUpstream) -> None:
        self.url, self.recipient, self.wrapper, self.upstream = url, recipient, wrapper, upstream


@pytest.fixture(scope="module")
def proxy(devnet: Devnet) -> Iterator[Proxy]:
    recipient = Account.create().address
    upstream = LocalUpstream(seed=b"client")
    app = create_app(server_config(devnet.rpc_url, devnet.chain_id, recipient=recipient),
                     upstream=upstream, store=MemoryStore())
    wrapper = FirstPaidFails(app)
    with running(wrapper) as url:
        yield Proxy(url, recipient, wrapper, upstream)


@pytest.fixture
def wallet(funded_account: Any) -> Wallet:
    return Wallet.from_private_key(bytes(funded_account.key))


@pytest.fixture(params=["httpx2", "httpx"])
def lib(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def _paid_once(devnet: Devnet, proxy: Proxy, before: int, client: Any) -> None:
    """Exactly one payment: the recipient got one amount, the client has one settled receipt."""
    (receipt,) = client.receipts
    assert devnet.balance(proxy.recipient) - before == receipt.amount > 0
    chain = devnet.rpc.receipt(receipt.reference)
    assert chain is not None and int(chain["status"], 16) == 1
    assert [r.status for r in client.ledger.rows()] == ["settled"]


class TestOpenAI:
    def test_sync(self, devnet: Devnet, proxy: Proxy, wallet: Wallet, lib: str, tmp_path: Any) -> None:
        client = CLIENTS[lib][0](wallet, rpc_url=devnet.rpc_url, allowed_origins=[proxy.url],
                                 ledger=Ledger(tmp_path / "l.db"))
        before = devnet.balance(proxy.recipient)
        oai = openai.OpenAI(base_url=proxy.url + "/v1", api_key="x", http_client=client)
        raw = oai.chat.completions.with_raw_response.create(model=MODEL, messages=MSG)
        assert raw.parse().choices[0].message.content
        assert receipt_of(raw) == client.last_receipt and receipt_of(raw) is not None
        assert lib == "httpx" or isinstance(client._transport.inner, WireTransport)
        _paid_once(devnet, proxy, before, client)
        client.close()

    def test_stream_sync(self, devnet: Devnet, proxy: Proxy, wallet: Wallet, lib: str, tmp_path: Any) -> None:
        client = CLIENTS[lib][0](wallet, rpc_url=devnet.rpc_url, allowed_origins=[proxy.url],
                                 ledger=Ledger(tmp_path / "l.db"))
        before = devnet.balance(proxy.recipient)
        oai = openai.OpenAI(base_url=proxy.url + "/v1", api_key="x", http_client=client)
        text = "".join(c.choices[0].delta.content or "" for c in
                       oai.chat.completions.create(model=MODEL, messages=MSG, stream=True) if c.choices)
        assert text
        _paid_once(devnet, proxy, before, client)
        client.close()

    def test_async(self, devnet: Devnet, proxy: Proxy, wallet: Wallet, lib: str, tmp_path: Any) -> None:
        client = CLIENTS[lib][1](wallet, rpc_url=devnet.rpc_url, allowed_origins=[proxy.url],
                                 ledger=Ledger(tmp_path / "l.db"))
        before = devnet.balance(proxy.recipient)

        async def run() -> str | None:
            async with client:
                oai = openai.AsyncOpenAI(base_url=proxy.url + "/v1", api_key="x", http_client=client)
                out = await oai.chat.completions.create(model=MODEL, messages=MSG)
                return out.choices[0].message.content

        assert asyncio.run(run())
        _paid_once(devnet, proxy, before, client)

    def test_stream_async(self, devnet: Devnet, proxy: Proxy, wallet: Wallet, lib: str,
                          tmp_path: Any) -> None:
        client = CLIENTS[lib][1](wallet, rpc_url=devnet.rpc_url, allowed_origins=[proxy.url],
                                 ledger=Ledger(tmp_path / "l.db"))
        before = devnet.balance(proxy.recipient)

        async def run() -> str:
            async with client:
                oai = openai.AsyncOpenAI(base_url=proxy.url + "/v1", api_key="x", http_client=client)
                stream = await oai.chat.completions.create(model=MODEL, messages=MSG, stream=True)
                return "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])

        assert asyncio.run(run())
        _paid_once(devnet, proxy, before, client)


def test_convenience_constructor(devnet: Devnet, proxy: Proxy, wallet: Wallet, tmp_path: Any) -> None:
    """openai_client() seeds the allowlist with the proxy origin."""
    oai = openai_client(proxy.url + "/v1", wallet, rpc_url=devnet.rpc_url, ledger=Ledger(tmp_path / "l.db"))
    before = devnet.balance(proxy.recipient)
    assert oai.chat.completions.create(model=MODEL, messages=MSG).choices[0].message.content
    _paid_once(devnet, proxy, before, oai._client)


def test_anthropic_sdk(devnet: Devnet, proxy: Proxy, wallet: Wallet, tmp_path: Any) -> None:
    """The anthropic SDK pays for /v1/messages (anthropic 2.x runs on httpx2 and refuses httpx objects;
    legacy httpx is covered by the openai SDK, which accepts both)."""
    client = MppClient(wallet, rpc_url=devnet.rpc_url, allowed_origins=[proxy.url],
                              ledger=Ledger(tmp_path / "l.db"))
    before = devnet.balance(proxy.recipient)
    ant = anthropic.Anthropic(base_url=proxy.url, api_key="x", http_client=client)
    msg = ant.messages.create(model=MODEL, max_tokens=50, messages=MSG)  # type: ignore[arg-type]
    assert msg.content
    _paid_once(devnet, proxy, before, client)


def test_500_after_payment_with_sdk_retries_pays_once(devnet: Devnet, proxy: Proxy, wallet: Wallet,
                                                      tmp_path: Any) -> None:
    """The server charges, then the client sees a 500; the SDK retries with the same credential and
    Idempotency-Key and gets the stored completion: one payment on chain, one upstream call."""
    client = MppClient(wallet, rpc_url=devnet.rpc_url, allowed_origins=[proxy.url],
                       ledger=Ledger(tmp_path / "l.db"))
    oai = openai.OpenAI(base_url=proxy.url + "/v1", api_key="x", http_client=client, max_retries=2)
    before, calls = devnet.balance(proxy.recipient), proxy.upstream.calls
    proxy.wrapper.armed = True
    raw = oai.chat.completions.with_raw_response.create(model=MODEL, messages=MSG)
    assert raw.headers["idempotent-replayed"] == "true"
    assert raw.parse().choices[0].message.content
    assert proxy.upstream.calls - calls == 1
    _paid_once(devnet, proxy, before, client)
    client.close()


class DropAfterPaid(httpx2.BaseTransport):
    """Forwards to the real server, then loses the answer to the first paid request."""

    def __init__(self, drops: int, inner: httpx2.BaseTransport | None = None) -> None:
        self.inner = inner or httpx2.HTTPTransport()
        self.drops = drops

    def handle_request(self, request: httpx2.Request) -> httpx2.Response:
        response = self.inner.handle_request(request)
        if request.headers.get("authorization", "").startswith("Payment ") and self.drops:
            self.drops -= 1
            response.read()
            raise httpx2.ReadError("connection lost after the server settled the payment")
        return response


@pytest.mark.parametrize("inner", [httpx2.HTTPTransport, WireTransport])
def test_dropped_connection_after_broadcast_no_second_payment(devnet: Devnet, proxy: Proxy, wallet: Wallet,
                                                               tmp_path: Any, inner: Any) -> None:
    client = MppClient(wallet, rpc_url=devnet.rpc_url, allowed_origins=[proxy.url],
                       ledger=Ledger(tmp_path / "l.db"), transport=DropAfterPaid(1, inner()))
    before = devnet.balance(proxy.recipient)
    r = client.post(proxy.url + "/v1/chat/completions", json={"model": MODEL, "messages": MSG})
    assert r.status_code == 200 and r.headers["idempotent-replayed"] == "true"
    _paid_once(devnet, proxy, before, client)
    client.close()


def test_dropped_twice_is_outcome_unknown_resolved_from_chain(devnet: Devnet, proxy: Proxy, wallet: Wallet,
                                                              tmp_path: Any) -> None:
    client = MppClient(wallet, rpc_url=devnet.rpc_url, allowed_origins=[proxy.url],
                       ledger=Ledger(tmp_path / "l.db"), transport=DropAfterPaid(2))
    before = devnet.balance(proxy.recipient)
    oai = openai.OpenAI(base_url=proxy.url + "/v1", api_key="x", http_client=client, max_retries=2)
    with pytest.raises(PaymentOutcomeUnknown, match="settled on chain"):
        oai.chat.completions.create(model=MODEL, messages=MSG)
    (row,) = client.ledger.rows()
    assert row.status == "settled" and devnet.balance(proxy.recipient) - before == row.amount
    client.close()


def test_spend_report_lists_the_payment(devnet: Devnet, proxy: Proxy, wallet: Wallet, tmp_path: Any) -> None:
    from mpp_claude.client import spend_report

    path = tmp_path / "l.db"
    client = MppClient(wallet, rpc_url=devnet.rpc_url, allowed_origins=[proxy.url], ledger=Ledger(path))
    client.post(proxy.url + "/v1/chat/completions", json={"model": MODEL, "messages": MSG})
    client.close()
    (row,) = json.loads(spend_report(path, fmt="json"))
    assert row["status"] == "settled" and row["model"] == MODEL and row["tx_hash"].startswith("0x")


def test_unfunded_wallet_is_insufficient_funds(devnet: Devnet, proxy: Proxy, tmp_path: Any) -> None:
    """A wallet without pathUSD: InsufficientFunds (token, needed, available), nothing signed,
    the reservation released."""
    poor = Wallet.from_private_key(bytes(Account.create().key))
    client = MppClient(poor, rpc_url=devnet.rpc_url, allowed_origins=[proxy.url],
                       ledger=Ledger(tmp_path / "l.db"))
    with pytest.raises(InsufficientFunds) as info:
        client.post(proxy.url + "/v1/chat/completions", json={"model": MODEL, "messages": MSG})
    e = info.value
    assert e.token.lower() == tip20.PATH_USD and e.available == 0 and e.needed > 0
    assert [r.status for r in client.ledger.rows()] == ["released"] and client.spent == 0
    client.close()


def test_chain_pinned_from_the_rpc_node(devnet: Devnet, proxy: Proxy, wallet: Wallet, tmp_path: Any) -> None:
    """A policy pinned to another chain than the server's: PolicyDenied(chain), no payment."""
    client = MppClient(wallet, rpc_url=devnet.rpc_url, allowed_origins=[proxy.url],
                       policy=Policy(chain_id=4217), ledger=Ledger(tmp_path / "l.db"))
    before = devnet.balance(proxy.recipient)
    with pytest.raises(PolicyDenied) as info:
        client.post(proxy.url + "/v1/chat/completions", json={"model": MODEL, "messages": MSG})
    assert info.value.rule == "chain" and devnet.balance(proxy.recipient) == before
    client.close()
