"""Run the paid server on loopback for integration tests and benchmarks (uvicorn in a thread)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
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
