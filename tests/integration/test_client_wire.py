"""The sync client's lean HTTP/1.1 transport over real loopback sockets, against scripted servers.

Each failure is also sent through ``httpx2.HTTPTransport`` (httpcore2): both must raise the same
``httpx2`` exception class, since the openai SDK's retries and the paying engine key on it.
"""

from __future__ import annotations

import gzip
import socket
import ssl
import threading
from collections.abc import Callable
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

from mpp_claude.client._wire import WireTransport, default_transport


def wait_for(predicate: Callable[[], bool]) -> bool:
    event = threading.Event()
    for _ in range(200):
        if predicate():
            return True
        event.wait(0.01)
    return predicate()


def test_post_reuses_one_connection_and_writes_once(monkeypatch: pytest.MonkeyPatch) -> None:
    writes: list[bytes] = []

    class Counting(socket.socket):
        def sendall(self, data: Any, flags: int = 0) -> None:
            writes.append(bytes(data))
            super().sendall(data, flags)

    def connect(address: tuple[str, int], timeout: float | None = None) -> socket.socket:
        sock = Counting(socket.AF_INET, socket.SOCK_STREAM)
        sock.settimeout(timeout)
        sock.connect(address)
        return sock

    monkeypatch.setattr(socket, "create_connection", connect)
    with serving(ok()) as s, httpx2.Client(transport=WireTransport()) as client:
        for i in range(10):
            r = client.post(s.url + "/v1/x?q=1", json={"i": i}, headers={"X-Trace": "a"})
            assert r.status_code == 200 and r.json() == {"ok": True} and r.reason_phrase == "OK"
            assert r.http_version == "HTTP/1.1"
        assert s.connections == 1 and len(s.requests) == 10
    assert len(writes) == 10  # head and body of each request in one write
    head, body = writes[3].split(b"\r\n\r\n")
    assert head.startswith(b"POST /v1/x?q=1 HTTP/1.1\r\n") and b"\r\nX-Trace: a" in head
    assert body == b'{"i":3}' and s.requests[3] == writes[3]


def test_content_encoding_is_decoded_by_httpx2() -> None:
    body = gzip.compress(b'{"hello": "world"}' * 50)
    with serving(ok(body, b"Content-Encoding: gzip\r\n")) as s, httpx2.Client(transport=WireTransport()) as c:
        r = c.get(s.url)
        assert r.headers["content-encoding"] == "gzip" and r.text == '{"hello": "world"}' * 50


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

    with serving(answer) as s, httpx2.Client(transport=WireTransport()) as c:
        r = c.request(method, s.url + "/first")
        assert r.content == b""
        assert c.get(s.url + "/next").json() == {"ok": True}
        assert s.connections == 1


def test_event_stream_arrives_piece_by_piece() -> None:
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

    with serving(answer) as s, httpx2.Client(transport=WireTransport()) as c:
        lines = []
        with c.stream("POST", s.url + "/sse", content=b"{}") as r:
            for line in r.iter_lines():
                lines.append(line)
                s.gate.set()
        assert [x for x in lines if x] == ["data: first", "data: second"] and released.is_set()
        assert c.get(s.url + "/again").status_code == 200 and s.connections == 1  # read to the end: reused


def test_response_closed_early_closes_its_socket() -> None:
    def answer(server: Server, conn: socket.socket, request: bytes) -> bool:
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n" + b"x" * 10)
        return True  # the server then reads EOF: counted in ``closed``

    with serving(answer) as s, httpx2.Client(transport=WireTransport()) as c:
        with c.stream("GET", s.url) as r:
            assert next(r.iter_raw()) == b"x" * 10
        assert wait_for(lambda: s.closed == 1)  # the client closed it
        s.answer = ok()
        assert c.get(s.url).status_code == 200 and s.connections == 2


