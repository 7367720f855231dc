"""Peer server for ``server_bench.py``: pympp 0.16 gating the same paid work (test-only peer).

``python bench/_pympp_server.py PORT RPC_URL CHAIN_ID RECIPIENT``

The endpoint does what mpp_claude's chat route does after payment: OpenAI body -> Anthropic
body, the offline local upstream, Anthropic message -> chat.completion.  pympp verifies and
settles the Tempo charge (pull mode, in-memory replay store).  Devnet shim (pympp.md): anvil
1.7.1 takes only ``[raw]`` for ``eth_sendRawTransactionSync``, so the RPC transport trims the
timeout parameter pympp adds.
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any

import httpx
import uvicorn
from mpp.methods.tempo import server as tempo
from mpp.server.decorator import pay
from mpp.server.mpp import Mpp
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from mpp_claude.convert.request import chat_request_to_messages
from mpp_claude.convert.response import message_to_chat_completion
from mpp_claude.server.upstreams import LocalUpstream

PATH_USD = "0x20c0000000000000000000000000000000000000"
SECRET = "bench-peer-secret-0123456789abcdefghijkl"
AMOUNT = "0.01"


class AnvilShim(httpx.AsyncHTTPTransport):
    """Drop the timeout parameter of eth_sendRawTransactionSync (anvil 1.7.1 refuses it)."""

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        if isinstance(body, dict) and body.get("method") == "eth_sendRawTransactionSync":
            body["params"] = body["params"][:1]
            request = httpx.Request(request.method, request.url, headers={"content-type": "application/json"},
                                    content=json.dumps(body).encode())
        return await super().handle_async_request(request)


def build(rpc_url: str, chain_id: int, recipient: str) -> Starlette:
    methods = tempo.charge(recipient=recipient, chain_id=chain_id, rpc_url=rpc_url, currencies=[PATH_USD],
                           http_client=httpx.AsyncClient(transport=AnvilShim()))
    mpp = Mpp(methods=methods, realm="bench.peer", secret_key=SECRET)
    upstream = LocalUpstream()

    @pay(mpp.charge(amount=AMOUNT))
    async def chat(request: Request, credential: Any, receipt: Any) -> JSONResponse:
        body = json.loads(await request.body())
        mreq = chat_request_to_messages(body)
        up = await upstream.send(dict(mreq.body), stream=False)
        return JSONResponse(message_to_chat_completion(up.json, model=mreq.requested_model,
                                                       created=int(time.time()), request=mreq))

    return Starlette(routes=[Route("/v1/chat/completions", chat, methods=["POST"])])


def main() -> int:
    port, rpc_url, chain_id, recipient = int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), sys.argv[4]
    uvicorn.run(build(rpc_url, chain_id, recipient), host="127.0.0.1", port=port, log_level="warning",
                access_log=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
