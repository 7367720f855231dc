"""Interop: our paying client against a pympp 0.16 server (the peer verifies and settles) on the devnet.

pympp builds its own challenges (``_mppx_scope`` in the request, a nonce in ``opaque``) and
checks our credential with its own code: a 200 with a receipt and one transfer on chain shows
our wire format and Tempo transaction are what the reference SDK expects.  Devnet shim taken from
bench/_pympp_server.py: anvil 1.7.1 takes only ``[raw]`` for ``eth_sendRawTransactionSync``.
"""

from __future__ import annotations

import asyncio
import importlib.util
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from eth_account import Account
from server_harness import running

from mpp_claude.client import AsyncMppClient, MppClient, Wallet, receipt_of
from mpp_claude.devnet import Devnet
from mpp_claude.tempo import tip20

pytestmark = pytest.mark.devnet

SECRET = "interop-peer-secret-0123456789abcdefghijkl"
BENCH_PEER = Path(__file__).resolve().parents[2] / "bench" / "_pympp_server.py"


def _anvil_shim() -> type[httpx.AsyncHTTPTransport]:
    """The devnet shim the pympp bench peer uses (one copy, in bench/_pympp_server.py)."""
    spec = importlib.util.spec_from_file_location("_pympp_server", BENCH_PEER)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    shim: type[httpx.AsyncHTTPTransport] = module.AnvilShim
    return shim


def _peer(rpc_url: str, chain_id: int, recipient: str) -> Any:
    from mpp.methods.tempo import server as tempo
    from mpp.server import Mpp
    from mpp.server.decorator import pay
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    rpc_http = httpx.AsyncClient(transport=_anvil_shim()())
    methods = tempo.charge(recipient=recipient, chain_id=chain_id, rpc_url=rpc_url,
                           currencies=[tip20.PATH_USD], http_client=rpc_http)
    mpp = Mpp(methods=methods, realm="interop.peer", secret_key=SECRET)

    @pay(mpp.charge(amount="0.01"))
    async def paid(request: Request, credential: Any, receipt: Any) -> JSONResponse:
        return JSONResponse({"ok": True})

    return Starlette(routes=[Route("/paid", paid, methods=["POST"])])


@pytest.fixture(scope="module")
def peer(devnet: Devnet) -> Iterator[tuple[str, str]]:
    recipient = Account.create().address
    with running(_peer(devnet.rpc_url, devnet.chain_id, recipient)) as url:
        yield url, recipient


def test_sync_client_pays_pympp_server(devnet: Devnet, peer: tuple[str, str], funded_account: Any) -> None:
    url, recipient = peer
    client = MppClient(Wallet.from_private_key(bytes(funded_account.key)), rpc_url=devnet.rpc_url,
                       allowed_origins=[url], ledger=None)
    before = devnet.balance(recipient)
    response = client.post(url + "/paid", json={"q": 1})
    assert response.status_code == 200, response.text
    receipt = receipt_of(response)
    assert receipt is not None and receipt.receipt is not None and receipt.reference == receipt.tx_hash
    assert devnet.balance(recipient) - before == 10_000 == receipt.amount
    client.close()


def test_async_client_pays_pympp_server(devnet: Devnet, peer: tuple[str, str], funded_account: Any) -> None:
    url, recipient = peer
    before = devnet.balance(recipient)

    async def run() -> Any:
        async with AsyncMppClient(Wallet.from_private_key(bytes(funded_account.key)), rpc_url=devnet.rpc_url,
                                  allowed_origins=[url], ledger=None) as client:
            return await client.post(url + "/paid", json={"q": 2})

    response = asyncio.run(run())
    assert response.status_code == 200 and receipt_of(response) is not None
    assert devnet.balance(recipient) - before == 10_000
