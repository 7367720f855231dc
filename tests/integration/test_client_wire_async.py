"""The async clients' lean HTTP/1.1 transport over real loopback sockets, against scripted servers.

Each failure is also sent through ``httpx2.AsyncHTTPTransport`` (httpcore2 over anyio): both must
raise the same ``httpx2`` exception class, since the openai SDK's retries and the paying engine
key on it.  Every test runs its own event loop (``asyncio.run``); some also run under uvloop.
"""

from __future__ import annotations

import asyncio
import gzip
import importlib.util
import socket
import ssl
import threading
from collections.abc import Callable, Coroutine
from typing import Any

import h11
import httpx2
import pytest
from scripted_http import (
    Answer,
    Server,
    cut_short,
    garbage,
    hang_up,
    ok,
    reset_mid_body,
    self_signed_certificate,
    server_tls,
    serving,
    silent,
    slow_ok,
)

from mpp_claude.client import _awire
from mpp_claude.client._awire import AsyncWireTransport, default_async_transport

LOOPS = ["asyncio"] + (["uvloop"] if importlib.util.find_spec("uvloop") else [])


def run(main: Coroutine[Any, Any, Any], loop: str = "asyncio") -> Any:
    if loop == "uvloop":
        import uvloop

        return uvloop.run(main)
    return asyncio.run(main)


async def wait_for(predicate: Callable[[], bool]) -> bool:
    for _ in range(200):
        if predicate():
            return True
        await asyncio.sleep(0.01)
    return predicate()


def client(transport: httpx2.AsyncBaseTransport | None = None, **kwargs: Any) -> httpx2.AsyncClient:
    return httpx2.AsyncClient(transport=transport or AsyncWireTransport(), **kwargs)


@pytest.mark.parametrize("loop", LOOPS)
def test_post_reuses_one_connection_and_writes_once(monkeypatch: pytest.MonkeyPatch, loop: str) -> None:
    writes: list[bytes] = []

    class Recording:
        def __init__(self, inner: Any) -> None:
            self._inner = inner

        def write(self, data: bytes) -> None:
            writes.append(bytes(data))
            self._inner.write(data)

        def __getattr__(self, name: str) -> Any:
            return getattr(self._inner, name)

    made = _awire._Conn.connection_made

    def connection_made(self: _awire._Conn, transport: asyncio.BaseTransport) -> None:
        made(self, transport)
        self.transport = Recording(transport)

    monkeypatch.setattr(_awire._Conn, "connection_made", connection_made)

    async def main() -> None:
        with serving(ok()) as s:
            async with client() as c:
                for i in range(10):
                    r = await c.post(s.url + "/v1/x?q=1", json={"i": i}, headers={"X-Trace": "a"})
                    assert r.status_code == 200 and r.json() == {"ok": True} and r.reason_phrase == "OK"
                    assert r.http_version == "HTTP/1.1"
                assert s.connections == 1 and len(s.requests) == 10
            assert len(writes) == 10  # head and body of each request in one write
            head, body = writes[3].split(b"\r\n\r\n")
            assert head.startswith(b"POST /v1/x?q=1 HTTP/1.1\r\n") and b"\r\nX-Trace: a" in head
            assert body == b'{"i":3}' and s.requests[3] == writes[3]
            assert await wait_for(lambda: s.closed == 1)  # aclose() closed the pooled connection

    run(main(), loop)


def test_same_bytes_as_the_sync_transport() -> None:
    """One encoder for both: the async transport sends what ``WireTransport`` sends."""
    from mpp_claude.client._wire import WireTransport

    with serving(ok()) as s:
        with httpx2.Client(transport=WireTransport()) as c:
            c.post(s.url + "/a", content=b"x" * 5, headers={"X-A": "1"})

        async def main() -> None:
            async with client() as c:
                await c.post(s.url + "/a", content=b"x" * 5, headers={"X-A": "1"})

        run(main())
        sync_bytes, async_bytes = s.requests
        assert sync_bytes.replace(b"python-httpx2", b"") == async_bytes.replace(b"python-httpx2", b"")
        assert async_bytes.endswith(b"\r\n\r\nxxxxx")


def test_content_encoding_is_decoded_by_httpx2() -> None:
    body = gzip.compress(b'{"hello": "world"}' * 50)

    async def main() -> None:
        with serving(ok(body, b"Content-Encoding: gzip\r\n")) as s:
            async with client() as c:
                r = await c.get(s.url)
                assert r.headers["content-encoding"] == "gzip" and r.text == '{"hello": "world"}' * 50

    run(main())


