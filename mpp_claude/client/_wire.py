"""A lean HTTP/1.1 transport for the sync clients: what ``httpx2.HTTPTransport`` does, for less CPU.

Why: one request through httpx2's default transport (httpcore2 + h11) costs ~0.25 ms of CPU on
the machines we measured, and a paid request crosses the transport twice (the 402, then the
paid retry).  httpcore2 also writes the head and the body in two writes, waking the server
twice.  This transport writes head + body in one ``sendall`` and frames the answer with the
sans-I/O :class:`~mpp_claude.tempo._http1.ResponseParser` (the one the JSON-RPC client uses).

It serves plain HTTP/1.1 over TCP or TLS, and nothing else; every request it cannot serve
exactly as httpcore2 would (another scheme, ``CONNECT``/``Upgrade``, a streamed request body,
header values h11 would refuse, unusual body framing, the ``trace``/``target`` extensions)
goes to an ``httpx2.HTTPTransport`` built with the same options, so behaviour never differs.
:func:`default_transport` picks this transport only for options it implements.

Sharp edges, labelled:
- A request is never sent twice.  A POST may carry a payment: when a connection fails the
  error reaches the caller (``httpx2.TransportError``) and the client's engine decides.
- Idle connections are checked before reuse (readable = closed by the server, or expired):
  such a connection is closed, never written to.
- A connection returns to the pool only once its answer was read to the end and the answer
  allows keep-alive; a response closed early closes its socket.
"""

from __future__ import annotations

import re
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx2

from ..tempo._http1 import idle_closed
from ..tempo._httpparse import TOKEN, ResponseParser, WireError
from . import _writebehind

_SUPPORTED = frozenset(("verify", "cert", "trust_env", "http1", "http2", "limits"))
_PORTS = {"http": 80, "https": 443}
_RECV = 65536
_VCHAR = rb"[\x21-\x7e\x80-\xff]"
#: what h11 accepts: a token method, a visible target, token names, values without CR/LF/NUL
_START = re.compile(TOKEN + rb" [\x21-\x7e]+ HTTP/1\.1\r\n")
_HEADERS = re.compile(rb"(?:" + TOKEN + rb": (?:" + _VCHAR + rb"+(?:[ \t]+" + _VCHAR + rb"+)*)?\r\n)*")

Key = tuple[str, str, int]
HTTPX2_LIMITS = httpx2.Limits(max_connections=100, max_keepalive_connections=20)  # httpx2's defaults


def supports(options: dict[str, Any]) -> bool:
    """True when :class:`WireTransport` implements every ``httpx2.HTTPTransport`` option given."""
    return (set(options) <= _SUPPORTED and options.get("http1", True) is True
            and options.get("http2", False) is False)


def default_transport(**options: Any) -> httpx2.BaseTransport:
    """A :class:`WireTransport` when it serves ``options`` exactly, else ``httpx2.HTTPTransport``.

    Args:
        **options: ``httpx2.HTTPTransport`` keyword arguments.
    Returns:
        the transport.
    """
    if supports(options):
        return WireTransport(**options)
    return httpx2.HTTPTransport(**options)


def encode_request(request: httpx2.Request) -> bytes | None:
    """The request's bytes (head and body), or None when httpcore2 should send it.

    Shared by :class:`WireTransport` and the asyncio ``AsyncWireTransport``: None for anything
    httpcore2 would send differently (another scheme, ``CONNECT``/``Upgrade``, a streamed body,
    header values h11 refuses, unusual body framing, the ``trace``/``target`` extensions).
    """
    url, ext = request.url, request.extensions
    if url.scheme not in _PORTS or "trace" in ext or "target" in ext or request.method == "CONNECT":
        return None
    stream = request.stream
    if not isinstance(stream, httpx2.ByteStream):
        return None  # a streamed body: httpcore2 sends it as it comes
    body = request.read()
    try:
        start = b"%s %s HTTP/1.1\r\n" % (request.method.encode("ascii"), url.raw_path)
    except UnicodeEncodeError:
        return None
    lines, host, length, chunked = [], False, None, None
    for name, value in request.headers.raw:
        lower = name.lower()
        if lower == b"host":
            host = True
        elif lower == b"content-length":
            if length is not None:
                return None
            length = value
        elif lower == b"transfer-encoding":
            if chunked is not None:
                return None
            chunked = value
        elif lower == b"upgrade":
            return None
        lines.append(b"%s: %s\r\n" % (name, value))
    head = b"".join(lines)
    if not (host and _START.fullmatch(start) and _HEADERS.fullmatch(head)):
        return None  # h11 raises LocalProtocolError for these: let it
    if chunked is not None:
        if length is not None or chunked.lower() != b"chunked":
            return None
        body = (b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body)) if body else b"0\r\n\r\n"
    elif length is not None:
        if not length.isdigit() or int(length) != len(body):
            return None
    elif body:
        return None
    return start + head + b"\r\n" + body


