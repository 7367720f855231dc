"""A small HTTP/1.1 client for JSON-RPC POSTs: the chain's hot path, without a general HTTP stack.

Why not httpx2 here: one ``eth_*`` call through ``httpx2`` costs ~0.7 ms (sync) to ~1 ms (async)
of CPU on the machines we measured, about 1 500 Python calls per request for URL parsing,
header models, auth, redirects, event hooks and the connection pool's bookkeeping; a raw
keep-alive socket answers the same call in ~0.02 ms.  A paid request on the server makes one
such call, so the general stack was the largest single cost of verifying a payment.  This
module does only what JSON-RPC needs: ``POST`` a JSON body over a kept-alive connection
(plain or TLS) and read one response framed by ``Content-Length``, chunked encoding or the
connection's end.

Layout: ``ResponseParser`` (``tempo._httpparse``) is sans-I/O (bytes in, one response out,
whole or piece by piece; the sync paying client's ``client._wire.WireTransport`` streams
answers through it too); ``SyncPool`` and ``AsyncPool`` only move bytes.  ``tempo.rpc``
chooses this path or ``httpx2`` (``use_wire``): proxies from the environment and event loops
other than asyncio keep ``httpx2``.

Sharp edges, labelled:
- Requests are never retried here.  A POST may have reached the node (a broadcast!), so a
  connection that fails mid-call raises ``WireError`` and the caller decides.  Only idle
  connections are checked before reuse (readable or too old: closed, a fresh one is opened).
- Bodies are bounded (``MAX_BODY``) so a hostile endpoint cannot exhaust memory.
"""

from __future__ import annotations

import asyncio
import os
import select
import socket
import ssl
import threading
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from ._httpparse import MAX_BODY, MAX_HEAD, ResponseParser, WireError

__all__ = ["MAX_BODY", "MAX_HEAD", "AsyncPool", "Endpoint", "ResponseParser", "SyncPool", "WireError",
           "idle_closed", "tls_context", "use_wire"]

IDLE_EXPIRY = 10.0  # seconds an idle connection is kept; nodes and proxies drop them after a while
MAX_IDLE = 32


@dataclass(frozen=True, slots=True)
class Endpoint:
    """Where to POST: scheme, host, port and request target of an ``http(s)://`` URL."""

    scheme: str
    host: str
    port: int
    target: str
    host_header: str

    @classmethod
    def from_url(cls, url: str) -> Endpoint:
        """Parse ``url``.  Raises ``WireError`` for anything but ``http``/``https`` with a host."""
        try:
            parts = urlsplit(url)
            port = parts.port
        except ValueError as exc:
            raise WireError(f"bad URL {url!r}: {exc}") from None
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise WireError(f"bad URL {url!r}: expected http(s)://host[:port]/path")
        default = 443 if parts.scheme == "https" else 80
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        host = parts.hostname
        shown = f"[{host}]" if ":" in host else host
        host_header = shown if port in (None, default) else f"{shown}:{port}"
        return cls(parts.scheme, host, port or default, target, host_header)

    def request(self, body: bytes, headers: tuple[tuple[str, str], ...] = ()) -> bytes:
        """The bytes of ``POST target`` carrying ``body`` as JSON."""
        extra = "".join(f"{k}: {v}\r\n" for k, v in headers)
        head = (f"POST {self.target} HTTP/1.1\r\nHost: {self.host_header}\r\n"
                f"Content-Type: application/json\r\nAccept: application/json\r\n"
                f"Content-Length: {len(body)}\r\n{extra}\r\n")
        return head.encode("latin-1") + body


def use_wire(url: str) -> bool:
    """True when ``url`` may be served by this module: http(s), no proxy configured for it."""
    try:
        endpoint = Endpoint.from_url(url)
    except WireError:
        return False
    proxies = urllib.request.getproxies()
    if not (proxies.get(endpoint.scheme) or proxies.get("all")):
        return True
    return bool(urllib.request.proxy_bypass(endpoint.host))


_tls_lock = threading.Lock()
_tls_context: ssl.SSLContext | None = None


