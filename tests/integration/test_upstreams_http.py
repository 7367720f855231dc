"""Upstreams over real HTTP: the local Anthropic app served by uvicorn on loopback.

Two proofs: the anthropic SDK (its own HTTP client, SSE decoder and types) talks
to the served local app exactly as to api.anthropic.com; and AnthropicUpstream,
with only a key and a base URL, drives the same wire (JSON, SSE, errors, retries,
dropped connections, timeouts) without the internet.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Callable
from typing import Any

import httpx2
import pytest

from mpp_claude.errors import ConfigError, UpstreamError
from mpp_claude.server.upstreams import (
    FAULT_HEADER,
    AnthropicUpstream,
    LocalUpstream,
    create_local_anthropic_app,
)

anthropic = pytest.importorskip("anthropic")

pytestmark = pytest.mark.anyio

KEY = "sk-ant-local-test"
BODY: dict[str, Any] = {
    "model": "claude-haiku-4-5",
    "max_tokens": 200,
    "messages": [{"role": "user", "content": "Hello over HTTP"}],
}
RICH: dict[str, Any] = {
    **BODY,
    "max_tokens": 3000,
    "thinking": {"type": "enabled", "budget_tokens": 1024},
    "tools": [
        {
            "name": "lookup",
            "description": "Look a word up",
            "input_schema": {
                "type": "object",
                "properties": {"word": {"type": "string"}},
                "required": ["word"],
            },
        }
    ],
    "messages": [{"role": "user", "content": "Please lookup Tempo"}],
}

Serve = Callable[[Any], str]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def local() -> LocalUpstream:
    return LocalUpstream(seed=b"http")


@pytest.fixture
def base_url(serve: Serve, local: LocalUpstream) -> str:
    return serve(create_local_anthropic_app(local, api_key=KEY))


def _sse(raw: bytes) -> list[tuple[str, dict[str, Any]]]:
    out = []
    for frame in raw.decode().split("\n\n"):
        if frame.strip():
            fields = dict(line.split(": ", 1) for line in frame.split("\n"))
            out.append((fields["event"], json.loads(fields["data"])))
    return out


# --- the anthropic SDK as the oracle ----------------------------------------------------------------


def test_sdk_json_over_http(base_url: str) -> None:
    """The sync SDK gets a typed Message with usage from the served app."""
    with anthropic.Anthropic(api_key=KEY, base_url=base_url, max_retries=0) as client:
        msg = client.messages.create(**RICH)
    assert [b.type for b in msg.content] == ["thinking", "text", "tool_use"]
    assert msg.content[2].input == {"word": "Tempo"}
    assert msg.stop_reason == "tool_use" and msg.usage.output_tokens > 0


@pytest.mark.parametrize("body", [BODY, RICH], ids=["plain", "tools+thinking"])
def test_sdk_stream_over_http(base_url: str, body: dict[str, Any]) -> None:
    """The SDK's SSE decoder and accumulator rebuild the JSON answer from the real socket stream."""
    with anthropic.Anthropic(api_key=KEY, base_url=base_url, max_retries=0) as client:
        with client.messages.stream(**body) as stream:
            text = "".join(stream.text_stream)
            final = stream.get_final_message()
        plain = client.messages.create(**body)
    assert text == "".join(b.text for b in plain.content if b.type == "text")
    assert [b.type for b in final.content] == [b.type for b in plain.content]
    assert final.usage.output_tokens == plain.usage.output_tokens
    assert final.stop_reason == plain.stop_reason


def test_sdk_sees_http_errors_and_retries(base_url: str, local: LocalUpstream) -> None:
    """Wrong key → AuthenticationError; a 529 then success → the SDK's own retry succeeds."""
    with (
        anthropic.Anthropic(api_key="wrong", base_url=base_url, max_retries=0) as client,
        pytest.raises(anthropic.AuthenticationError),
    ):
        client.messages.create(**BODY)
    local.inject("529:0")
    with anthropic.Anthropic(api_key=KEY, base_url=base_url, max_retries=1) as client:
        assert client.messages.create(**BODY).stop_reason == "end_turn"
    assert local.calls == 2  # the 401 is answered by the app before the model; then 529, then 200


def test_sdk_dropped_stream_raises(base_url: str, local: LocalUpstream) -> None:
    """A stream broken off by the server surfaces as an SDK/transport error, never a clean end."""
    local.inject("drop")
    with (
        anthropic.Anthropic(api_key=KEY, base_url=base_url, max_retries=0) as client,
        pytest.raises((anthropic.APIError, httpx2.HTTPError)),
        client.messages.stream(**BODY) as stream,
    ):
        for _ in stream:
            pass


