"""UpstreamCall over real HTTP: AnthropicUpstream's stream opened in one task is read in another.

The local Anthropic app is served by uvicorn on loopback (streams arrive a chunk every 2 ms);
the pooled httpx2 client has one connection, so a stream that is not released would make the
next request wait for the pool and fail.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Mapping
from typing import Any

import httpx2
import pytest

from mpp_claude.errors import UpstreamError
from mpp_claude.server.early import UpstreamCall
from mpp_claude.server.upstreams import AnthropicUpstream, LocalUpstream, create_local_anthropic_app
from mpp_claude.server.upstreams.base import UpstreamResponse

KEY = "sk-ant-call"
BODY = {"model": "claude-haiku-4-5", "max_tokens": 80, "messages": [{"role": "user", "content": "a stream"}]}


class Answered:
    """Wraps an upstream: ``answered`` is set once its send returned."""

    def __init__(self, inner: AnthropicUpstream) -> None:
        self.inner, self.answered = inner, asyncio.Event()

    async def send(self, body: Mapping[str, Any], *, stream: bool,
                   headers: Mapping[str, str] | None = None) -> UpstreamResponse:
        up = await self.inner.send(body, stream=stream, headers=headers)
        self.answered.set()
        return up

    async def aclose(self) -> None:
        await self.inner.aclose()


def _run(base_url: str, main: Callable[..., Any]) -> Any:
    """``main(upstream, client)`` in a fresh loop: an ``Answered`` AnthropicUpstream at ``base_url``
    on a pooled client of one connection (closed afterwards)."""
    async def wrapper() -> Any:
        client = httpx2.AsyncClient(limits=httpx2.Limits(max_connections=1, max_keepalive_connections=1),
                                    timeout=httpx2.Timeout(5.0, pool=2.0))
        try:
            return await main(Answered(AnthropicUpstream(KEY, base_url=base_url, client=client)), client)
        finally:
            await client.aclose()

    return asyncio.run(wrapper())


async def _read(call: UpstreamCall) -> bytes:
    up = await call.result()
    assert up.status == 200 and up.stream is not None
    try:
        return b"".join([chunk async for chunk in up.stream])
    finally:
        await up.aclose()


@pytest.fixture
def base_url(serve: Callable[[Any], str]) -> str:
    return serve(create_local_anthropic_app(LocalUpstream(seed=b"call", chunk_delay_s=0.002), api_key=KEY))


def test_stream_opened_in_the_call_task_is_read_from_another_task(base_url: str) -> None:
    """The call task returns once the stream's headers came; another task reads it to the end,
    twice in a row on the one pooled connection."""
    async def main(up: Answered, _client: httpx2.AsyncClient) -> list[bytes]:
        out = []
        for _ in range(2):
            call = UpstreamCall(up, BODY, stream=True, headers={})
            call.start()
            await up.answered.wait()  # the sending task is done: the stream is open, unread
            up.answered.clear()
            out.append(await asyncio.create_task(_read(call)))
        return out

    first, second = _run(base_url, main)
    for raw in (first, second):
        events = [frame.split("\n")[0] for frame in raw.decode().split("\n\n") if frame]
        assert events[0] == "event: message_start" and events[-1] == "event: message_stop"
        assert any(json.loads(f.split("data: ", 1)[1]).get("delta", {}).get("text")
                   for f in raw.decode().split("\n\n") if "content_block_delta" in f)


def test_abandoned_open_stream_releases_the_connection(base_url: str) -> None:
    """An opened, unread stream is closed by ``abandon``: the next call gets the only connection."""
    async def main(up: Answered, _client: httpx2.AsyncClient) -> bytes:
        call = UpstreamCall(up, BODY, stream=True, headers={})
        call.start()
        await up.answered.wait()
        assert await call.abandon() is True
        return await _read(UpstreamCall(up, BODY, stream=True, headers={}))

    assert _run(base_url, main).endswith(b"\n\n")


def test_call_cancelled_while_its_request_is_under_way_releases_the_connection(base_url: str) -> None:
    """Abandoned before the upstream answered (a server that reads the request and says nothing):
    the request is cancelled, and the next call, to another origin, gets the only connection."""
    async def main(up: Answered, client: httpx2.AsyncClient) -> bytes:
        async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            while await reader.read(65536):  # until the client goes away
                pass
            writer.close()

        server = await asyncio.start_server(silent, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        mute = Answered(AnthropicUpstream(KEY, base_url=f"http://127.0.0.1:{port}", client=client))
        try:
            call = UpstreamCall(mute, BODY, stream=True, headers={})
            call.start()
            await asyncio.sleep(0.05)  # the request is sent; no answer will come
            assert not mute.answered.is_set()
            assert await call.abandon() is True
            return await _read(UpstreamCall(up, BODY, stream=True, headers={}))
        finally:
            server.close()
            await server.wait_closed()

    assert b"message_stop" in _run(base_url, main)


def test_connection_failure_of_a_started_call_is_raised_by_result() -> None:
    """No server: the started call's UpstreamError reaches ``result`` (as an unstarted call's would)."""
    async def main(up: Answered, _client: httpx2.AsyncClient) -> None:
        call = UpstreamCall(up, BODY, stream=True, headers={})
        call.start()
        with pytest.raises(UpstreamError) as raised:
            await call.result()
        assert raised.value.code == "upstream_connection_error"

    _run("http://127.0.0.1:9", main)