def tls_context() -> ssl.SSLContext:
    """A verifying client context (``SSL_CERT_FILE``/``SSL_CERT_DIR`` if set, else certifi's CAs)."""
    global _tls_context
    with _tls_lock:
        if _tls_context is None:
            if os.environ.get("SSL_CERT_FILE") or os.environ.get("SSL_CERT_DIR"):
                _tls_context = ssl.create_default_context()
            else:
                try:
                    import certifi
                    _tls_context = ssl.create_default_context(cafile=certifi.where())
                except ImportError:  # pragma: no cover - certifi comes with httpx
                    _tls_context = ssl.create_default_context()
        return _tls_context


@dataclass
class _SyncConn:
    sock: socket.socket
    idle_since: float


class SyncPool:
    """Kept-alive connections to one endpoint, safe to share between threads.

    Args:
        url: the endpoint.  connect/read: timeouts in seconds (read applies to each wait).
    """

    def __init__(self, url: str, *, connect: float, read: float) -> None:
        self.endpoint = Endpoint.from_url(url)
        self._connect, self._read = connect, read
        self._idle: list[_SyncConn] = []
        self._lock = threading.Lock()
        self._closed = False

    def post(self, body: bytes) -> tuple[int, bytes]:
        """POST ``body``; returns ``(status, body)``.  Raises ``WireError``."""
        sock = self._checkout()
        parser = ResponseParser()
        try:
            sock.sendall(self.endpoint.request(body))
            while not parser.feed(sock.recv(65536)):
                pass
        except (OSError, WireError) as exc:
            sock.close()
            raise _wire_error(exc) from exc
        if parser.keep_alive:
            self._checkin(sock)
        else:
            sock.close()
        return parser.status, parser.body

    def _checkout(self) -> socket.socket:
        now = time.monotonic()
        with self._lock:
            if self._closed:
                raise WireError("client closed")
            while self._idle:
                conn = self._idle.pop()
                if now - conn.idle_since < IDLE_EXPIRY and not idle_closed(conn.sock):
                    return conn.sock
                conn.sock.close()
        return self._open()

    def _open(self) -> socket.socket:
        ep = self.endpoint
        try:
            sock = socket.create_connection((ep.host, ep.port), timeout=self._connect)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if ep.scheme == "https":
                sock = tls_context().wrap_socket(sock, server_hostname=ep.host)
            sock.settimeout(self._read)
        except OSError as exc:
            raise _wire_error(exc, "connect") from exc
        return sock

    def _checkin(self, sock: socket.socket) -> None:
        with self._lock:
            if self._closed or len(self._idle) >= MAX_IDLE:
                sock.close()
            else:
                self._idle.append(_SyncConn(sock, time.monotonic()))

    def close(self) -> None:
        """Close every idle connection; later calls raise ``WireError``."""
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
        for conn in idle:
            conn.sock.close()


def idle_closed(sock: socket.socket) -> bool:
    """Whether an idle kept-alive connection was closed by the peer or broke: something to read
    on a connection with no request in flight means EOF, a reset or stray bytes; never reuse it."""
    if isinstance(sock, ssl.SSLSocket) and sock.pending():
        return True
    return readable_now(sock)


def readable_now(sock: socket.socket | int) -> bool:
    """Whether ``sock`` (or descriptor) has something to read right now; ``True`` when it cannot
    be asked (closed): an idle connection that says so is not reused."""
    try:
        if hasattr(select, "poll"):
            poller = select.poll()  # poll, not select: any descriptor number
            poller.register(sock, select.POLLIN)
            return bool(poller.poll(0))
        return bool(select.select([sock], [], [], 0)[0])  # Windows: no poll; sockets, not numbers
    except (OSError, ValueError):
        return True


def _wire_error(exc: BaseException, stage: str = "request") -> WireError:
    if isinstance(exc, WireError):
        return exc
    if isinstance(exc, (socket.timeout, TimeoutError, asyncio.TimeoutError)):
        return WireError(f"{stage} timed out")
    return WireError(f"{stage} failed: {type(exc).__name__}: {exc}")