@dataclass(frozen=True, slots=True)
class WireSettings:
    """What both wire transports take: the fallback's options and the HTTP/1.1 TLS context."""

    options: dict[str, Any]
    tls: ssl.SSLContext

    @property
    def pool(self) -> tuple[int | None, int | None, float | None]:
        """Max connections, max idle connections kept, idle expiry (seconds)."""
        limits: httpx2.Limits = self.options["limits"]
        return limits.max_connections, limits.max_keepalive_connections, limits.keepalive_expiry

    @classmethod
    def of(cls, verify: ssl.SSLContext | str | bool, cert: Any, trust_env: bool, http1: bool, http2: bool,
           limits: httpx2.Limits, name: str, fallback: str) -> WireSettings:
        """Check the HTTP version options and build the TLS context (ALPN ``http/1.1``).

        Raises:
            ValueError: ``http2=True`` or ``http1=False``.
        """
        if http2 or not http1:
            raise ValueError(f"{name} speaks HTTP/1.1 only: use {fallback}(http2=True)")
        context = httpx2.create_ssl_context(verify=verify, cert=cert, trust_env=trust_env)
        context.set_alpn_protocols(["http/1.1"])
        return cls({"verify": verify, "cert": cert, "trust_env": trust_env, "limits": limits}, context)


def request_key(url: httpx2.URL) -> Key:
    """The pool key of a request to ``url``: scheme, host, port (the scheme's default when absent)."""
    scheme = url.scheme
    return scheme, url.raw_host.decode("ascii"), url.port or _PORTS[scheme]


@dataclass(slots=True, eq=False)
class _Conn:
    sock: socket.socket
    key: Key
    generation: int
    timeout: float | None = None
    idle_since: float = 0.0

    def set_timeout(self, timeout: float | None) -> None:
        if timeout != self.timeout:  # settimeout costs two fcntl calls: only when it changes
            self.sock.settimeout(timeout)
            self.timeout = timeout


