"""A lean asyncio HTTP/1.1 transport for the async clients: the twin of :mod:`._wire`.

Why: ``httpx2.AsyncHTTPTransport`` (httpcore2 async over anyio) costs more CPU per request than
its sync twin, and a paid request crosses the transport twice.  Here a small
``asyncio.Protocol`` frames what arrives with the sans-I/O
:class:`~mpp_claude.tempo._httpparse.ResponseParser` in the loop's own callback and wakes the
waiting coroutine through one future; the head and body go out in one ``transport.write``.

Same contract as :class:`~mpp_claude.client._wire.WireTransport`: the request bytes come from
:func:`~mpp_claude.client._wire.encode_request` (shared), every request it refuses goes to an
``httpx2.AsyncHTTPTransport`` built with the same options, and so does every request made under
another async library than asyncio (trio through anyio...); failures raise the ``httpx2``
exception httpcore2 raises for them.  Connections belong to the event loop that opened them.

Sharp edges, labelled:
- A request is never sent twice; a failed or cancelled exchange closes its connection, which
  never returns to the pool (a cancelled POST may have reached the server: the caller decides).
- Idle connections are checked before reuse (closed by the server, readable, or expired):
  such a connection is closed, never written to.
- A connection returns to the pool only once its answer was read to the end and the answer
  allows keep-alive; a response closed early closes its connection.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx2
import sniffio

from ..tempo._http1 import close_on_its_loop, readable_now
from ..tempo._httpparse import ResponseParser, WireError
from . import _writebehind
from ._wire import HTTPX2_LIMITS, Key, WireSettings, encode_request, read_error, request_key, supports

_PAUSE = 1 << 20  # body bytes framed but not handed on past which reading pauses


def default_async_transport(**options: Any) -> httpx2.AsyncBaseTransport:
    """An :class:`AsyncWireTransport` when it serves ``options`` exactly, else ``httpx2.AsyncHTTPTransport``.

    Args:
        **options: ``httpx2.AsyncHTTPTransport`` keyword arguments.
    Returns:
        the transport.
    """
    if supports(options):
        return AsyncWireTransport(**options)
    return httpx2.AsyncHTTPTransport(**options)


def _on_asyncio() -> bool:
    try:
        return sniffio.current_async_library() == "asyncio"
    except sniffio.AsyncLibraryNotFoundError:
        return False


def _expire(waiter: asyncio.Future[None], error: type[httpx2.TimeoutException]) -> None:
    if not waiter.done():
        waiter.set_exception(error("timed out"))


def _wake(waiter: asyncio.Future[None] | None) -> None:
    if waiter is not None and not waiter.done():
        waiter.set_result(None)


class _Conn(asyncio.Protocol):
    """One connection: what arrives is framed at once by the current exchange's parser."""

    def __init__(self, loop: asyncio.AbstractEventLoop, key: Key, generation: int) -> None:
        self.loop, self.key, self.generation = loop, key, generation
        self.transport: Any = None  # an asyncio.Transport (uvloop's are not subclasses)
        self.fd = -1
        self.parser: ResponseParser | None = None
        self.pieces: list[bytes] = []  # body bytes framed, not handed on yet
        self.buffered = 0
        self.error: httpx2.TransportError | None = None
        self.got = False  # a byte of the current answer arrived
        self.waiter: asyncio.Future[None] | None = None
        self.closed = False
        self.read_paused = self.write_paused = False
        self.idle_since = 0.0

    # -- the loop's callbacks -----------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport
        sock = transport.get_extra_info("socket")
        if sock is not None:
            self.fd = sock.fileno()
            try:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            except OSError:
                pass

    def data_received(self, data: bytes) -> None:
        parser = self.parser
        if parser is None or parser.done or self.error is not None:
            self.abort()  # bytes on an idle connection, or past the answer: its state is unknown
            return
        self.got = True
        try:
            piece = parser.take(data)
        except WireError as exc:
            self._fail(exc)
            return
        if piece:
            self.pieces.append(piece)
            self.buffered += len(piece)
            if self.buffered > _PAUSE and not self.read_paused:
                self.read_paused = True
                self.transport.pause_reading()
        if parser.head_done:
            _wake(self.waiter)

    def eof_received(self) -> bool | None:
        self._ended(None)
        return None  # the transport closes itself

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._ended(exc)
        _wake(self.waiter)

    def pause_writing(self) -> None:
        self.write_paused = True

    def resume_writing(self) -> None:
        self.write_paused = False
        _wake(self.waiter)

    def _ended(self, exc: Exception | None) -> None:
        """The peer closed (``exc`` None) or the connection broke, maybe mid-answer."""
        parser = self.parser
        if parser is None or parser.done or self.error is not None:
            return
        if exc is not None:
            self._fail(exc)
        elif not self.got:
            self._fail(httpx2.RemoteProtocolError("Server disconnected without sending a response."))
        else:
            try:
                piece = parser.take(b"")
            except WireError as error:
                self._fail(error)
                return
            if piece:
                self.pieces.append(piece)
            _wake(self.waiter)

    def _fail(self, exc: BaseException) -> None:
        """Record the exchange's failure as the ``httpx2`` exception httpcore2 raises for it."""
        mapped = read_error(exc)
        self.error = mapped if isinstance(mapped, httpx2.TransportError) else httpx2.ReadError(str(exc))
        _wake(self.waiter)

    # -- used by the exchange -----------------------------------------------------------------

    def begin(self, no_body: bool) -> ResponseParser:
        self.parser = parser = ResponseParser(no_body=no_body, max_body=None)
        self.got, self.error = False, None
        return parser

    async def wait(self, timeout: float | None, error: type[httpx2.TimeoutException]) -> None:
        """Wait for the next event (bytes, end, error, buffer drained); ``error`` after ``timeout``."""
        waiter = self.waiter = self.loop.create_future()
        timer = None if timeout is None else self.loop.call_later(timeout, _expire, waiter, error)
        try:
            await waiter
        finally:
            self.waiter = None
            if timer is not None:
                timer.cancel()

    def take_pieces(self) -> bytes:
        pieces, self.pieces, self.buffered = self.pieces, [], 0
        if self.read_paused and not self.closed:
            self.read_paused = False
            self.transport.resume_reading()
        return pieces[0] if len(pieces) == 1 else b"".join(pieces)

    def reusable_idle(self, loop: asyncio.AbstractEventLoop, now: float, expiry: float | None) -> bool:
        """Whether this idle connection may carry a request now (same loop, open, fresh, silent)."""
        if self.closed or self.loop is not loop or (expiry is not None and now - self.idle_since > expiry):
            return False
        return not readable_now(self.fd)  # the server's FIN may not have reached our callbacks yet

    def abort(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.abort()

    def discard(self) -> None:
        """Close this connection from whichever thread and loop (its loop may be gone)."""
        try:
            current: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            current = None
        self.closed = True  # never pooled again, whichever way it is closed
        close_on_its_loop(self.loop, self.transport, self.abort, current=current)


class AsyncWireTransport(httpx2.AsyncBaseTransport):
    """An HTTP/1.1 keep-alive transport for ``httpx2.AsyncClient`` on asyncio (uvloop too).

    Used from one thread at a time (as an ``AsyncClient`` is); a connection pooled under one
    event loop is closed, not reused, when a request comes from another one.

    Takes the arguments of :class:`~mpp_claude.client._wire.WireTransport` (``ValueError`` for
    ``http2=True`` or ``http1=False``: use ``httpx2.AsyncHTTPTransport``).
    """

    def __init__(self, verify: ssl.SSLContext | str | bool = True, cert: Any = None, trust_env: bool = True,
                 http1: bool = True, http2: bool = False,
                 limits: httpx2.Limits = HTTPX2_LIMITS) -> None:
        settings = WireSettings.of(verify, cert, trust_env, http1, http2, limits, "AsyncWireTransport",
                                   "httpx2.AsyncHTTPTransport")
        self._options, self._ssl = settings.options, settings.tls
        self._max_conn, self._max_idle, self._expiry = settings.pool
        self._idle: dict[Key, list[_Conn]] = {}
        self._n_idle = 0
        self._n_busy = 0  # connections opening or carrying an exchange
        self._generation = 0  # bumped by aclose(): connections of an older one are not pooled
        self._waiters: list[asyncio.Future[None]] = []  # requests waiting for a pool slot
        self._fallback: httpx2.AsyncHTTPTransport | None = None

    # -- one exchange -------------------------------------------------------------------------

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        """Send ``request``; returns the response before its body is read.

        Raises:
            httpx2.TransportError: the subclass httpx2's own transport raises for the same failure.
        """
        wire = encode_request(request) if _on_asyncio() else None
        if wire is None:
            return await self._fallback_transport().handle_async_request(request)
        key = request_key(request.url)
        ext = request.extensions
        timeouts: dict[str, float | None] = ext.get("timeout") or {}
        conn = await self._checkout(key, timeouts, ext.get("sni_hostname"))
        parser = conn.begin(request.method == "HEAD")
        try:
            conn.transport.write(wire)
            while conn.write_paused and not conn.closed:  # a large body: wait until it is out
                await conn.wait(timeouts.get("write"), httpx2.WriteTimeout)
            if _writebehind.WAITING:  # the ledger's deferred writes, in time spent waiting for the server
                _writebehind.while_waiting()
            read = timeouts.get("read")
            while not parser.head_done:
                if conn.error is not None:
                    raise conn.error
                await conn.wait(read, httpx2.ReadTimeout)
        except BaseException:  # failed or cancelled: the connection's state is unknown
            self._release(conn, False)
            raise
        if parser.done:
            body = conn.take_pieces()
            self._release(conn, parser.keep_alive)
            stream: httpx2.AsyncByteStream = httpx2.ByteStream(body)
        else:
            stream = _Streamed(self, conn, read)
        return httpx2.Response(parser.status, headers=parser.headers, stream=stream,
                               extensions={"http_version": parser.version, "reason_phrase": parser.reason})

    def _fallback_transport(self) -> httpx2.AsyncHTTPTransport:
        if self._fallback is None:
            self._fallback = httpx2.AsyncHTTPTransport(**self._options)
        return self._fallback

    # -- the pool -----------------------------------------------------------------------------

    async def _checkout(self, key: Key, timeouts: dict[str, float | None], sni: str | None) -> _Conn:
        loop = asyncio.get_running_loop()
        pool_timeout = timeouts.get("pool")
        deadline = None if pool_timeout is None else time.monotonic() + pool_timeout
        while True:
            now = time.monotonic()
            idle = self._idle.get(key)
            while idle:
                conn = idle.pop()
                self._n_idle -= 1
                if conn.reusable_idle(loop, now, self._expiry):
                    self._n_busy += 1
                    return conn
                conn.discard()
            if self._max_conn is None or self._n_busy + self._n_idle < self._max_conn:
                break
            if self._n_idle:  # full of idle connections to other origins: drop the oldest
                self._drop_oldest_idle()
                continue
            if deadline is not None and deadline <= now:
                raise httpx2.PoolTimeout("Timed out waiting for a connection from the pool.")
            waiter = loop.create_future()
            self._waiters.append(waiter)
            timer = None if deadline is None else loop.call_later(deadline - now, _wake, waiter)
            try:
                await waiter
            finally:
                if timer is not None:
                    timer.cancel()
                if waiter in self._waiters:
                    self._waiters.remove(waiter)
        self._n_busy += 1
        try:
            return await self._connect(loop, key, timeouts.get("connect"), sni)
        except BaseException:
            self._n_busy -= 1
            self._wake_waiters()
            raise

    def _drop_oldest_idle(self) -> None:
        oldest = min((c for conns in self._idle.values() for c in conns), key=lambda c: c.idle_since)
        self._idle[oldest.key].remove(oldest)
        self._n_idle -= 1
        oldest.discard()

    async def _connect(self, loop: asyncio.AbstractEventLoop, key: Key, timeout: float | None,
                       sni: str | None) -> _Conn:
        scheme, host, port = key
        tls = self._ssl if scheme == "https" else None
        generation = self._generation
        opening = loop.create_connection(lambda: _Conn(loop, key, generation), host, port, ssl=tls,
                                         server_hostname=(sni or host) if tls is not None else None)
        try:
            _, conn = await (opening if timeout is None else asyncio.wait_for(opening, timeout))
        except (TimeoutError, asyncio.TimeoutError) as exc:  # two classes before Python 3.11
            raise httpx2.ConnectTimeout(str(exc)) from exc
        except OSError as exc:
            raise httpx2.ConnectError(str(exc)) from exc
        return conn

    def _release(self, conn: _Conn, reusable: bool) -> None:
        """End ``conn``'s exchange: back to the pool when ``reusable``, else closed."""
        self._n_busy -= 1
        conn.parser = None
        keep = (reusable and not conn.closed and conn.generation == self._generation
                and (self._max_idle is None or self._n_idle < self._max_idle))
        if keep:
            conn.take_pieces()
            conn.idle_since = time.monotonic()
            self._idle.setdefault(conn.key, []).append(conn)
            self._n_idle += 1
        else:
            conn.abort()
        if self._waiters:
            self._wake_waiters()

    def _wake_waiters(self) -> None:
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:  # each looks again; those that find no slot wait again
            loop = waiter.get_loop()
            if not loop.is_closed():
                loop.call_soon_threadsafe(_wake, waiter)

    async def aclose(self) -> None:
        """Close every pooled connection (exchanges under way close theirs when they end)."""
        self._generation += 1
        idle = [c for conns in self._idle.values() for c in conns]
        self._idle.clear()
        self._n_idle = 0
        for conn in idle:
            conn.discard()
        fallback, self._fallback = self._fallback, None
        if fallback is not None:
            await fallback.aclose()


class _Streamed(httpx2.AsyncByteStream):
    """A body still arriving: each chunk is handed on as soon as its bytes are framed."""

    def __init__(self, pool: AsyncWireTransport, conn: _Conn, timeout: float | None) -> None:
        self._pool, self._conn, self._timeout = pool, conn, timeout
        self._open = True

    async def __aiter__(self) -> AsyncIterator[bytes]:
        conn = self._conn
        parser = conn.parser
        assert parser is not None
        try:
            while True:
                if conn.pieces:
                    yield conn.take_pieces()
                elif parser.done:
                    break
                elif conn.error is not None:
                    raise conn.error
                elif not self._open:
                    raise httpx2.StreamClosed()
                else:
                    await conn.wait(self._timeout, httpx2.ReadTimeout)
        except BaseException:  # failed, cancelled, or closed early (GeneratorExit)
            self._end(False)
            raise
        self._end(parser.keep_alive)

    def _end(self, reusable: bool) -> None:
        if self._open:
            self._open = False
            self._pool._release(self._conn, reusable)

    async def aclose(self) -> None:
        self._end(False)  # closed before the end: the connection goes too


__all__ = ["AsyncWireTransport", "default_async_transport"]