class _Conn(asyncio.Protocol):
    """One asyncio connection: feeds what arrives to the current exchange's parser."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.transport: Any = None  # an asyncio.Transport (uvloop's are not subclasses)
        self.parser: ResponseParser | None = None
        self.waiter: asyncio.Future[None] | None = None
        self.closed = False
        self.idle_since = 0.0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def data_received(self, data: bytes) -> None:
        if self.parser is None:  # bytes on an idle connection: it is not reusable
            self.closed = True
            if self.transport is not None:
                self.transport.close()
            return
        self._feed(data)

    def eof_received(self) -> bool | None:
        if self.parser is not None:
            self._feed(b"")
        self.closed = True
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(WireError(f"connection lost: {exc}" if exc else "connection closed"))

    def _feed(self, data: bytes) -> None:
        assert self.parser is not None and self.waiter is not None
        if self.waiter.done():
            return
        try:
            if self.parser.feed(data):
                self.waiter.set_result(None)
        except WireError as exc:
            self.waiter.set_exception(exc)

    async def exchange(self, request: bytes, timeout: float) -> ResponseParser:
        """Send ``request`` and wait (at most ``timeout`` s) for one whole answer."""
        assert self.transport is not None
        self.parser, self.waiter = ResponseParser(), self.loop.create_future()
        timer = self.loop.call_later(timeout, _expire, self.waiter)
        try:
            self.transport.write(request)
            await self.waiter
            return self.parser
        finally:
            timer.cancel()
            self.waiter = None

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()


def _expire(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_exception(WireError("request timed out"))


class AsyncPool:
    """The asyncio twin of ``SyncPool`` (connections belong to the loop that opened them).

    ``read`` bounds the whole exchange (send and the complete answer), not each wait.
    """

    def __init__(self, url: str, *, connect: float, read: float) -> None:
        self.endpoint = Endpoint.from_url(url)
        self._connect, self._read = connect, read
        self._idle: list[_Conn] = []
        self._closed = False

    async def post(self, body: bytes) -> tuple[int, bytes]:
        """POST ``body``; returns ``(status, body)``.  Raises ``WireError``."""
        conn = await self._checkout()
        try:
            parser = await conn.exchange(self.endpoint.request(body), self._read)
        except BaseException:  # failed or cancelled mid-call: the connection's state is unknown
            conn.close()
            raise
        conn.parser = None
        if parser.keep_alive and not conn.closed and not self._closed and len(self._idle) < MAX_IDLE:
            conn.idle_since = time.monotonic()
            self._idle.append(conn)
        else:
            conn.close()
        return parser.status, parser.body

    async def _checkout(self) -> _Conn:
        if self._closed:
            raise WireError("client closed")
        loop = asyncio.get_running_loop()
        now = time.monotonic()
        while self._idle:
            conn = self._idle.pop()
            if conn.loop is loop and not conn.closed and now - conn.idle_since < IDLE_EXPIRY:
                return conn
            _discard(conn, loop)
        ep = self.endpoint
        tls = tls_context() if ep.scheme == "https" else None
        try:
            _, conn = await asyncio.wait_for(
                loop.create_connection(lambda: _Conn(loop), ep.host, ep.port, ssl=tls,
                                       server_hostname=ep.host if tls else None), self._connect)
        except (OSError, asyncio.TimeoutError) as exc:
            raise _wire_error(exc, "connect") from exc
        return conn

    async def aclose(self) -> None:
        """Close every idle connection of the running loop; later calls raise ``WireError``."""
        self._closed = True
        idle, self._idle = self._idle, []
        loop = asyncio.get_running_loop()
        for conn in idle:
            _discard(conn, loop)


def _discard(conn: _Conn, loop: asyncio.AbstractEventLoop) -> None:
    """Close ``conn`` from ``loop``; one of another loop is closed through that loop."""
    close_on_its_loop(conn.loop, conn.transport, conn.close, current=loop)


def close_on_its_loop(loop: asyncio.AbstractEventLoop, transport: Any, close: Callable[[], None], *,
                      current: asyncio.AbstractEventLoop | None) -> None:
    """Close an asyncio connection of ``loop`` (``close``) from whichever thread and loop
    (``current``: the running one, or ``None``): at once on its own loop, through its loop
    when that still runs, else by shutting the socket down (its loop is gone)."""
    if loop is current:
        close()
    elif not loop.is_closed():
        loop.call_soon_threadsafe(close)
    elif transport is not None:  # its loop is gone: end the TCP connection without it
        sock = transport.get_extra_info("socket")
        try:
            sock.shutdown(socket.SHUT_RDWR)  # the fd itself is closed when the transport is collected
        except (OSError, AttributeError, NotImplementedError):
            pass
