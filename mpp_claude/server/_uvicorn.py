"""uvicorn's HTTP/1.1 protocol, sending each response in one write instead of two.

uvicorn writes a response's status line and headers as soon as the app sends
``http.response.start``, and the body in a second ``write`` when ``http.response.body``
follows.  With ``TCP_NODELAY`` (uvicorn's default) that is two TCP segments: the client
wakes up for the head, parses it, finds the body missing and waits again.  On a loopback
or in a virtual machine, where every wake-up costs tens to hundreds of microseconds, that
second wake-up is a visible part of a small paid request (a 402 answer, a JSON completion).

``CoalescingProtocol`` subclasses the protocol uvicorn would pick itself (``httptools``
when installed, else ``h11``) and gives it a transport proxy that collects the writes made
while one response is produced and sends them together:

- when the response is complete (uvicorn calls the protocol's ``on_response_complete``):
  at once, so a non-streamed answer leaves in exactly one ``write``;
- otherwise at the end of the current event-loop iteration (``loop.call_soon``): a streamed
  (SSE) answer still sends each chunk as soon as the app yields control, never later;
- before ``close`` / ``write_eof`` (nothing is lost); ``abort`` drops what is pending, as
  the real ``abort`` drops its buffer.

Everything else (flow control, ``get_extra_info``, ``is_closing``) goes straight to the real
transport; ``get_write_buffer_size`` counts the pending bytes too.  Use it with
``uvicorn.run(app, http=CoalescingProtocol)``.
"""

from __future__ import annotations

import asyncio
from typing import Any

try:  # the C parser uvicorn prefers when it is installed (the server extra installs it)
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol as _Base
except ImportError:  # pragma: no cover - exercised only without httptools
    from uvicorn.protocols.http.h11_impl import H11Protocol as _Base  # type: ignore[assignment]


class CoalescingTransport:
    """A transport proxy whose ``write`` calls made close together leave as one ``write``.

    Args:
        transport: the real transport (owned by the event loop).
        loop: the running loop, to schedule the end-of-iteration flush.
    """

    __slots__ = ("_loop", "_pending", "_transport")

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._pending: list[bytes] | None = None

    def write(self, data: bytes | bytearray | memoryview) -> None:
        """Queue ``data``; it is sent by the next ``flush`` (at the latest when the loop turns)."""
        if not data:
            return
        if self._pending is None:
            self._pending = [bytes(data)]
            self._loop.call_soon(self.flush)
        else:
            self._pending.append(bytes(data))

    def writelines(self, chunks: Any) -> None:
        for chunk in chunks:
            self.write(chunk)

    def flush(self) -> None:
        """Send what is queued, in one ``write`` (dropped if the connection is already closing)."""
        pending, self._pending = self._pending, None
        if pending and not self._transport.is_closing():
            self._transport.write(pending[0] if len(pending) == 1 else b"".join(pending))

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def write_eof(self) -> None:
        self.flush()
        self._transport.write_eof()

    def abort(self) -> None:
        self._pending = None
        self._transport.abort()

    def get_write_buffer_size(self) -> int:
        queued = sum(len(chunk) for chunk in self._pending) if self._pending else 0
        return int(self._transport.get_write_buffer_size()) + queued

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


class CoalescingProtocol(_Base):
    """uvicorn's own HTTP/1.1 protocol with a ``CoalescingTransport`` (see the module docstring)."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        proxy = CoalescingTransport(transport, asyncio.get_running_loop())
        super().connection_made(proxy)  # type: ignore[arg-type]  # duck-typed asyncio.Transport

    def on_response_complete(self) -> None:
        transport = self.transport
        if isinstance(transport, CoalescingTransport):
            transport.flush()
        super().on_response_complete()
