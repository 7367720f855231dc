"""The session intent switched on through the server configuration and the client's public API."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import openai
import pytest
from eth_account import Account
from server_harness import running, server_config

from mpp_claude.client import MppClient, Policy, SessionPolicy, Wallet, session_receipt_of
from mpp_claude.client.ledger import Ledger
from mpp_claude.devnet import Devnet
from mpp_claude.server.app import create_app
from mpp_claude.server.stores import MemoryStore
from mpp_claude.server.upstreams import LocalUpstream
from mpp_claude.tempo import tip20

pytestmark = pytest.mark.devnet

FEE = tip20.ALPHA_USD
MSG: Any = [{"role": "user", "content": "hello"}]


def test_configured_server_and_session_client(devnet: Devnet, tmp_path: Path) -> None:
    payee = Account.create()
    devnet.fund(payee.address, 5 * tip20.UNIT, token=FEE, native=False)
    config = server_config(devnet.rpc_url, devnet.chain_id, recipient=payee.address, sessions=True,
                           session_payee_key=payee.key.hex(), session_escrow=devnet.escrow_address,
                           session_fee_token=FEE)
    assert config.sessions is not None
    acct = devnet.new_funded_account(5 * tip20.UNIT)
    devnet.fund(acct.address, 5 * tip20.UNIT, token=FEE, native=False)
    start = devnet.balance(acct.address)
    app = create_app(config, upstream=LocalUpstream(seed=b"cfg"), store=MemoryStore())
    with running(app) as url:
        policy = SessionPolicy(max_deposit="2", deposit="1", fee_token=FEE,
                               escrows={devnet.chain_id: devnet.escrow_address})
        wallet = Wallet.from_private_key(bytes(acct.key))
        with MppClient(wallet, rpc_url=devnet.rpc_url, allowed_origins=[url], session=policy,
                       ledger=Ledger(tmp_path / "ledger.sqlite3"),
                       policy=Policy(max_per_minute=100)) as client:
            oai = openai.OpenAI(base_url=url + "/v1", api_key="unused", http_client=client, max_retries=0)
            for _ in range(3):
                with oai.chat.completions.with_streaming_response.create(
                        model="claude-haiku-4-5", messages=MSG, max_tokens=30, stream=True) as raw:
                    assert b"payment-" not in b"".join(raw.http_response.iter_bytes())
                    receipt = session_receipt_of(raw)
                    assert receipt is not None and receipt.amount
            (closed,) = client.close_sessions()
    assert receipt is not None and closed.tx_hash
    assert devnet.balance(payee.address) == closed.spent == receipt.spent
    assert devnet.balance(acct.address) == start - closed.spent


def test_default_client_ignores_session_offers(devnet: Devnet, tmp_path: Path) -> None:
    """Without ``session=`` the client pays the charge offer of the same 402 (opt-in only)."""
    payee = Account.create()
    config = server_config(devnet.rpc_url, devnet.chain_id, recipient=payee.address, sessions=True,
                           session_payee_key=payee.key.hex(), session_escrow=devnet.escrow_address)
    acct = devnet.new_funded_account(5 * tip20.UNIT)
    app = create_app(config, upstream=LocalUpstream(seed=b"cfg"), store=MemoryStore())
    wallet = Wallet.from_private_key(bytes(acct.key))
    with running(app) as url, MppClient(wallet, rpc_url=devnet.rpc_url, allowed_origins=[url],
                                        ledger=None) as client:
        oai = openai.OpenAI(base_url=url + "/v1", api_key="unused", http_client=client, max_retries=0)
        oai.chat.completions.create(model="claude-haiku-4-5", messages=MSG, max_tokens=20)
        (paid,) = client.receipts
        assert paid.tx_hash and client.close_sessions() == []
    assert devnet.balance(payee.address) == paid.amount
