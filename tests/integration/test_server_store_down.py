"""A failing replay store is a retryable 503 and never a broadcast, never a 500."""

from __future__ import annotations

import json
import sqlite3
from typing import Any

import httpx2
import pytest
from eth_account import Account
from paying_transport import pay_challenge
from server_harness import paid_server, server_config

from mpp_claude.devnet import Devnet
from mpp_claude.protocol.challenge import parse_challenges
from mpp_claude.server.stores import MemoryStore
from mpp_claude.server.upstreams import LocalUpstream
from mpp_claude.tempo.signer import LocalSigner

pytestmark = pytest.mark.devnet

BODY = json.dumps({"model": "claude-haiku-4-5", "max_tokens": 50,
                   "messages": [{"role": "user", "content": "hi"}]}).encode()


class LockedStore(MemoryStore):
    """A store whose single-use claims fail as a locked SQLite database does."""

    async def claim(self, key: str, ttl_s: float) -> bool:
        raise sqlite3.OperationalError("database is locked")


def test_store_failure_is_503_and_nothing_moves(devnet: Devnet, funded_account: Any) -> None:
    """The claim fails before broadcast: 503 with Retry-After, no upstream call, no payment."""
    recipient = Account.create().address
    upstream = LocalUpstream(seed=b"down")
    config = server_config(devnet.rpc_url, devnet.chain_id, recipient=recipient)
    with paid_server(config, upstream=upstream, store=LockedStore()) as (url, _), \
            httpx2.Client(base_url=url, timeout=30) as http:
        hdrs = {"content-type": "application/json"}
        first = http.post("/v1/chat/completions", content=BODY, headers=hdrs)
        assert first.status_code == 402
        challenge = parse_challenges(first.headers.get_list("www-authenticate"))[0]
        auth, _ = pay_challenge(challenge, LocalSigner.from_account(funded_account), devnet.rpc)
        before = devnet.balance(funded_account.address)
        paid = http.post("/v1/chat/completions", content=BODY, headers={**hdrs, "authorization": auth})
    assert paid.status_code == 503, paid.text
    assert paid.headers["retry-after"] == "1"
    assert "store" in paid.json()["error"]["message"]
    assert "payment-receipt" not in paid.headers
    assert upstream.calls == 0
    devnet.mine()
    assert devnet.balance(funded_account.address) == before
    assert devnet.balance(recipient) == 0
