"""``Idempotency-Key`` on session-paid requests, on the devnet: a retry with the same key, payer
and body gets the stored answer without a second debit of the channel or a second upstream
call; the same key with another body is a 422."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from server_harness import running, session_server

from mpp_claude.client import MppClient, Policy, SessionPolicy, Wallet, session_receipt_of
from mpp_claude.client._session_shell import attach_session
from mpp_claude.client.ledger import Ledger
from mpp_claude.devnet import Devnet
from mpp_claude.server.sessions import SQLiteBook
from mpp_claude.server.stores import SQLiteStore
from mpp_claude.tempo import tip20

pytestmark = pytest.mark.devnet

MODEL = "claude-haiku-4-5"
FEE = tip20.ALPHA_USD


def spent_in_books(path: Path, channel_id: str) -> int:
    book = SQLiteBook(str(path))
    try:
        rec = asyncio.run(book.get(channel_id))
    finally:
        asyncio.run(book.close())
    assert rec is not None
    return rec.account.spent


def usage_count(path: Path) -> int:
    store = SQLiteStore(path)
    try:
        return len(asyncio.run(store.records("usage")))
    finally:
        asyncio.run(store.close())


@pytest.mark.parametrize("path", ["/v1/chat/completions", "/v1/messages"])
def test_retry_replays_without_a_second_debit(devnet: Devnet, tmp_path: Path, path: str) -> None:
    srv = session_server(devnet, tmp_path, b"idem")
    app, payee, acct, store = srv.app, srv.payee, srv.payer, srv.store

    def body(text: str, stream: bool = False) -> dict[str, Any]:
        return {"model": MODEL, "max_tokens": 30, "stream": stream,
                "messages": [{"role": "user", "content": text}]}

    with running(app) as url:
        c = MppClient(Wallet.from_private_key(bytes(acct.key)), rpc_url=devnet.rpc_url, allowed_origins=[url],
                      ledger=Ledger(tmp_path / "ledger.sqlite3"), policy=Policy(max_per_minute=120))
        attach_session(c, SessionPolicy(max_deposit="3", deposit="1", fee_token=FEE,
                                        escrows={devnet.chain_id: devnet.escrow_address}))
        first = c.post(url + path, json=body("open the channel"))
        assert first.status_code == 200
        cid = first.headers["payment-session"]

        # JSON: served once, replayed once
        one = c.post(url + path, json=body("a"), headers={"idempotency-key": "k-json"})
        receipt = session_receipt_of(one)
        assert one.status_code == 200 and receipt is not None and receipt.amount
        spent, used = spent_in_books(store, cid), usage_count(store)
        assert spent == receipt.spent
        again = c.post(url + path, json=body("a"), headers={"idempotency-key": "k-json"})
        assert again.status_code == 200 and again.headers.get("idempotent-replayed") == "true"
        assert again.content == one.content
        assert again.headers["payment-receipt"] == one.headers["payment-receipt"]
        assert spent_in_books(store, cid) == spent and usage_count(store) == used
        other = c.post(url + path, json=body("b"), headers={"idempotency-key": "k-json"})
        assert other.status_code == 422 and spent_in_books(store, cid) == spent

        # SSE: the stream as sent (final receipt frame included) is replayed
        sse = {"idempotency-key": "k-sse"}
        with c.stream("POST", url + path, json=body("s", stream=True), headers=sse) as r:
            streamed = r.read()
            sse_receipt = session_receipt_of(r)
        assert r.status_code == 200 and sse_receipt is not None and sse_receipt.amount
        spent, used = spent_in_books(store, cid), usage_count(store)
        assert spent == sse_receipt.spent
        with c.stream("POST", url + path, json=body("s", stream=True), headers=sse) as r:
            replayed = r.read()
            replay_receipt = session_receipt_of(r)
        assert r.headers.get("idempotent-replayed") == "true" and replayed == streamed
        assert replay_receipt is not None and replay_receipt.spent == sse_receipt.spent
        assert spent_in_books(store, cid) == spent and usage_count(store) == used

        (closed,) = c.session_transport.close_sessions()  # type: ignore[attr-defined]
        assert closed.spent == spent
    assert devnet.balance(payee.address) == spent
