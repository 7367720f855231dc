"""The paid retry that reuses its 402's analysis is served exactly as one analysed afresh (devnet)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from server_harness import running, server_config

from mpp_claude.client import MppClient, Wallet
from mpp_claude.devnet import Devnet
from mpp_claude.server.analysis import Analyses
from mpp_claude.server.app import create_app
from mpp_claude.server.stores import MemoryStore
from mpp_claude.server.upstreams import LocalUpstream

pytestmark = pytest.mark.devnet

JSON = {"content-type": "application/json"}

CHAT = {"model": "claude-haiku-4-5", "max_tokens": 40, "stop": ["zz"], "seed": 1,
        "messages": [{"role": "system", "content": "brief"}, {"role": "user", "content": "hello"}]}
MESSAGES = {"model": "claude-haiku-4-5", "max_tokens": 40, "system": "brief",
            "messages": [{"role": "user", "content": [{"type": "text", "text": "hello"}]}]}


class _Counting(Analyses):
    """Counts the analyses taken."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.taken = 0

    def take(self, route: str, body: bytes) -> Any | None:
        found = super().take(route, body)
        self.taken += found is not None
        return found


@pytest.mark.parametrize(("path", "payload"), [("/v1/chat/completions", CHAT), ("/v1/messages", MESSAGES)])
def test_reused_analysis_serves_the_same_request(devnet: Devnet, funded_account: Any, path: str,
                                                 payload: dict[str, Any]) -> None:
    """Same upstream request, status and answer headers (but the receipt) with and without reuse."""
    upstream = LocalUpstream(seed=b"reuse")
    app = create_app(server_config(devnet.rpc_url, devnet.chain_id), store=MemoryStore(), upstream=upstream)
    body = json.dumps(payload).encode()
    with running(app) as url:
        client = MppClient(Wallet.from_private_key(bytes(funded_account.key)), rpc_url=devnet.rpc_url,
                           allowed_origins=[url], ledger=None)
        svc = app.state.services
        answers = []
        for kept in (True, False):
            svc.analyses = _Counting() if kept else _Counting(max_body=0)  # max_body=0: nothing is kept
            answers.append(client.post(url + path, content=body, headers=JSON))
            assert svc.analyses.taken == (1 if kept else 0) and len(svc.analyses) == 0
    reused, afresh = answers
    assert reused.status_code == afresh.status_code == 200
    assert len(upstream.received) == 2 and upstream.received[0] == upstream.received[1]

    def headers(r: Any) -> dict[str, str]:
        return {k: v for k, v in r.headers.items() if k not in ("payment-receipt", "date", "content-length")}

    assert headers(reused) == headers(afresh)
    assert json.loads(reused.content).keys() == json.loads(afresh.content).keys()