@pytest.mark.parametrize(("method", "head"), [
    ("HEAD", b"HTTP/1.1 200 OK\r\nContent-Length: 50\r\n\r\n"),
    ("GET", b"HTTP/1.1 204 No Content\r\n\r\n"),
    ("GET", b"HTTP/1.1 304 Not Modified\r\nContent-Length: 50\r\n\r\n"),
])
def test_answers_without_a_body_keep_the_connection(method: str, head: bytes) -> None:
    def answer(server: Server, conn: socket.socket, request: bytes) -> bool:
        if request.startswith(b"GET /next"):
            return ok()(server, conn, request)
        conn.sendall(head)
        return True

    async def main() -> None:
        with serving(answer) as s:
            async with client() as c:
                r = await c.request(method, s.url + "/first")
                assert r.content == b""
                assert (await c.get(s.url + "/next")).json() == {"ok": True}
                assert s.connections == 1

    run(main())


@pytest.mark.parametrize("loop", LOOPS)
def test_event_stream_arrives_piece_by_piece(loop: str) -> None:
    """The second event is only sent once the client has read the first: a transport that waited
    for the whole body would never see it (the server gives up and the test fails)."""
    released = threading.Event()

    def answer(server: Server, conn: socket.socket, request: bytes) -> bool:
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
                     b"Transfer-Encoding: chunked\r\n\r\nd\r\ndata: first\n\n\r\n")
        if server.gate.wait(10):
            released.set()
            conn.sendall(b"e\r\ndata: second\n\n\r\n0\r\n\r\n")
        return True

    async def main() -> None:
        with serving(answer) as s:
            async with client() as c:
                lines = []
                async with c.stream("POST", s.url + "/sse", content=b"{}") as r:
                    async for line in r.aiter_lines():
                        lines.append(line)
                        s.gate.set()
                assert [x for x in lines if x] == ["data: first", "data: second"] and released.is_set()
                assert (await c.get(s.url + "/again")).status_code == 200
                assert s.connections == 1  # read to the end: reused

    run(main(), loop)


def test_a_large_body_is_read_in_pieces_and_the_connection_reused() -> None:
    """8 MiB arriving faster than it is read: reading pauses past a bound and resumes."""
    body = bytes(range(256)) * (32 * 1024)

    async def main() -> None:
        with serving(ok(body)) as s:
            async with client() as c:
                got = []
                async with c.stream("GET", s.url) as r:
                    async for piece in r.aiter_raw():
                        got.append(piece)
                        await asyncio.sleep(0.001)
                assert b"".join(got) == body and len(got) > 1
                assert (await c.get(s.url)).content == body and s.connections == 1

    run(main())


def test_response_closed_early_closes_its_connection() -> None:
    def answer(server: Server, conn: socket.socket, request: bytes) -> bool:
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n" + b"x" * 10)
        return True  # the server then reads EOF: counted in ``closed``

    async def main() -> None:
        with serving(answer) as s:
            async with client() as c:
                async with c.stream("GET", s.url) as r:
                    async for piece in r.aiter_raw():
                        assert piece == b"x" * 10
                        break
                assert await wait_for(lambda: s.closed == 1)  # the client closed it
                s.answer = ok()
                assert (await c.get(s.url)).status_code == 200 and s.connections == 2

    run(main())


