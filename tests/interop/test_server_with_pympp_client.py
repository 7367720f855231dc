"""Interop: pympp 0.16's paying client (the test-only peer) pays our server over the devnet.

Shows the wire format (challenge, credential, receipt, attribution memo) is what the reference
Python SDK speaks.  pympp signs ``valid_before = now + 60 s``, beyond the T4 devnet's 30 s
expiring-nonce window, so the peer is configured with 25 s (pympp.md, "test peer").
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import anyio
import pytest
from server_harness import paid_server, server_config

from mpp_claude.devnet import Devnet
from mpp_claude.protocol.receipt import parse_receipt
from mpp_claude.server.stores import MemoryStore
from mpp_claude.server.upstreams import LocalUpstream
from mpp_claude.tempo import tip20

pytestmark = pytest.mark.devnet

mpp_client = pytest.importorskip("mpp.client")
tempo_client = pytest.importorskip("mpp.methods.tempo.client")
tempo_account = pytest.importorskip("mpp.methods.tempo.account")


@pytest.fixture
def short_window(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setattr(tempo_client, "EXPIRING_NONCE_VALID_BEFORE_SECS", 25)
    yield


def test_pympp_client_pays_our_server(devnet: Devnet, funded_account: Any, short_window: None) -> None:
    """pympp's client gets 402 from our server, pays it, and receives a 200 with our receipt."""
    recipient = "0x" + "5a" * 20
    upstream = LocalUpstream()
    with paid_server(server_config(devnet.rpc_url, devnet.chain_id, recipient=recipient),
                     upstream=upstream, store=MemoryStore()) as (url, _):
        account = tempo_account.TempoAccount.from_key("0x" + bytes(funded_account.key).hex())
        method = tempo_client.charge(account=account, chain_id=devnet.chain_id, rpc_url=devnet.rpc_url,
                                     currencies=[tip20.PATH_USD])

        async def call() -> Any:
            async with mpp_client.Mpp(methods=[method]).client(timeout=30) as http:
                return await http.post(url + "/v1/chat/completions", json={
                    "model": "claude-haiku-4-5", "max_tokens": 32,
                    "messages": [{"role": "user", "content": "hello from pympp"}]})

        before = devnet.balance(recipient)
        response = anyio.run(call)
    assert response.status_code == 200, response.text
    assert response.json()["object"] == "chat.completion"
    receipt = parse_receipt(response.headers["payment-receipt"])
    assert devnet.rpc.receipt(receipt.reference) is not None
    assert devnet.balance(recipient) > before
    assert upstream.calls == 1