def test_connection_close_and_idle_drops_are_not_reused() -> None:
    def answer(server: Server, conn: socket.socket, request: bytes) -> bool:
        if b"/close" in request.split(b"\r\n")[0]:
            conn.sendall(b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok")
            return False
        return ok()(server, conn, request)

    with serving(answer) as s, httpx2.Client(transport=WireTransport()) as c:
        assert c.get(s.url + "/close").text == "ok"
        assert c.get(s.url + "/a").status_code == 200 and s.connections == 2
        s.drop_idle()
        assert wait_for(lambda: s.closed >= 1)
        assert c.get(s.url + "/b").status_code == 200
        assert s.connections == 3 and len(s.requests) == 3  # the stale socket was never written to


def test_threads_share_the_pool() -> None:
    with serving(ok()) as s, httpx2.Client(transport=WireTransport()) as c:
        errors: list[BaseException] = []

        def run() -> None:
            try:
                for _ in range(25):
                    assert c.post(s.url, content=b"x").json() == {"ok": True}
            except BaseException as exc:  # handed to the main thread
                errors.append(exc)

        threads = [threading.Thread(target=run) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not errors and len(s.requests) == 200 and s.connections <= 8


def test_close_closes_pooled_connections() -> None:
    with serving(slow_ok) as s:
        with httpx2.Client(transport=WireTransport()) as c:
            with c.stream("GET", s.url) as first, c.stream("GET", s.url) as second:
                s.gate.set()
                assert first.read() == second.read() == b"ok"
            assert s.connections == 2 and s.closed == 0
        assert wait_for(lambda: s.closed == 2)


def test_pool_limit_waits_then_times_out() -> None:
    limits = httpx2.Limits(max_connections=1, max_keepalive_connections=1)
    with serving(slow_ok) as s, httpx2.Client(transport=WireTransport(limits=limits),
                                              timeout=httpx2.Timeout(5, pool=0.2)) as c:
        with c.stream("GET", s.url) as r:
            with pytest.raises(httpx2.PoolTimeout):
                c.get(s.url)
            s.gate.set()
            assert r.read() == b"ok"
        assert c.get(s.url).status_code == 200 and s.connections == 1


@pytest.mark.parametrize("limits", [httpx2.Limits(keepalive_expiry=0),
                                    httpx2.Limits(max_keepalive_connections=0)])
def test_expired_or_unpooled_connections_are_not_reused(limits: httpx2.Limits) -> None:
    with serving(ok()) as s, httpx2.Client(transport=WireTransport(limits=limits)) as c:
        assert c.get(s.url).status_code == c.get(s.url).status_code == 200
        assert s.connections == 2
        assert wait_for(lambda: s.closed >= 1)  # the first one was closed, not left open


def test_answer_delimited_by_close() -> None:
    def answer(server: Server, conn: socket.socket, request: bytes) -> bool:
        conn.sendall(b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\nuntil ")
        conn.sendall(b"the end")
        return False

    with serving(answer) as s, httpx2.Client(transport=WireTransport()) as c:
        r = c.get(s.url)
        assert r.text == "until the end" and r.http_version == "HTTP/1.0"
        assert c.get(s.url).text == "until the end" and s.connections == 2


# -- failures map to httpx2's exceptions, as httpcore2 maps them -----------------------------------

TRANSPORTS: dict[str, Callable[[], httpx2.BaseTransport]] = {
    "wire": WireTransport, "httpcore2": httpx2.HTTPTransport}


@pytest.mark.parametrize("kind", list(TRANSPORTS))
@pytest.mark.parametrize(("answer", "expected"), [
    (silent, httpx2.ReadTimeout), (hang_up, httpx2.RemoteProtocolError),
    (garbage, httpx2.RemoteProtocolError), (cut_short, httpx2.RemoteProtocolError),
    (reset_mid_body, httpx2.ReadError)])
def test_failures_raise_what_httpx2_raises(kind: str, answer: Answer, expected: type[Exception]) -> None:
    with serving(answer) as s, httpx2.Client(transport=TRANSPORTS[kind](), timeout=0.5) as c:
        with pytest.raises(expected):
            c.post(s.url, content=b'{"pay": 1}')
        s.gate.set()
        assert len(s.requests) == 1  # never sent again


@pytest.mark.parametrize("kind", list(TRANSPORTS))
def test_connect_refused_is_connect_error(kind: str) -> None:
    with socket.create_server(("127.0.0.1", 0)) as probe:
        port = probe.getsockname()[1]
    with httpx2.Client(transport=TRANSPORTS[kind]()) as c, pytest.raises(httpx2.ConnectError):
        c.get(f"http://127.0.0.1:{port}/")


@pytest.mark.parametrize("kind", list(TRANSPORTS))
def test_write_timeout(kind: str) -> None:
    """A server that accepts (the kernel does) but never reads: the send buffers fill up."""
    with socket.create_server(("127.0.0.1", 0)) as deaf, httpx2.Client(
            transport=TRANSPORTS[kind](), timeout=httpx2.Timeout(5, write=0.3)) as c, \
            pytest.raises(httpx2.WriteTimeout):
        c.post(f"http://127.0.0.1:{deaf.getsockname()[1]}/", content=b"x" * (64 * 1024 * 1024))


@pytest.mark.parametrize("kind", list(TRANSPORTS))
def test_invalid_header_value_is_refused_before_sending(kind: str) -> None:
    with serving(ok()) as s, httpx2.Client(transport=TRANSPORTS[kind]()) as c:
        with pytest.raises(httpx2.LocalProtocolError):
            c.get(s.url, headers={"X-Bad": "a\x00b"})
        assert s.requests == []


# -- what goes to httpx2's own transport ---------------------------------------------------------

def test_streamed_request_body_goes_through_httpcore2() -> None:
    with serving(ok()) as s, httpx2.Client(transport=WireTransport()) as c:
        r = c.post(s.url, content=iter([b"ab", b"cd"]))
        assert r.status_code == 200 and s.requests[0].endswith(b"2\r\nab\r\n2\r\ncd\r\n0\r\n\r\n")


def test_default_transport_only_for_what_it_implements() -> None:
    assert isinstance(default_transport(limits=httpx2.Limits(max_connections=5)), WireTransport)
    assert isinstance(default_transport(verify=False, trust_env=False), WireTransport)
    assert type(default_transport(http2=True)) is httpx2.HTTPTransport
    assert type(default_transport(http1=False, http2=True)) is httpx2.HTTPTransport
    assert type(default_transport(retries=2)) is httpx2.HTTPTransport
    assert type(default_transport(uds="/tmp/x.sock")) is httpx2.HTTPTransport
    with pytest.raises(ValueError, match=r"HTTP/1\.1 only"):
        WireTransport(http2=True)


# -- TLS, through httpx2.create_ssl_context ------------------------------------------------------

@pytest.fixture
def tls(tmp_path: Any) -> tuple[ssl.SSLContext, str]:
    """A server context with a throw-away self-signed certificate for 127.0.0.1, and its path."""
    cert, key = self_signed_certificate(tmp_path)
    return server_tls(cert, key), str(cert)


def test_tls_with_a_trusted_certificate(tls: tuple[ssl.SSLContext, str]) -> None:
    ctx, cert = tls
    verify = ssl.create_default_context(cafile=cert)
    with serving(ok(), ctx) as s, httpx2.Client(transport=WireTransport(verify=verify)) as c:
        assert [c.post(s.url, content=b"{}").json() for _ in range(3)] == [{"ok": True}] * 3
        assert s.connections == 1


@pytest.mark.parametrize("kind", list(TRANSPORTS))
def test_tls_refuses_an_untrusted_certificate(tls: tuple[ssl.SSLContext, str], kind: str) -> None:
    with serving(ok(), tls[0]) as s, httpx2.Client(transport=TRANSPORTS[kind]()) as c:
        with pytest.raises(httpx2.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
            c.get(s.url)
        assert s.requests == []


def test_tls_verify_false(tls: tuple[ssl.SSLContext, str]) -> None:
    with serving(ok(), tls[0]) as s, httpx2.Client(transport=WireTransport(verify=False)) as c:
        assert c.get(s.url).json() == {"ok": True}


def test_mpp_client_takes_it_only_for_what_it_implements() -> None:
    from mpp_claude.client import MppClient, Wallet

    wallet = Wallet.from_private_key("0x" + "42" * 32)
    with MppClient(wallet, rpc_url="http://127.0.0.1:1", ledger=None) as client:
        assert isinstance(client._transport.inner, WireTransport)
    with MppClient(wallet, rpc_url="http://127.0.0.1:1", ledger=None, http2=True) as client:
        assert type(client._transport.inner) is httpx2.HTTPTransport


def test_a_read_streamed_body_keeps_its_chunked_framing() -> None:
    """MppTransport reads every body before sending; a streamed one keeps Transfer-Encoding: chunked."""
    with serving(ok()) as s, httpx2.Client(transport=WireTransport()) as c:
        request = c.build_request("POST", s.url, content=iter([b"ab", b"cd"]))
        request.read()
        assert c.send(request).status_code == 200
        assert s.requests[0].endswith(b"\r\n\r\n4\r\nabcd\r\n0\r\n\r\n")
        request = c.build_request("POST", s.url, content=iter([]))
        request.read()
        assert c.send(request).status_code == 200 and s.requests[1].endswith(b"\r\n\r\n0\r\n\r\n")
        assert s.connections == 1


@pytest.mark.parametrize("kind", list(TRANSPORTS))
def test_a_wrong_content_length_is_refused_as_httpx2_does(kind: str) -> None:
    with serving(ok()) as s, httpx2.Client(transport=TRANSPORTS[kind]()) as c:
        with pytest.raises(h11.LocalProtocolError, match="Too little data"):  # httpcore2 lets h11's through
            c.post(s.url, content=b"abc", headers={"Content-Length": "5"})
        assert c.post(s.url, content=b"abc").status_code == 200


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
    with serving(ok()) as s, httpx2.Client(transport=WireTransport()) as client:
        assert client.post(s.url + "/v1/x", json={}).status_code == 200
    db = sqlite3.connect(path)
    try:
        assert db.execute("SELECT status, reference FROM payments").fetchall() == [("settled", "0xref")]
    finally:
        db.close()
    assert led not in _writebehind.WAITING
