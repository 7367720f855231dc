"""Run the paid server on loopback for integration tests and benchmarks (uvicorn in a thread)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from eth_account import Account

from mpp_claude.server.app import create_app
from mpp_claude.server.background import serve_in_thread
from mpp_claude.server.config import ServerConfig, build_config

SECRET = "integration-test-secret-0123456789abcdef"


def server_config(rpc_url: str, chain_id: int, *, recipient: str | None = None, store: str = "memory://",
                  **extra: Any) -> ServerConfig:
    """A config for the devnet with a fresh recipient (unless given)."""
    flags: dict[str, Any] = dict(secret_key=SECRET, recipient=recipient or Account.create().address,
                                 rpc_url=rpc_url, chain_id=chain_id, store=store, realm="test.mpp-claude")
    flags.update(extra)
    return build_config(flags=flags)


#: uvicorn serving an app on 127.0.0.1 in a daemon thread for the block; yields its base URL.
running = serve_in_thread


@contextmanager
def paid_server(config: ServerConfig, **app_kwargs: Any) -> Iterator[tuple[str, Any]]:
    """``create_app(config, **app_kwargs)`` on loopback; yields ``(base_url, app)``."""
    app = create_app(config, **app_kwargs)
    with running(app) as url:
        yield url, app


@dataclass
class SessionServer:
    """A session-enabled app on a SQLite store (not yet running), its payee and a funded payer."""

    app: Any
    payee: Any
    payer: Any
    store: Path


def session_server(devnet: Any, tmp_path: Path, seed: bytes) -> SessionServer:
    """``create_app`` + ``enable_sessions`` on ``tmp_path/server.sqlite3`` with the local upstream;
    the payee holds fee tokens for its escrow transactions, the payer pathUSD and fee tokens."""
    from mpp_claude.server.sessions import SessionSettings, enable_sessions
    from mpp_claude.server.stores import SQLiteStore
    from mpp_claude.server.upstreams import LocalUpstream
    from mpp_claude.tempo import tip20

    fee = tip20.ALPHA_USD
    payee = Account.create()
    devnet.fund(payee.address, 5 * tip20.UNIT, token=fee, native=False)
    settings = SessionSettings(payee_key=payee.key.hex(), escrow=devnet.escrow_address, fee_token=fee,
                               suggested_deposit=tip20.UNIT)
    config = server_config(devnet.rpc_url, devnet.chain_id, recipient=payee.address)
    store = tmp_path / "server.sqlite3"
    app = enable_sessions(create_app(config, upstream=LocalUpstream(seed=seed), store=SQLiteStore(store)),
                          settings)
    payer = devnet.new_funded_account(10 * tip20.UNIT)
    devnet.fund(payer.address, 5 * tip20.UNIT, token=fee, native=False)
    return SessionServer(app, payee, payer, store)


async def asgi_post(app: Any, path: str, body: bytes, auth: str | None = None,
                    sent: list[dict[str, Any]] | None = None, **headers: str) -> list[dict[str, Any]]:
    """POST a JSON ``body`` to the ASGI ``app`` in this event loop (no sockets); returns the ASGI
    messages the app sent, also appended to ``sent`` as they come (to watch a request in flight).
    Header keywords spell ``-`` as ``_``; the client stays connected once the body is read."""
    out = [] if sent is None else sent
    chunks = [{"type": "http.request", "body": body, "more_body": False}]
    hdrs = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    hdrs += [(k.replace("_", "-").encode(), v.encode()) for k, v in headers.items()]
    if auth is not None:
        hdrs.append((b"authorization", auth.encode()))
    scope = {"type": "http", "asgi": {"version": "3.0", "spec_version": "2.4"}, "http_version": "1.1",
             "method": "POST", "scheme": "http", "path": path, "raw_path": path.encode(), "query_string": b"",
             "root_path": "", "headers": hdrs, "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 80),
             "state": {}, "app": app}

    async def receive() -> dict[str, Any]:
        if chunks:
            return chunks.pop(0)
        await asyncio.Event().wait()  # the client stays connected
        raise AssertionError("unreachable")

    async def send(message: dict[str, Any]) -> None:
        out.append(message)

    await app(scope, receive, send)
    return out