class WireTransport(httpx2.BaseTransport):
    """An HTTP/1.1 keep-alive transport for ``httpx2.Client`` (sync, thread-safe).

    Args:
        verify, cert, trust_env: certificate options, as ``httpx2.create_ssl_context`` takes them.
        http1, http2: must be ``True``/``False`` (HTTP/2 is not spoken here).
        limits: ``httpx2.Limits``: max connections (waits up to the pool timeout, then raises
            ``httpx2.PoolTimeout``), max idle connections kept, idle expiry in seconds.
    Raises:
        ValueError: ``http2=True`` or ``http1=False`` (use ``httpx2.HTTPTransport``).
    """

    def __init__(self, verify: ssl.SSLContext | str | bool = True, cert: Any = None, trust_env: bool = True,
                 http1: bool = True, http2: bool = False,
                 limits: httpx2.Limits = HTTPX2_LIMITS) -> None:
        settings = WireSettings.of(verify, cert, trust_env, http1, http2, limits, "WireTransport",
                                   "httpx2.HTTPTransport")
        self._options, self._ssl = settings.options, settings.tls
        self._max_conn, self._max_idle, self._expiry = settings.pool
        self._lock = threading.Condition(threading.Lock())
        self._idle: dict[Key, list[_Conn]] = {}
        self._n_idle = 0
        self._n_busy = 0  # connections opening or carrying an exchange
        self._generation = 0  # bumped by close(): connections of an older one are not pooled
        self._fallback: httpx2.HTTPTransport | None = None

    # -- one exchange -------------------------------------------------------------------------

    def handle_request(self, request: httpx2.Request) -> httpx2.Response:
        """Send ``request``; returns the response before its body is read.

        Raises:
            httpx2.TransportError: the subclass httpx2's own transport raises for the same failure.
        """
        wire = encode_request(request)
        if wire is None:
            return self._fallback_transport().handle_request(request)
        key = request_key(request.url)
        ext = request.extensions
        timeouts: dict[str, float | None] = ext.get("timeout") or {}
        conn = self._checkout(key, timeouts, ext.get("sni_hostname"))
        sent = True
        try:
            conn.set_timeout(timeouts.get("write"))
            conn.sock.sendall(wire)
        except TimeoutError as exc:
            self._release(conn, False)
            raise httpx2.WriteTimeout(str(exc)) from exc
        except OSError:
            sent = False  # as httpcore2: the server may have answered early (413...), read it
        except BaseException:
            self._release(conn, False)
            raise
        if _writebehind.WAITING:  # the ledger's deferred writes, in time spent waiting for the server
            _writebehind.while_waiting()
        parser = ResponseParser(no_body=request.method == "HEAD", max_body=None)
        first = self._read_head(conn, parser, timeouts.get("read"))
        if parser.done:
            self._release(conn, sent and parser.keep_alive)
            stream: httpx2.SyncByteStream = _Whole(first)
        else:
            stream = _Streamed(self, conn, parser, first, sent)
        return httpx2.Response(parser.status, headers=parser.headers, stream=stream,
                               extensions={"http_version": parser.version, "reason_phrase": parser.reason})

    def _read_head(self, conn: _Conn, parser: ResponseParser, timeout: float | None) -> bytes:
        """Read until the response head is parsed; returns the body bytes that came with it."""
        got = False
        try:
            conn.set_timeout(timeout)
            while True:
                data = conn.sock.recv(_RECV)
                if not data and not got:
                    raise httpx2.RemoteProtocolError("Server disconnected without sending a response.")
                got = True
                first = parser.take(data)
                if parser.head_done:
                    return first
        except BaseException as exc:
            self._release(conn, False)
            mapped = read_error(exc)
            if mapped is exc:
                raise
            raise mapped from exc

    def _fallback_transport(self) -> httpx2.HTTPTransport:
        with self._lock:
            if self._fallback is None:
                self._fallback = httpx2.HTTPTransport(**self._options)
            return self._fallback

    # -- the pool -----------------------------------------------------------------------------

    def _checkout(self, key: Key, timeouts: dict[str, float | None], sni: str | None) -> _Conn:
        pool_timeout = timeouts.get("pool")
        deadline = None if pool_timeout is None else time.monotonic() + pool_timeout
        with self._lock:
            while True:
                now = time.monotonic()
                idle = self._idle.get(key)
                while idle:
                    conn = idle.pop()
                    self._n_idle -= 1
                    fresh = self._expiry is None or now - conn.idle_since <= self._expiry
                    if fresh and not idle_closed(conn.sock):
                        self._n_busy += 1
                        return conn
                    conn.sock.close()
                if self._max_conn is None or self._n_busy + self._n_idle < self._max_conn:
                    self._n_busy += 1
                    generation = self._generation
                    break
                if self._n_idle:  # full of idle connections to other origins: drop the oldest
                    self._drop_oldest_idle()
                    continue
                if deadline is not None and deadline <= now:
                    raise httpx2.PoolTimeout("Timed out waiting for a connection from the pool.")
                self._lock.wait(None if deadline is None else deadline - now)
        connect = timeouts.get("connect")
        try:
            return _Conn(self._connect(key, connect, sni), key, generation, timeout=connect)
        except BaseException:
            with self._lock:
                self._n_busy -= 1
                self._lock.notify()
            raise

    def _drop_oldest_idle(self) -> None:
        oldest = min((c for conns in self._idle.values() for c in conns), key=lambda c: c.idle_since)
        self._idle[oldest.key].remove(oldest)
        self._n_idle -= 1
        oldest.sock.close()

    def _connect(self, key: Key, timeout: float | None, sni: str | None) -> socket.socket:
        scheme, host, port = key
        try:
            sock = socket.create_connection((host, port), timeout)
        except TimeoutError as exc:
            raise httpx2.ConnectTimeout(str(exc)) from exc
        except OSError as exc:
            raise httpx2.ConnectError(str(exc)) from exc
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if scheme == "https":
                sock = self._ssl.wrap_socket(sock, server_hostname=sni or host)
        except TimeoutError as exc:
            sock.close()
            raise httpx2.ConnectTimeout(str(exc)) from exc
        except OSError as exc:
            sock.close()
            raise httpx2.ConnectError(str(exc)) from exc
        return sock

    def _release(self, conn: _Conn, reusable: bool) -> None:
        """End ``conn``'s exchange: back to the pool when ``reusable``, else closed."""
        with self._lock:
            self._n_busy -= 1
            keep = (reusable and conn.generation == self._generation
                    and (self._max_idle is None or self._n_idle < self._max_idle))
            if keep:
                conn.idle_since = time.monotonic()
                self._idle.setdefault(conn.key, []).append(conn)
                self._n_idle += 1
            self._lock.notify()
        if not keep:
            conn.sock.close()

    def close(self) -> None:
        """Close every pooled connection (exchanges under way close theirs when they end)."""
        with self._lock:
            self._generation += 1
            idle = [c for conns in self._idle.values() for c in conns]
            self._idle.clear()
            self._n_idle = 0
            fallback, self._fallback = self._fallback, None
        for conn in idle:
            conn.sock.close()
        if fallback is not None:
            fallback.close()


