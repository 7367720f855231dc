"""The RPC clients' lean HTTP/1.1 pools over real loopback sockets: reuse, stale connections,
early closes and timeouts become ``RpcUnavailable`` (never a hang, never a silent retry)."""

from __future__ import annotations

import asyncio
import json
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from scripted_http import Server, self_signed_certificate, server_tls

from mpp_claude.errors import RpcUnavailable
from mpp_claude.tempo import _http1
from mpp_claude.tempo.rpc import AsyncRpcClient, RpcClient

Answer = Callable[[socket.socket, bytes], bool]  # returns False to close the connection


def _ok(conn: socket.socket, request: bytes) -> bool:
    call = json.loads(request.split(b"\r\n\r\n", 1)[1])
    body = json.dumps({"jsonrpc": "2.0", "id": call["id"], "result": "0x7a69"}).encode()
    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
    return True


class Node(Server):
    """A loopback JSON-RPC node whose answers the test scripts; counts connections and calls."""

    def __init__(self, answer: Answer = _ok, tls: ssl.SSLContext | None = None) -> None:
        super().__init__(lambda server, conn, request: answer(conn, request), tls)
        self.url += "/"

    @property
    def calls(self) -> int:
        return len(self.requests)


@contextmanager
def node(answer: Answer = _ok) -> Iterator[Node]:
    n = Node(answer).start()
    try:
        yield n
    finally:
        n.close()


def test_sync_reuses_one_connection() -> None:
    with node() as n, RpcClient(n.url) as rpc:
        assert [rpc.call("eth_chainId") for _ in range(20)] == ["0x7a69"] * 20
        assert n.connections == 1 and n.calls == 20


def test_sync_reconnects_after_the_node_dropped_an_idle_connection() -> None:
    with node() as n, RpcClient(n.url) as rpc:
        rpc.call("eth_chainId")
        n.drop_idle()
        time.sleep(0.05)
        assert rpc.call("eth_chainId") == "0x7a69"
        assert n.connections == 2 and n.calls == 2  # the stale socket was not written to


def test_sync_threads_share_the_pool() -> None:
    with node() as n, RpcClient(n.url) as rpc:
        results: list[str] = []
        threads = [threading.Thread(target=lambda: results.extend(rpc.call("eth_chainId") for _ in range(10)))
                   for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert results == ["0x7a69"] * 40 and n.connections <= 4


def _half_answer(conn: socket.socket, request: bytes) -> bool:
    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 50\r\n\r\n{\"jsonrpc\":")
    return False


def _silence(conn: socket.socket, request: bytes) -> bool:
    time.sleep(2)
    return False


def _garbage(conn: socket.socket, request: bytes) -> bool:
    conn.sendall(b"SSH-2.0-OpenSSH_9.6\r\n\r\n")
    return False


def _http_error(conn: socket.socket, request: bytes) -> bool:
    conn.sendall(b"HTTP/1.1 503 Service Unavailable\r\nTransfer-Encoding: chunked\r\n\r\n"
                 b"4\r\nbusy\r\n0\r\n\r\n")
    return True


@pytest.mark.parametrize(("answer", "expected"), [
    (_half_answer, "middle of the body"), (_silence, "timed out"), (_garbage, "status line"),
    (_http_error, "non-JSON answer \\(HTTP 503\\)"),
])
def test_sync_failures_are_typed(answer: Answer, expected: str) -> None:
    with node(answer) as n, RpcClient(n.url, timeout=0.3) as rpc:
        t0 = time.monotonic()
        with pytest.raises(RpcUnavailable, match=expected):
            rpc.send_raw(b"\x76\x01")
        assert time.monotonic() - t0 < 1.5
        assert n.calls == 1  # a broadcast is never sent twice


def test_connection_refused_is_typed() -> None:
    sock = socket.create_server(("127.0.0.1", 0))
    url = f"http://127.0.0.1:{sock.getsockname()[1]}/"
    sock.close()
    with RpcClient(url, timeout=1) as rpc, pytest.raises(RpcUnavailable, match="connect failed"):
        rpc.call("eth_chainId")


def test_async_reuse_reconnect_and_failures() -> None:
    async def run() -> None:
        with node() as n:
            rpc = AsyncRpcClient(n.url)
            results = await asyncio.gather(*(rpc.call("eth_chainId") for _ in range(8)))
            assert results == ["0x7a69"] * 8
            first = n.connections
            for _ in range(10):
                await rpc.call("eth_chainId")
            assert n.connections == first <= 8  # the concurrent ones are kept and reused
            n.drop_idle()
            await asyncio.sleep(0.05)
            assert await rpc.call("eth_chainId") == "0x7a69"
            await rpc.aclose()
        failures = [(_half_answer, "connection"), (_silence, "timed out"), (_garbage, "status line")]
        for answer, expected in failures:
            with node(answer) as n:
                rpc = AsyncRpcClient(n.url, timeout=0.3)
                with pytest.raises(RpcUnavailable, match=expected):
                    await rpc.send_raw(b"\x76\x01")
                assert n.calls == 1
                await rpc.aclose()

    asyncio.run(run())


def test_async_cancellation_closes_the_connection() -> None:
    async def run() -> None:
        with node(_silence) as n:
            rpc = AsyncRpcClient(n.url, timeout=5)
            task = asyncio.create_task(rpc.call("eth_chainId"))
            await asyncio.sleep(0.1)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            await rpc.aclose()
            assert n.calls == 1

    asyncio.run(run())


def test_async_client_used_from_two_event_loops() -> None:
    """A connection opened under one loop is never used from another (asyncio.run twice)."""
    with node() as n:
        rpc = AsyncRpcClient(n.url)
        assert asyncio.run(rpc.call("eth_chainId")) == "0x7a69"
        assert asyncio.run(rpc.call("eth_chainId")) == "0x7a69"
        assert n.connections == 2


@pytest.fixture
def tls_node(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[Node]:
    """A node behind TLS with a throw-away CA-less self-signed certificate for 127.0.0.1, trusted
    through ``SSL_CERT_FILE`` (as a user pointing at a private CA would)."""
    cert, key = self_signed_certificate(tmp_path)
    monkeypatch.setenv("SSL_CERT_FILE", str(cert))
    monkeypatch.setattr(_http1, "_tls_context", None)  # built again from the environment
    n = Node(tls=server_tls(cert, key))
    n.start()
    try:
        yield n
    finally:
        n.close()
        monkeypatch.setattr(_http1, "_tls_context", None)


def test_tls_sync_and_async(tls_node: Node) -> None:
    with RpcClient(tls_node.url) as rpc:
        assert [rpc.call("eth_chainId") for _ in range(3)] == ["0x7a69"] * 3

    async def run() -> list[Any]:
        rpc = AsyncRpcClient(tls_node.url)
        try:
            return [await rpc.call("eth_chainId") for _ in range(3)]
        finally:
            await rpc.aclose()

    assert asyncio.run(run()) == ["0x7a69"] * 3
    assert tls_node.calls == 6 and tls_node.connections == 2  # one kept-alive TLS connection each


def test_tls_refuses_an_untrusted_certificate(tls_node: Node, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SSL_CERT_FILE")
    monkeypatch.setattr(_http1, "_tls_context", None)  # certifi's CAs do not know this certificate
    with RpcClient(tls_node.url, timeout=2) as rpc, pytest.raises(RpcUnavailable, match="CERTIFICATE_VERIFY"):
        rpc.call("eth_chainId")
