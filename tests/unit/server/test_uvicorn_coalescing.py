"""CoalescingProtocol: uvicorn's own HTTP/1.1 protocol, each response leaving in one write."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from uvicorn.config import Config
from uvicorn.server import ServerState

from mpp_claude.server._uvicorn import CoalescingProtocol, CoalescingTransport

REQUEST = b"GET /x HTTP/1.1\r\nHost: t\r\n\r\n"


class RecordingTransport(asyncio.Transport):
    """The real transport's interface, recording each ``write`` call."""

    def __init__(self) -> None:
        super().__init__()
        self.writes: list[bytes] = []
        self.closed = False
        self.aborted = False
        self.eof = False

    def write(self, data: Any) -> None:
        assert not self.closed, "write after close"
        self.writes.append(bytes(data))

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.aborted = self.closed = True

    def write_eof(self) -> None:
        self.eof = True

    def is_closing(self) -> bool:
        return self.closed

    def get_write_buffer_size(self) -> int:
        return 7

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"peername": ("127.0.0.1", 5555), "sockname": ("127.0.0.1", 80)}.get(name, default)

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


async def _serve(app: Any, transport: RecordingTransport | None = None) -> RecordingTransport:
    """Feed ``REQUEST`` to a CoalescingProtocol running ``app``; the transport once the loop settled."""
    config = Config(app=app, lifespan="off", log_level="warning")
    config.load()
    protocol = CoalescingProtocol(config=config, server_state=ServerState(), app_state={},
                                  _loop=asyncio.get_running_loop())
    transport = transport or RecordingTransport()
    protocol.connection_made(transport)
    protocol.data_received(REQUEST)
    for _ in range(50):
        await asyncio.sleep(0)
    return transport


def _app(*messages: dict[str, Any], yield_between: bool = False) -> Any:
    """An ASGI app sending ``messages`` (yielding to the loop after each with ``yield_between``)."""
    async def app(scope: Any, receive: Any, send: Any) -> None:
        for message in messages:
            await send(message)
            if yield_between:
                await asyncio.sleep(0)
    return app


def test_a_response_leaves_in_one_write() -> None:
    body = b'{"detail":"pay first"}'
    app = _app({"type": "http.response.start", "status": 402,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode())]},
               {"type": "http.response.body", "body": body})
    transport = asyncio.run(_serve(app))
    assert len(transport.writes) == 1
    head, _, rest = transport.writes[0].partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 402 ") and rest == body
    assert not transport.closed


def test_streamed_chunks_leave_when_the_app_yields_not_at_the_end() -> None:
    sent_before_last: list[int] = []
    transport = RecordingTransport()

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"text/event-stream")]})
        await send({"type": "http.response.body", "body": b"data: 1\n\n", "more_body": True})
        await asyncio.sleep(0)
        await send({"type": "http.response.body", "body": b"data: 2\n\n", "more_body": True})
        await asyncio.sleep(0)
        sent_before_last.append(len(transport.writes))
        await send({"type": "http.response.body", "body": b""})

    asyncio.run(_serve(app, transport))
    assert sent_before_last == [2]  # head + first chunk together, then the second chunk
    first = transport.writes[0]
    assert first.startswith(b"HTTP/1.1 200 ") and first.endswith(b"data: 1\n\n\r\n")
    assert transport.writes[1] == b"9\r\ndata: 2\n\n\r\n"
    assert transport.writes[2] == b"0\r\n\r\n"


def test_connection_close_flushes_before_closing() -> None:
    app = _app({"type": "http.response.start", "status": 200,
                "headers": [(b"content-length", b"2"), (b"connection", b"close")]},
               {"type": "http.response.body", "body": b"ok"})
    transport = asyncio.run(_serve(app))
    assert transport.closed and len(transport.writes) == 1 and transport.writes[0].endswith(b"\r\n\r\nok")


def test_proxy_flush_close_abort_and_buffer_size() -> None:
    async def run() -> None:
        real = RecordingTransport()
        proxy = CoalescingTransport(real, asyncio.get_running_loop())
        proxy.write(b"a")
        proxy.writelines([b"b", bytearray(b"c"), b""])
        assert real.writes == [] and proxy.get_write_buffer_size() == 7 + 3
        await asyncio.sleep(0)  # the loop turned: one write
        assert real.writes == [b"abc"]
        proxy.write(b"d")
        proxy.write_eof()
        assert real.writes == [b"abc", b"d"] and real.eof
        proxy.write(b"e")
        proxy.abort()  # pending bytes are dropped, as the real abort drops its buffer
        await asyncio.sleep(0)
        assert real.writes == [b"abc", b"d"] and real.aborted
        assert proxy.get_extra_info("peername") == ("127.0.0.1", 5555)

    asyncio.run(run())


def test_nothing_is_written_to_a_closing_transport() -> None:
    async def run() -> list[bytes]:
        real = RecordingTransport()
        proxy = CoalescingTransport(real, asyncio.get_running_loop())
        proxy.write(b"late")
        real.closed = True  # the peer went away before the loop turned
        await asyncio.sleep(0)
        return real.writes

    assert asyncio.run(run()) == []


@pytest.mark.parametrize("status", [200, 402, 500])
def test_a_body_sent_without_yielding_joins_its_head(status: int) -> None:
    app = _app({"type": "http.response.start", "status": status, "headers": [(b"content-length", b"3")]},
               {"type": "http.response.body", "body": b"abc"})
    transport = asyncio.run(_serve(app))
    assert len(transport.writes) == 1 and transport.writes[0].endswith(b"\r\n\r\nabc")


def test_a_head_is_not_held_back_while_the_app_waits() -> None:
    app = _app({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"3")]},
               {"type": "http.response.body", "body": b"abc"}, yield_between=True)
    transport = asyncio.run(_serve(app))
    assert [w.endswith(b"\r\n\r\n") for w in transport.writes] == [True, False]
    assert transport.writes[1] == b"abc"
