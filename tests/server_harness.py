"""Run the paid server on loopback for integration tests and benchmarks (uvicorn in a thread)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import uvicorn
from eth_account import Account

from mpp_claude.server.app import create_app
from mpp_claude.server.config import ServerConfig, build_config

SECRET = "integration-test-secret-0123456789abcdef"


def server_config(rpc_url: str, chain_id: int, *, recipient: str | None = None, store: str = "memory://",
                  **extra: Any) -> ServerConfig:
    """A config for the devnet with a fresh recipient (unless given)."""
    flags: dict[str, Any] = dict(secret_key=SECRET, recipient=recipient or Account.create().address,
                                 rpc_url=rpc_url, chain_id=chain_id, store=store, realm="test.mpp-claude")
    flags.update(extra)
    return build_config(flags=flags)


class ServerThread:
    """uvicorn serving ``app`` on 127.0.0.1 in a daemon thread."""

    def __init__(self, app: Any) -> None:
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning",
                                                    lifespan="on", timeout_graceful_shutdown=2))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def start(self, timeout: float = 15.0) -> str:
        self.thread.start()
        deadline = time.monotonic() + timeout
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the test server did not start")
            time.sleep(0.005)
        port = self.server.servers[0].sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}"

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


@contextmanager
def running(app: Any) -> Iterator[str]:
    """Serve ``app`` for the duration of the block; yields its base URL."""
    thread = ServerThread(app)
    url = thread.start()
    try:
        yield url
    finally:
        thread.stop()


@contextmanager
def paid_server(config: ServerConfig, **app_kwargs: Any) -> Iterator[tuple[str, Any]]:
    """``create_app(config, **app_kwargs)`` on loopback; yields ``(base_url, app)``."""
    app = create_app(config, **app_kwargs)
    with running(app) as url:
        yield url, app
