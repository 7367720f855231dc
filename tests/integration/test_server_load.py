"""Bounded load on loopback: 1 000 paid requests from 8 concurrent clients.

Every payment must match exactly one served response (one usage row, one receipt), nothing is
charged twice, and no receipt is lost.  Pull (``transaction``) mode: the server broadcasts.
"""

from __future__ import annotations

import json
import threading
from typing import Any

import anyio
import httpx2
import pytest
from eth_account import Account
from paying_transport import PayingTransport
from server_harness import paid_server, server_config

from mpp_claude.devnet import Devnet
from mpp_claude.protocol.receipt import parse_receipt
from mpp_claude.server.stores import MemoryStore
from mpp_claude.server.upstreams import LocalUpstream

pytestmark = [pytest.mark.devnet, pytest.mark.slow, pytest.mark.timeout(300)]

CLIENTS = 8
REQUESTS = 1000


def test_thousand_paid_requests_from_eight_clients(devnet: Devnet) -> None:
    """1000 paid requests, 8 clients: 1000 distinct payments, 1000 answers, balance == sum of amounts."""
    recipient = Account.create().address
    upstream, store = LocalUpstream(seed=b"load"), MemoryStore()
    payers = [devnet.new_funded_account(1000 * 10**6) for _ in range(CLIENTS)]
    results: list[tuple[int, str | None, str | None, int]] = []
    lock = threading.Lock()
    errors: list[BaseException] = []

    def client(index: int, url: str) -> None:
        transport = PayingTransport(payers[index], devnet.rpc_url)
        try:
            with httpx2.Client(transport=transport, base_url=url, timeout=60) as http:
                for n in range(index, REQUESTS, CLIENTS):
                    body = {"model": "claude-haiku-4-5", "max_tokens": 32,
                            "messages": [{"role": "user", "content": f"request {n}"}]}
                    r = http.post("/v1/chat/completions", content=json.dumps(body).encode(),
                                  headers={"content-type": "application/json"})
                    payment = transport.payments[-1]
                    reference = parse_receipt(r.headers["payment-receipt"]).reference \
                        if "payment-receipt" in r.headers else None
                    with lock:
                        results.append((r.status_code, payment.tx_hash, reference,
                                        int(payment.challenge.request_data["amount"])))
        except BaseException as exc:  # surfaced below with the thread's context
            errors.append(exc)

    before = devnet.balance(recipient)
    with paid_server(server_config(devnet.rpc_url, devnet.chain_id, recipient=recipient),
                     upstream=upstream, store=store) as (url, _):
        threads = [threading.Thread(target=client, args=(i, url)) for i in range(CLIENTS)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert not errors, errors[0]
    assert len(results) == REQUESTS
    assert all(status == 200 for status, *_ in results)
    paid = [str(tx) for _, tx, _, _ in results]
    assert len(set(paid)) == REQUESTS  # 1000 distinct payments
    assert [str(ref) for _, _, ref, _ in results] == paid  # every receipt names its own payment
    usage: list[dict[str, Any]] = list(anyio.run(store.records, "usage"))
    assert sorted(row["reference"] for row in usage) == sorted(paid)  # one served answer per payment
    assert upstream.calls == REQUESTS
    assert devnet.balance(recipient) - before == sum(amount for *_, amount in results)  # no double charge
