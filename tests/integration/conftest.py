"""Fixtures for integration tests: a real redis-server, and ASGI apps served by uvicorn on loopback."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from mpp_claude.server.background import serve_in_thread


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _redis_ping(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as s:
            s.sendall(b"PING\r\n")
            return s.recv(16).startswith(b"+PONG")
    except OSError:
        return False


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """URL of a real Redis: ``MPP_CLAUDE_REDIS_URL`` if set, else a private ``redis-server`` on loopback.

    The private server keeps nothing on disk (``--save '' --appendonly no``) and is
    stopped at the end of the session.  Without ``redis-server`` the test is skipped,
    except under CI (env ``CI`` set), where that is a failure.
    """
    env_url = os.environ.get("MPP_CLAUDE_REDIS_URL")
    if env_url:
        yield env_url
        return
    exe = shutil.which("redis-server")
    if exe is None:
        reason = ("redis-server is not installed (apt-get install redis-server) "
                  "and MPP_CLAUDE_REDIS_URL is unset")
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    port = _free_port()
    with tempfile.TemporaryDirectory(prefix="mpp-redis-") as workdir:
        proc = subprocess.Popen(
            [exe, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", workdir, "--daemonize", "no"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + 15
            while not _redis_ping(port):
                if proc.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"redis-server did not start on port {port} (exit code {proc.poll()})")
                time.sleep(0.05)
            yield f"redis://127.0.0.1:{port}/0"
        finally:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


#: uvicorn on a free loopback port in a thread, yielding the base URL (shared with demo/examples).
serve_asgi = serve_in_thread


@pytest.fixture
def serve() -> Iterator[Callable[[Any], str]]:
    """Factory: ``serve(app)`` starts uvicorn for ``app`` on loopback and returns its base URL.

    Every server started through it is stopped at the end of the test.
    """
    with contextlib.ExitStack() as stack:
        yield lambda app: stack.enter_context(serve_asgi(app))