# --- AnthropicUpstream against the served app ---------------------------------------------------------


async def test_upstream_json(base_url: str, local: LocalUpstream) -> None:
    """A JSON request carries the key and version headers and returns the parsed message."""
    up = AnthropicUpstream(KEY, base_url=base_url)
    try:
        resp = await up.send(
            BODY, stream=False, headers={"anthropic-beta": "x", "Authorization": "Payment leak"}
        )
    finally:
        await up.aclose()
    assert resp.status == 200 and resp.json is not None and resp.stream is None
    assert resp.json["type"] == "message" and resp.headers["request-id"].startswith("req_")
    assert local.received[-1]["stream"] is False


async def test_upstream_stream(base_url: str) -> None:
    """A stream arrives as raw SSE bytes in the Messages API's event order."""
    up = AnthropicUpstream(KEY, base_url=base_url + "/")
    try:
        async with await up.send(RICH, stream=True) as resp:
            assert resp.status == 200 and resp.stream is not None
            raw = b"".join([c async for c in resp.stream])
    finally:
        await up.aclose()
    names = [n for n, _ in _sse(raw)]
    assert names[:3] == ["message_start", "content_block_start", "ping"]
    assert names[-2:] == ["message_delta", "message_stop"]


async def test_upstream_stream_error_status_is_json(base_url: str) -> None:
    """An error status on a streaming request comes back parsed, before any SSE."""
    up = AnthropicUpstream(KEY, base_url=base_url)
    try:
        resp = await up.send({**BODY, "max_tokens": 0}, stream=True)
        rate = await up.send(BODY, stream=True, headers={FAULT_HEADER: "429:9"})
    finally:
        await up.aclose()
    assert resp.status == 400 and resp.stream is None and resp.json is not None
    assert resp.json["error"]["type"] == "invalid_request_error"
    assert rate.status == 429 and rate.headers["retry-after"] == "9"


async def test_upstream_key_cannot_be_overridden(base_url: str) -> None:
    """Caller headers cannot replace the configured x-api-key."""
    up = AnthropicUpstream(KEY, base_url=base_url)
    try:
        resp = await up.send(BODY, stream=False, headers={"x-api-key": "other"})
    finally:
        await up.aclose()
    assert resp.status == 200


async def test_upstream_wrong_key_is_401(base_url: str) -> None:
    """A wrong key yields Anthropic's 401 authentication_error, not an exception."""
    up = AnthropicUpstream("bad-key", base_url=base_url)
    try:
        resp = await up.send(BODY, stream=False)
    finally:
        await up.aclose()
    assert resp.status == 401 and resp.json is not None
    assert resp.json["error"]["type"] == "authentication_error"


async def test_no_retry_by_default(base_url: str, local: LocalUpstream) -> None:
    """Without retry_before_payment a 529 is returned at once: one upstream call."""
    local.inject("529:0")
    up = AnthropicUpstream(KEY, base_url=base_url)
    try:
        resp = await up.send(BODY, stream=True)
    finally:
        await up.aclose()
    assert resp.status == 529 and local.calls == 1


async def test_retry_before_payment(base_url: str, local: LocalUpstream) -> None:
    """With retry_before_payment, 529 and 429 are retried (retry-after honoured) until success."""
    local.inject("529:0", "429:0")
    up = AnthropicUpstream(KEY, base_url=base_url, retry_before_payment=True, max_retries=2, backoff_s=0.01)
    try:
        async with await up.send(BODY, stream=True) as resp:
            assert resp.stream is not None
            raw = b"".join([c async for c in resp.stream])
    finally:
        await up.aclose()
    assert resp.status == 200 and b"message_stop" in raw and local.calls == 3


async def test_retries_are_bounded(base_url: str, local: LocalUpstream) -> None:
    """Retries stop after max_retries; a retry-after above the cap is not waited for; 400 is never retried."""
    local.inject("500", "500")
    up = AnthropicUpstream(KEY, base_url=base_url, retry_before_payment=True, max_retries=1, backoff_s=0.01)
    try:
        assert (await up.send(BODY, stream=False)).status == 500
        assert local.calls == 2
        local.inject("429:3600")
        assert (await up.send(BODY, stream=False)).status == 429
        assert local.calls == 3  # retry-after above max_retry_wait_s: no retry
        assert (await up.send({**BODY, "max_tokens": 0}, stream=False)).status == 400
        assert local.calls == 4
    finally:
        await up.aclose()