class _Whole(httpx2.SyncByteStream):
    """A body read with the head (its connection is already back in the pool)."""

    def __init__(self, body: bytes) -> None:
        self._body = body

    def __iter__(self) -> Iterator[bytes]:
        if self._body:
            yield self._body


class _Streamed(httpx2.SyncByteStream):
    """A body still arriving: each ``recv`` is handed on as soon as its bytes are decoded."""

    def __init__(self, pool: WireTransport, conn: _Conn, parser: ResponseParser, first: bytes,
                 sent: bool) -> None:
        self._pool, self._conn, self._parser = pool, conn, parser
        self._first, self._sent = first, sent
        self._open = True

    def __iter__(self) -> Iterator[bytes]:
        if self._first:
            first, self._first = self._first, b""
            yield first
        parser, recv = self._parser, self._conn.sock.recv
        while not parser.done:
            if not self._open:
                raise httpx2.StreamClosed()
            try:
                piece = parser.take(recv(_RECV))
            except BaseException as exc:
                self._end(False)
                mapped = read_error(exc)
                if mapped is exc:
                    raise
                raise mapped from exc
            if piece:
                yield piece
        self._end(self._sent and parser.keep_alive)

    def _end(self, reusable: bool) -> None:
        if self._open:
            self._open = False
            self._pool._release(self._conn, reusable)

    def close(self) -> None:
        self._end(False)  # closed before the end: the socket goes too


def read_error(exc: BaseException) -> BaseException:
    """The httpx2 exception httpcore2 raises for ``exc`` during a read."""
    if isinstance(exc, httpx2.TransportError):
        return exc
    if isinstance(exc, TimeoutError):
        return httpx2.ReadTimeout(str(exc))
    if isinstance(exc, WireError):
        return httpx2.RemoteProtocolError(str(exc))
    if isinstance(exc, OSError):
        return httpx2.ReadError(str(exc))
    return exc


__all__ = ["WireTransport", "default_transport", "encode_request", "read_error", "supports"]
