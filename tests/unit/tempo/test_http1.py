"""The JSON-RPC wire's sans-I/O parts: URL handling, request bytes, response framing."""

from __future__ import annotations

import select
import socket

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mpp_claude.tempo._http1 import MAX_BODY, Endpoint, ResponseParser, WireError, readable_now, use_wire

from ._framing import framed


def parse(*pieces: bytes) -> ResponseParser:
    parser = ResponseParser()
    for piece in pieces:
        if parser.feed(piece):
            break
    return parser


def test_endpoint_from_url() -> None:
    ep = Endpoint.from_url("https://rpc.tempo.xyz/v1?key=abc")
    assert (ep.scheme, ep.host, ep.port, ep.target, ep.host_header) == (
        "https", "rpc.tempo.xyz", 443, "/v1?key=abc", "rpc.tempo.xyz")
    ep = Endpoint.from_url("http://127.0.0.1:8545")
    assert (ep.port, ep.target, ep.host_header) == (8545, "/", "127.0.0.1:8545")
    assert Endpoint.from_url("http://[::1]:9/").host_header == "[::1]:9"


@pytest.mark.parametrize("url", ["ftp://x/", "http://", "localhost:8545", "http://h:notaport/"])
def test_endpoint_refuses(url: str) -> None:
    with pytest.raises(WireError):
        Endpoint.from_url(url)


def test_request_bytes() -> None:
    raw = Endpoint.from_url("http://node:8545/rpc").request(b'{"a":1}')
    head, body = raw.split(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    assert lines[0] == "POST /rpc HTTP/1.1"
    assert "Host: node:8545" in lines and "Content-Length: 7" in lines
    assert "Content-Type: application/json" in lines
    assert body == b'{"a":1}'


def test_use_wire_respects_proxies(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("http_proxy", "https_proxy", "all_proxy", "no_proxy",
                 "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)
    assert use_wire("https://rpc.tempo.xyz")
    assert not use_wire("ftp://rpc.tempo.xyz")
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy:3128")
    assert not use_wire("https://rpc.tempo.xyz")  # the proxy must be honoured: httpx2 does that
    assert use_wire("http://127.0.0.1:8545")  # no proxy for plain http configured
    monkeypatch.setenv("NO_PROXY", "rpc.tempo.xyz")
    assert use_wire("https://rpc.tempo.xyz")


def test_content_length() -> None:
    p = parse(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Type: application/json\r\n\r\nhello")
    assert (p.done, p.status, p.body, p.keep_alive) == (True, 200, b"hello", True)


def test_chunked_with_trailers_and_extensions() -> None:
    p = parse(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
              b"3;ext=1\r\n{\"a\r\n4\r\n\":1}\r\n0\r\nX-Trailer: y\r\n\r\n")
    assert p.done and p.body == b'{"a":1}' and p.keep_alive


def test_until_close_and_http10() -> None:
    p = parse(b"HTTP/1.0 200 OK\r\n\r\nsome", b" body", b"")
    assert p.done and p.body == b"some body" and not p.keep_alive
    p = parse(b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 2\r\n\r\nok")
    assert p.done and p.keep_alive
    p = parse(b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok")
    assert p.done and not p.keep_alive


def test_informational_head_is_skipped() -> None:
    p = parse(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 503 Busy\r\nContent-Length: 0\r\n\r\n")
    assert p.done and p.status == 503 and p.body == b""


@pytest.mark.parametrize("raw", [
    b"SMTP 220 hi\r\n\r\n",
    b"HTTP/1.1 2x0 OK\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nno colon here\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nabXY",
    b"HTTP/1.1 200 OK\r\nContent-Length: " + str(MAX_BODY + 1).encode() + b"\r\n\r\n",
])
def test_malformed_answers(raw: bytes) -> None:
    with pytest.raises(WireError):
        parse(raw)


@pytest.mark.parametrize("raw", [
    b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort",
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nab",
    b"HTTP/1.1 200 OK\r\nContent-Le",
])
def test_early_close_is_an_error(raw: bytes) -> None:
    parser = ResponseParser()
    assert not parser.feed(raw)
    with pytest.raises(WireError):
        parser.feed(b"")


def test_head_too_large() -> None:
    with pytest.raises(WireError, match="head too large"):
        parse(b"HTTP/1.1 200 OK\r\n" + b"X-Pad: " + b"a" * 70_000)


def test_bytes_after_done_are_ignored() -> None:
    parser = ResponseParser()
    assert parser.feed(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
    assert parser.feed(b"garbage") and parser.body == b"ok"


@given(body=st.binary(max_size=300), chunk=st.integers(1, 7), split=st.integers(1, 40), chunked=st.booleans())
def test_any_split_gives_the_same_answer(body: bytes, chunk: int, split: int, chunked: bool) -> None:
    """Framing does not depend on how the bytes arrive."""
    raw = framed(body, chunk=chunk, chunked=chunked)
    parser = ResponseParser()
    done = False
    for i in range(0, len(raw), split):
        done = parser.feed(raw[i:i + split])
    assert done and parser.body == body and parser.status == 200


@pytest.mark.parametrize("poll", [True, False], ids=["poll", "select (no poll: Windows)"])
def test_readable_now_with_and_without_poll(poll: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    """Nothing to read: False; bytes or the peer's close waiting: True; a closed socket: True."""
    if not poll:
        monkeypatch.delattr(select, "poll", raising=False)
    a, b = socket.socketpair()
    try:
        assert readable_now(a) is False and readable_now(a.fileno()) is False
        b.sendall(b"x")
        assert readable_now(a) is True
        a.recv(1)
        b.close()
        assert readable_now(a) is True  # EOF is readable
    finally:
        a.close()
    assert readable_now(a) is True  # closed: cannot be asked, never reused
