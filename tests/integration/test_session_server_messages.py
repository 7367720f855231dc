"""Sessions on the native Anthropic route ``POST /v1/messages`` on the devnet, through the
anthropic SDK on our session-enabled client: JSON and SSE, exact usage metering, a stream that
waits for a voucher, and no payment frame reaching the SDK's stream parser."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import anthropic
import httpx2
import pytest
from server_harness import running, session_server

from mpp_claude.client import MppClient, Policy, SessionPolicy, Wallet, session_receipt_of
from mpp_claude.client._session_shell import attach_session
from mpp_claude.client.ledger import Ledger
from mpp_claude.devnet import Devnet
from mpp_claude.server.stores import SQLiteStore
from mpp_claude.tempo import tip20

pytestmark = pytest.mark.devnet

MODEL = "claude-haiku-4-5"
FEE = tip20.ALPHA_USD
MSG: Any = [{"role": "user", "content": "hello"}]


@pytest.fixture
def setup(devnet: Devnet, tmp_path: Path) -> dict[str, Any]:
    srv = session_server(devnet, tmp_path, b"msgs")
    return {"app": srv.app, "payee": srv.payee, "payer": srv.payer, "store": srv.store}


def session_client(devnet: Devnet, acct: Any, url: str, tmp_path: Path) -> MppClient:
    c = MppClient(Wallet.from_private_key(bytes(acct.key)), rpc_url=devnet.rpc_url, allowed_origins=[url],
                  ledger=Ledger(tmp_path / "ledger.sqlite3"), policy=Policy(max_per_minute=120))
    attach_session(c, SessionPolicy(max_deposit="3", deposit="1", fee_token=FEE,
                                    escrows={devnet.chain_id: devnet.escrow_address}))
    return c


def usage_rows(path: Path) -> list[dict[str, Any]]:
    store = SQLiteStore(path)
    try:
        return list(asyncio.run(store.records("usage")))
    finally:
        asyncio.run(store.close())


def test_unpaid_messages_402_offers_a_session(devnet: Devnet, setup: dict[str, Any]) -> None:
    with running(setup["app"]) as url:
        r = httpx2.post(url + "/v1/messages", json={"model": MODEL, "messages": MSG, "max_tokens": 10})
    assert r.status_code == 402
    offers = r.headers.get_list("www-authenticate")
    assert any('intent="charge"' in o for o in offers) and any('intent="session"' in o for o in offers)


def test_anthropic_sdk_pays_messages_with_a_session(devnet: Devnet, setup: dict[str, Any], tmp_path: Path
                                                    ) -> None:
    """JSON and streams (one pausing for a voucher) on one channel; exact usage; clean SDK streams."""
    payee, acct = setup["payee"], setup["payer"]
    start = devnet.balance(acct.address)
    with running(setup["app"]) as url:
        c = session_client(devnet, acct, url, tmp_path)
        sdk = anthropic.Anthropic(base_url=url, api_key="unused", http_client=c, max_retries=0)
        raw = sdk.messages.with_raw_response.create(model=MODEL, max_tokens=30, messages=MSG)
        message = raw.parse()
        receipt = session_receipt_of(raw)
        assert message.content and message.content[0].type == "text" and message.content[0].text
        assert receipt is not None and receipt.amount and receipt.spent == receipt.amount
        with sdk.messages.stream(model=MODEL, max_tokens=30, messages=MSG) as stream:
            text = "".join(stream.text_stream)
            final = stream.get_final_message()
        assert text and final.usage.output_tokens > 0
        # a dearer stream than the cached quote: the server pauses with payment-need-voucher,
        # the client answers out of band, the SDK sees only Anthropic events
        dear = sdk.messages.create(model=MODEL, max_tokens=3000, messages=MSG, stream=True)
        events = [e.type for e in dear]
        assert events[0] == "message_start" and events[-1] == "message_stop"
        with c.stream("POST", url + "/v1/messages", json={"model": MODEL, "messages": MSG, "max_tokens": 20,
                                                          "stream": True}) as r:
            body = r.read()
            last = session_receipt_of(r)
        assert r.status_code == 200 and b"payment-" not in body
        assert body.rstrip().endswith(b'data: {"type":"message_stop"}')
        assert last is not None and last.amount
        receipts = c.session.receipts  # type: ignore[attr-defined]
        finals = [x for x in receipts if x.amount is not None]
        assert len(finals) == 4 and len({x.channel_id for x in receipts}) == 1
        spent = finals[-1].spent
        assert spent == sum(x.amount or 0 for x in finals)
        (closed,) = c.session_transport.close_sessions()  # type: ignore[attr-defined]
        assert closed.spent == spent
    rows = usage_rows(setup["store"])
    assert len(rows) == 4 and sum(int(row["cost"]) for row in rows) == spent
    assert all(row["route"] == "/v1/messages" for row in rows)
    assert devnet.balance(payee.address) == spent
    assert devnet.balance(acct.address) == start - spent


def test_anthropic_sdk_async_stream_is_clean(devnet: Devnet, setup: dict[str, Any], tmp_path: Path) -> None:
    from mpp_claude.client import AsyncMppClient

    acct = setup["payer"]
    with running(setup["app"]) as url:
        async def run() -> list[str]:
            ac = AsyncMppClient(Wallet.from_private_key(bytes(acct.key)), rpc_url=devnet.rpc_url,
                                allowed_origins=[url], ledger=Ledger(tmp_path / "ledger.sqlite3"))
            attach_session(ac, SessionPolicy(max_deposit="3", deposit="1", fee_token=FEE,
                                             escrows={devnet.chain_id: devnet.escrow_address}))
            sdk = anthropic.AsyncAnthropic(base_url=url, api_key="unused", http_client=ac, max_retries=0)
            out: list[str] = []
            for max_tokens in (20, 4000):
                stream: Any = await sdk.messages.create(model=MODEL, max_tokens=max_tokens, messages=MSG,
                                                        stream=True)
                out += [event.type async for event in stream]
            await ac.session_transport.close_sessions()  # type: ignore[attr-defined]
            await ac.aclose()
            return out

        events = asyncio.run(run())
    assert events.count("message_start") == 2 and events.count("message_stop") == 2
    assert devnet.balance(setup["payee"].address) > 0