async def test_dropped_stream_raises_upstream_error(base_url: str) -> None:
    """A stream the server breaks off raises UpstreamError(upstream_stream_interrupted) from the iterator."""
    up = AnthropicUpstream(KEY, base_url=base_url)
    try:
        resp = await up.send(BODY, stream=True, headers={FAULT_HEADER: "drop"})
        assert resp.status == 200 and resp.stream is not None
        with pytest.raises(UpstreamError) as info:
            async for _ in resp.stream:
                pass
        await resp.aclose()
    finally:
        await up.aclose()
    assert info.value.code == "upstream_stream_interrupted"


async def test_dropped_json_raises_upstream_error(base_url: str) -> None:
    """A JSON body broken off mid-way raises UpstreamError(upstream_connection_error)."""
    up = AnthropicUpstream(KEY, base_url=base_url)
    try:
        with pytest.raises(UpstreamError) as info:
            await up.send(BODY, stream=False, headers={FAULT_HEADER: "drop"})
    finally:
        await up.aclose()
    assert info.value.code == "upstream_connection_error" and info.value.status == 502


async def test_connection_refused(local: LocalUpstream) -> None:
    """Nobody listening → UpstreamError(upstream_connection_error), after the allowed retries."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    up = AnthropicUpstream(
        KEY, base_url=f"http://127.0.0.1:{port}", retry_before_payment=True, backoff_s=0.01
    )
    try:
        with pytest.raises(UpstreamError) as info:
            await up.send(BODY, stream=False)
    finally:
        await up.aclose()
    assert info.value.code == "upstream_connection_error" and info.value.status == 502


async def test_read_timeout(serve: Serve) -> None:
    """A stalled stream raises UpstreamError with a timeout status, never hangs."""
    slow = LocalUpstream(chunk_delay_s=0.5)
    url = serve(create_local_anthropic_app(slow))
    up = AnthropicUpstream(KEY, base_url=url, timeout=httpx2.Timeout(5.0, read=0.1))
    try:
        with pytest.raises(UpstreamError) as info:
            await up.send(BODY, stream=False)
        resp = await up.send(BODY, stream=True)
        assert resp.stream is not None
        with pytest.raises(UpstreamError) as stalled:
            async for _ in resp.stream:
                pass
        await resp.aclose()
    finally:
        await up.aclose()
    assert info.value.code == "upstream_timeout" and info.value.status == 504
    assert stalled.value.code == "upstream_stream_interrupted" and stalled.value.status == 504


async def test_non_json_bodies(serve: Serve) -> None:
    """A CDN's HTML error keeps its status in Anthropic's shape; a non-JSON 200 is an UpstreamError."""
    from starlette.applications import Starlette
    from starlette.responses import HTMLResponse, PlainTextResponse
    from starlette.routing import Route

    async def html(_: Any) -> HTMLResponse:
        return HTMLResponse("<html>413 Request Entity Too Large</html>", status_code=413)

    async def text(_: Any) -> PlainTextResponse:
        return PlainTextResponse("hello")

    bad = serve(
        Starlette(
            routes=[
                Route("/html/v1/messages", html, methods=["POST"]),
                Route("/text/v1/messages", text, methods=["POST"]),
            ]
        )
    )
    up = AnthropicUpstream(KEY, base_url=bad + "/html")
    other = AnthropicUpstream(KEY, base_url=bad + "/text")
    try:
        resp = await up.send(BODY, stream=True)
        assert resp.status == 413 and resp.json is not None
        assert resp.json["error"]["type"] == "request_too_large"
        with pytest.raises(UpstreamError) as info:
            await other.send(BODY, stream=False)
        assert info.value.code == "upstream_invalid_response"
    finally:
        await up.aclose()
        await other.aclose()


def test_config_errors() -> None:
    """An empty key or a non-http base URL is refused at construction; the key never shows in repr."""
    with pytest.raises(ConfigError, match="key"):
        AnthropicUpstream("  ")
    with pytest.raises(ConfigError, match="base URL"):
        AnthropicUpstream(KEY, base_url="ftp://x")
    assert KEY not in repr(AnthropicUpstream(KEY, client=httpx2.AsyncClient()))