def test_connection_close_and_idle_drops_are_not_reused() -> None:
    def answer(server: Server, conn: socket.socket, request: bytes) -> bool:
        if b"/close" in request.split(b"\r\n")[0]:
            conn.sendall(b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok")
            return False
        return ok()(server, conn, request)

    async def main() -> None:
        with serving(answer) as s:
            async with client() as c:
                assert (await c.get(s.url + "/close")).text == "ok"
                assert (await c.get(s.url + "/a")).status_code == 200 and s.connections == 2
                s.drop_idle()
                assert await wait_for(lambda: s.closed >= 1)
                assert (await c.get(s.url + "/b")).status_code == 200
                assert s.connections == 3 and len(s.requests) == 3  # the stale one was never written to

    run(main())


def test_an_idle_connection_closed_before_the_loop_noticed_is_not_reused() -> None:
    """The server's FIN is in the socket but no loop callback has run yet: the socket is asked."""
    async def main() -> None:
        with serving(ok()) as s:
            async with client() as c:
                assert (await c.get(s.url + "/a")).status_code == 200
                s.drop_idle()
                while s.closed < 1:  # blocking wait: the loop runs no callback meanwhile
                    threading.Event().wait(0.01)
                assert (await c.get(s.url + "/b")).status_code == 200
                assert s.connections == 2 and len(s.requests) == 2

    run(main())


def test_tasks_share_the_pool() -> None:
    async def main() -> None:
        with serving(ok()) as s:
            async with client() as c:
                async def one() -> None:
                    for _ in range(25):
                        assert (await c.post(s.url, content=b"x")).json() == {"ok": True}

                await asyncio.gather(*(one() for _ in range(8)))
                assert len(s.requests) == 200 and s.connections <= 8

    run(main())


def test_aclose_closes_pooled_connections() -> None:
    async def main() -> None:
        with serving(slow_ok) as s:
            async with client() as c:
                async with c.stream("GET", s.url) as first, c.stream("GET", s.url) as second:
                    s.gate.set()
                    assert await first.aread() == await second.aread() == b"ok"
                assert s.connections == 2 and s.closed == 0
            assert await wait_for(lambda: s.closed == 2)

    run(main())


def test_pool_limit_waits_then_times_out() -> None:
    limits = httpx2.Limits(max_connections=1, max_keepalive_connections=1)

    async def main() -> None:
        with serving(slow_ok) as s:
            async with client(AsyncWireTransport(limits=limits), timeout=httpx2.Timeout(5, pool=0.2)) as c:
                async with c.stream("GET", s.url) as r:
                    with pytest.raises(httpx2.PoolTimeout):
                        await c.get(s.url)
                    waiting = asyncio.ensure_future(c.get(s.url))  # gets the connection once it is free
                    await asyncio.sleep(0.05)
                    assert not waiting.done()
                    s.gate.set()
                    assert await r.aread() == b"ok"
                assert (await waiting).status_code == 200
                assert (await c.get(s.url)).status_code == 200 and s.connections == 1

    run(main())


@pytest.mark.parametrize("limits", [httpx2.Limits(keepalive_expiry=0),
                                    httpx2.Limits(max_keepalive_connections=0)])
def test_expired_or_unpooled_connections_are_not_reused(limits: httpx2.Limits) -> None:
    async def main() -> None:
        with serving(ok()) as s:
            async with client(AsyncWireTransport(limits=limits)) as c:
                assert (await c.get(s.url)).status_code == (await c.get(s.url)).status_code == 200
                assert s.connections == 2
                assert await wait_for(lambda: s.closed >= 1)  # the first one was closed, not left open

    run(main())


def test_answer_delimited_by_close() -> None:
    def answer(server: Server, conn: socket.socket, request: bytes) -> bool:
        conn.sendall(b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\nuntil ")
        conn.sendall(b"the end")
        return False

    async def main() -> None:
        with serving(answer) as s:
            async with client() as c:
                r = await c.get(s.url)
                assert r.text == "until the end" and r.http_version == "HTTP/1.0"
                assert (await c.get(s.url)).text == "until the end" and s.connections == 2

    run(main())


def test_a_transport_outlives_its_event_loop() -> None:
    """A connection pooled under one ``asyncio.run`` is not reused under the next one."""
    with serving(ok()) as s:
        transport = AsyncWireTransport()

        async def one() -> int:
            c = httpx2.AsyncClient(transport=transport)
            return (await c.get(s.url)).status_code

        assert run(one()) == 200 and run(one()) == 200
        assert s.connections == 2

        async def close() -> None:
            await transport.aclose()

        run(close())


# -- cancellation ---------------------------------------------------------------------------------

@pytest.mark.parametrize("stage", ["head", "body"])
def test_a_cancelled_request_closes_its_connection(stage: str) -> None:
    limits = httpx2.Limits(max_connections=1, max_keepalive_connections=1)
    hung_up = threading.Event()

    def answer(server: Server, conn: socket.socket, request: bytes) -> bool:
        if b"/slow" in request.split(b"\r\n")[0]:
            if stage == "body":
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\npart")
            try:
                if conn.recv(1) == b"":  # the client closed the connection
                    hung_up.set()
            except OSError:
                hung_up.set()
            return False
        return ok()(server, conn, request)

    async def main() -> None:
        with serving(answer) as s:
            async with client(AsyncWireTransport(limits=limits), timeout=httpx2.Timeout(5, pool=1)) as c:
                async def slow() -> bytes:
                    async with c.stream("POST", s.url + "/slow", content=b"{}") as r:
                        body: bytes = await r.aread()
                        return body

                task = asyncio.ensure_future(slow())
                assert await wait_for(lambda: len(s.requests) == 1)
                await asyncio.sleep(0.05)  # the head (stage "body") has arrived
                task.cancel()
                with pytest.raises(asyncio.CancelledError):
                    await task
                assert await wait_for(hung_up.is_set)  # closed by the client, not pooled
                assert (await c.get(s.url + "/next")).json() == {"ok": True}  # the slot is free
                assert s.connections == 2 and len(s.requests) == 2

    run(main())


# -- failures map to httpx2's exceptions, as httpcore2 maps them -----------------------------------

TRANSPORTS: dict[str, Callable[..., httpx2.AsyncBaseTransport]] = {
    "wire": AsyncWireTransport, "httpcore2": httpx2.AsyncHTTPTransport}


@pytest.mark.parametrize("kind", list(TRANSPORTS))
@pytest.mark.parametrize(("answer", "expected"), [
    (silent, httpx2.ReadTimeout), (hang_up, httpx2.RemoteProtocolError),
    (garbage, httpx2.RemoteProtocolError), (cut_short, httpx2.RemoteProtocolError),
    (reset_mid_body, httpx2.ReadError)])
def test_failures_raise_what_httpx2_raises(kind: str, answer: Answer, expected: type[Exception]) -> None:
    async def main() -> None:
        with serving(answer) as s:
            async with client(TRANSPORTS[kind](), timeout=0.5) as c:
                with pytest.raises(expected):
                    await c.post(s.url, content=b'{"pay": 1}')
                s.gate.set()
                assert len(s.requests) == 1  # never sent again

    run(main())


@pytest.mark.parametrize("kind", list(TRANSPORTS))
def test_connect_refused_is_connect_error(kind: str) -> None:
    with socket.create_server(("127.0.0.1", 0)) as probe:
        port = probe.getsockname()[1]

    async def main() -> None:
        async with client(TRANSPORTS[kind]()) as c:
            with pytest.raises(httpx2.ConnectError):
                await c.get(f"http://127.0.0.1:{port}/")

    run(main())


@pytest.mark.parametrize("kind", list(TRANSPORTS))
def test_write_timeout(kind: str) -> None:
    """A server that accepts (the kernel does) but never reads: the send buffers fill up."""
    async def main() -> None:
        with socket.create_server(("127.0.0.1", 0)) as deaf:
            async with client(TRANSPORTS[kind](), timeout=httpx2.Timeout(5, write=0.3)) as c:
                with pytest.raises(httpx2.WriteTimeout):
                    url = f"http://127.0.0.1:{deaf.getsockname()[1]}/"
                    await c.post(url, content=b"x" * (64 * 1024 * 1024))

    run(main())


@pytest.mark.parametrize("kind", list(TRANSPORTS))
def test_invalid_header_value_is_refused_before_sending(kind: str) -> None:
    async def main() -> None:
        with serving(ok()) as s:
            async with client(TRANSPORTS[kind]()) as c:
                with pytest.raises(httpx2.LocalProtocolError):
                    await c.get(s.url, headers={"X-Bad": "a\x00b"})
                assert s.requests == []

    run(main())


@pytest.mark.parametrize("kind", list(TRANSPORTS))
def test_a_wrong_content_length_is_refused_as_httpx2_does(kind: str) -> None:
    async def main() -> None:
        with serving(ok()) as s:
            async with client(TRANSPORTS[kind]()) as c:
                with pytest.raises(h11.LocalProtocolError, match="Too little data"):
                    await c.post(s.url, content=b"abc", headers={"Content-Length": "5"})
                assert (await c.post(s.url, content=b"abc")).status_code == 200

    run(main())


# -- what goes to httpx2's own transport ---------------------------------------------------------

def test_streamed_request_body_goes_through_httpcore2() -> None:
    async def parts() -> Any:
        yield b"ab"
        yield b"cd"

    async def main() -> None:
        with serving(ok()) as s:
            async with client() as c:
                r = await c.post(s.url, content=parts())
                assert r.status_code == 200 and s.requests[0].endswith(b"2\r\nab\r\n2\r\ncd\r\n0\r\n\r\n")

    run(main())


def test_default_async_transport_only_for_what_it_implements() -> None:
    assert isinstance(default_async_transport(limits=httpx2.Limits(max_connections=5)), AsyncWireTransport)
    assert isinstance(default_async_transport(verify=False, trust_env=False), AsyncWireTransport)
    assert type(default_async_transport(http2=True)) is httpx2.AsyncHTTPTransport
    assert type(default_async_transport(retries=2)) is httpx2.AsyncHTTPTransport
    assert type(default_async_transport(uds="/tmp/x.sock")) is httpx2.AsyncHTTPTransport
    with pytest.raises(ValueError, match=r"HTTP/1\.1 only"):
        AsyncWireTransport(http2=True)


def test_async_mpp_client_takes_it_only_for_what_it_implements() -> None:
    from mpp_claude.client import AsyncMppClient, AsyncMppTransport, Wallet

    wallet = Wallet.from_private_key("0x" + "42" * 32)

    async def main() -> None:
        async with AsyncMppClient(wallet, rpc_url="http://127.0.0.1:1", ledger=None) as c:
            assert isinstance(c._transport.inner, AsyncWireTransport)
        async with AsyncMppClient(wallet, rpc_url="http://127.0.0.1:1", ledger=None, http2=True) as c:
            assert type(c._transport.inner) is httpx2.AsyncHTTPTransport
        bare = AsyncMppTransport(wallet, rpc_url="http://127.0.0.1:1", ledger=None)
        assert isinstance(bare.inner, AsyncWireTransport)  # a bare transport without inner= too
        await bare.aclose()

    run(main())


def test_under_trio_every_request_goes_to_httpcore2() -> None:
    """anyio's trio backend: no asyncio loop runs, so httpx2's own transport serves the request."""
    pytest.importorskip("trio", reason="anyio's trio backend needs trio (not installed)")
    import anyio

    sent: list[httpx2.Request] = []

    class Watching(httpx2.AsyncHTTPTransport):
        async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
            sent.append(request)
            return await super().handle_async_request(request)

    transport = AsyncWireTransport()
    transport._fallback = Watching()

    async def main() -> None:
        with serving(ok()) as s:
            async with httpx2.AsyncClient(transport=transport) as c:
                assert (await c.post(s.url, content=b"{}")).json() == {"ok": True}
            assert len(sent) == 1 and len(s.requests) == 1

    anyio.run(main, backend="trio")


# -- TLS, through httpx2.create_ssl_context ------------------------------------------------------

@pytest.fixture
def tls(tmp_path: Any) -> tuple[ssl.SSLContext, str]:
    """A server context with a throw-away self-signed certificate for 127.0.0.1, and its path."""
    cert, key = self_signed_certificate(tmp_path)
    return server_tls(cert, key), str(cert)


@pytest.mark.parametrize("loop", LOOPS)
def test_tls_with_a_trusted_certificate(tls: tuple[ssl.SSLContext, str], loop: str) -> None:
    ctx, cert = tls
    verify = ssl.create_default_context(cafile=cert)

    async def main() -> None:
        with serving(ok(), ctx) as s:
            async with client(AsyncWireTransport(verify=verify)) as c:
                assert [(await c.post(s.url, content=b"{}")).json() for _ in range(3)] == [{"ok": True}] * 3
                assert s.connections == 1

    run(main(), loop)


@pytest.mark.parametrize("kind", list(TRANSPORTS))
def test_tls_refuses_an_untrusted_certificate(tls: tuple[ssl.SSLContext, str], kind: str) -> None:
    async def main() -> None:
        with serving(ok(), tls[0]) as s:
            async with client(TRANSPORTS[kind]()) as c:
                with pytest.raises(httpx2.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
                    await c.get(s.url)
                assert s.requests == []

    run(main())


def test_tls_verify_false(tls: tuple[ssl.SSLContext, str]) -> None:
    async def main() -> None:
        with serving(ok(), tls[0]) as s:
            async with client(AsyncWireTransport(verify=False)) as c:
                assert (await c.get(s.url)).json() == {"ok": True}

    run(main())


# -- the ledger's deferred writes ----------------------------------------------------------------

def test_deferred_ledger_writes_are_applied_while_waiting_for_the_answer(
        tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """A ledger write deferred before a request is in the file once the answer is read (the
    transport applies it between sending and reading), not only after the fallback delay."""
    import sqlite3

    from mpp_claude.client import _writebehind
    from mpp_claude.client.ledger import Entry, Ledger

    monkeypatch.setattr(_writebehind, "submit", lambda owner: None)  # no fallback thread here
    path = tmp_path / "l.sqlite3"
    led = Ledger(path)
    rid = led.reserve(Entry("0xW", 1, "t", 1, "p", "o", "/"), now=1.0, max_per_day=None, max_per_minute=None)
    led.settle(rid, reference="0xref", now=2.0, defer=True)

    async def main() -> None:
        with serving(ok()) as s:
            async with client() as c:
                assert (await c.post(s.url + "/v1/x", json={})).status_code == 200

    run(main())
    db = sqlite3.connect(path)
    try:
        assert db.execute("SELECT status, reference FROM payments").fetchall() == [("settled", "0xref")]
    finally:
        db.close()
    assert led not in _writebehind.WAITING

