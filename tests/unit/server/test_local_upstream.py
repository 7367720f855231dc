"""LocalUpstream in process: faithful to the Anthropic SDK's own types and stream parser, errors, faults.

The anthropic SDK is the oracle: responses must validate against its pydantic
types with no field it does not know, and its streaming accumulator (driven
through an in-process ASGI transport) must rebuild the same message the JSON
endpoint returns.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import httpx2
import pydantic
import pytest

from mpp_claude.errors import UpstreamError
from mpp_claude.server.upstreams import (
    FAULT_HEADER,
    LocalUpstream,
    Upstream,
    UpstreamResponse,
    create_local_anthropic_app,
)
from mpp_claude.server.upstreams.local import check_fault

anthropic = pytest.importorskip("anthropic")
types = anthropic.types

pytestmark = pytest.mark.anyio

BODY: dict[str, Any] = {
    "model": "claude-haiku-4-5",
    "max_tokens": 300,
    "messages": [{"role": "user", "content": "Hello, what is new?"}],
}
WEATHER = {
    "name": "get_weather",
    "description": "Weather",
    "input_schema": {
        "type": "object",
        "properties": {"location": {"type": "string"}},
        "required": ["location"],
    },
}
RICH: dict[str, Any] = {
    **BODY,
    "max_tokens": 3000,
    "system": "Be brief.",
    "tools": [WEATHER],
    "thinking": {"type": "enabled", "budget_tokens": 1024},
    "messages": [{"role": "user", "content": "Weather in Lima? use get_weather"}],
}


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def assert_known(model: Any, path: str = "") -> None:
    """Recursively: a pydantic model from the SDK carries no field the SDK does not declare."""
    if isinstance(model, list):
        for i, item in enumerate(model):
            assert_known(item, f"{path}[{i}]")
    elif isinstance(model, pydantic.BaseModel):
        assert not model.model_extra, f"{path or type(model).__name__}: unknown fields {model.model_extra}"
        for name in type(model).model_fields:
            assert_known(getattr(model, name), f"{path}.{name}")


EVENT_TYPES = {
    "message_start": types.RawMessageStartEvent,
    "message_delta": types.RawMessageDeltaEvent,
    "message_stop": types.RawMessageStopEvent,
    "content_block_start": types.RawContentBlockStartEvent,
    "content_block_delta": types.RawContentBlockDeltaEvent,
    "content_block_stop": types.RawContentBlockStopEvent,
}


def parse_sse(raw: bytes) -> list[tuple[str, dict[str, Any]]]:
    events = []
    for frame in raw.decode().split("\n\n"):
        if not frame.strip():
            continue
        lines = dict(line.split(": ", 1) for line in frame.split("\n"))
        events.append((lines["event"], json.loads(lines["data"])))
    return events


async def read_all(stream: AsyncIterator[bytes] | None) -> bytes:
    assert stream is not None
    return b"".join([chunk async for chunk in stream])


async def test_is_an_upstream() -> None:
    """LocalUpstream satisfies the Upstream protocol."""
    assert isinstance(LocalUpstream(), Upstream)


@pytest.mark.parametrize("body", [BODY, RICH], ids=["plain", "tools+thinking"])
async def test_json_matches_sdk_message_type(body: dict[str, Any]) -> None:
    """A JSON answer validates as anthropic.types.Message and has no unknown field."""
    resp = await LocalUpstream(seed=b"t").send(body, stream=False)
    assert resp.status == 200 and resp.stream is None and resp.json is not None
    assert resp.headers["request-id"].startswith("req_")
    msg = types.Message.model_validate(resp.json)
    assert_known(msg)
    assert msg.usage.input_tokens > 0 and msg.usage.output_tokens > 0


@pytest.mark.parametrize("body", [BODY, RICH], ids=["plain", "tools+thinking"])
async def test_sse_events_match_sdk_event_types(body: dict[str, Any]) -> None:
    """Every SSE event validates as its SDK event type (pings aside) with no unknown field."""
    resp = await LocalUpstream(seed=b"t").send(body, stream=True)
    assert resp.status == 200 and resp.json is None
    assert resp.headers["content-type"].startswith("text/event-stream")
    events = parse_sse(await read_all(resp.stream))
    await resp.aclose()
    assert events[0][0] == "message_start" and events[-1][0] == "message_stop"
    for name, data in events:
        assert data["type"] == name
        if name != "ping":
            assert_known(EVENT_TYPES[name].model_validate(data))


def sdk(upstream: LocalUpstream) -> Any:
    app = create_local_anthropic_app(upstream)
    client = httpx2.AsyncClient(transport=httpx2.ASGITransport(app=app), base_url="http://local")
    return anthropic.AsyncAnthropic(api_key="k", base_url="http://local", http_client=client, max_retries=0)


@pytest.mark.parametrize("body", [BODY, RICH], ids=["plain", "tools+thinking"])
async def test_sdk_stream_accumulates_to_the_json_message(body: dict[str, Any]) -> None:
    """The SDK's stream accumulator rebuilds exactly the message the JSON endpoint returns."""
    client = sdk(LocalUpstream(seed=b"s"))
    params = dict(body)
    async with client.messages.stream(**params) as stream:
        kinds = [event.type async for event in stream]
        streamed = await stream.get_final_message()
    plain = await client.messages.create(**params)
    assert "text" in kinds and "message_stop" in kinds

    def blocks(msg: Any) -> list[dict[str, Any]]:  # tool_use ids are unique per call
        return [{k: v for k, v in b.model_dump().items() if k != "id"} for b in msg.content]

    assert blocks(streamed) == blocks(plain)
    assert [b.type for b in streamed.content] == [b.type for b in plain.content]
    assert streamed.usage.output_tokens == plain.usage.output_tokens
    assert streamed.usage.input_tokens == plain.usage.input_tokens
    assert streamed.stop_reason == plain.stop_reason
    await client.close()


async def test_sdk_count_tokens_agrees_with_usage() -> None:
    """count_tokens answers the input_tokens a real request reports."""
    client = sdk(LocalUpstream())
    counted = await client.messages.count_tokens(
        model=RICH["model"], messages=RICH["messages"], system=RICH["system"], tools=RICH["tools"]
    )
    used = await client.messages.create(**RICH)
    assert counted.input_tokens == used.usage.input_tokens
    await client.close()


INVALID = [
    (
        "no max_tokens",
        {k: v for k, v in BODY.items() if k != "max_tokens"},
        400,
        "max_tokens: Field required",
    ),
    ("no model", {k: v for k, v in BODY.items() if k != "model"}, 400, "model: Field required"),
    ("unknown model", {**BODY, "model": "claude-nope"}, 404, "model: claude-nope"),
    (
        "system role",
        {**BODY, "messages": [{"role": "system", "content": "x"}]},
        400,
        "messages.0.role: Input should be 'user' or 'assistant'",
    ),
    ("empty messages", {**BODY, "messages": []}, 400, "at least 1 item"),
    ("empty text", {**BODY, "messages": [{"role": "user", "content": ""}]}, 400, "must be non-empty"),
    (
        "blank block",
        {**BODY, "messages": [{"role": "user", "content": [{"type": "text", "text": " "}]}]},
        400,
        "non-whitespace text",
    ),
    ("max_tokens 0", {**BODY, "max_tokens": 0}, 400, "greater than or equal to 1"),
    ("max_tokens huge", {**BODY, "max_tokens": 10**6}, 400, "maximum allowed number of output tokens"),
    (
        "temperature",
        {**BODY, "temperature": 1.5},
        400,
        "temperature: Input should be less than or equal to 1",
    ),
    (
        "extra field",
        {**BODY, "frequency_penalty": 1},
        400,
        "frequency_penalty: Extra inputs are not permitted",
    ),
    ("blank stop", {**BODY, "stop_sequences": [" "]}, 400, "each stop sequence must contain non-whitespace"),
    (
        "prefill space",
        {**BODY, "messages": [*BODY["messages"], {"role": "assistant", "content": "Hi "}]},
        400,
        "final assistant content cannot end with trailing whitespace",
    ),
    (
        "thinking budget",
        {**BODY, "max_tokens": 1000, "thinking": {"type": "enabled", "budget_tokens": 1024}},
        400,
        "`max_tokens` must be greater than `thinking.budget_tokens`",
    ),
    (
        "tools missing",
        {
            **BODY,
            "messages": [
                {"role": "user", "content": "x"},
                {
                    "role": "assistant",
                    "content": [{"type": "tool_use", "id": "t1", "name": "f", "input": {}}],
                },
                {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1", "content": "ok"}]},
            ],
        },
        400,
        "must define tools",
    ),
    (
        "unpaired tool_use",
        {
            **BODY,
            "tools": [WEATHER],
            "messages": [
                {"role": "user", "content": "x"},
                {
                    "role": "assistant",
                    "content": [{"type": "tool_use", "id": "t1", "name": "get_weather", "input": {}}],
                },
                {"role": "user", "content": "no result"},
            ],
        },
        400,
        "`tool_use` ids were found without `tool_result`",
    ),
    (
        "tool_choice unknown",
        {**BODY, "tools": [WEATHER], "tool_choice": {"type": "tool", "name": "nope"}},
        400,
        "not found in tools",
    ),
    ("not an object", ["x"], 400, "valid dictionary"),
]


@pytest.mark.parametrize(("body", "status", "message"), [c[1:] for c in INVALID], ids=[c[0] for c in INVALID])
async def test_invalid_requests_get_anthropic_errors(body: Any, status: int, message: str) -> None:
    """Invalid requests get the API's status and error object, with its wording."""
    if isinstance(body, dict):
        resp = await LocalUpstream().send(body, stream=True)
    else:  # not even a JSON object: only the raw core can be handed one
        reply = LocalUpstream().respond(body)
        resp = UpstreamResponse(reply.status, reply.headers, json=reply.json)
    assert resp.status == status and resp.stream is None
    assert resp.json is not None
    err = types.ErrorResponse.model_validate(resp.json) if hasattr(types, "ErrorResponse") else None
    assert resp.json["type"] == "error"
    assert resp.json["error"]["type"] == ("not_found_error" if status == 404 else "invalid_request_error")
    assert message in resp.json["error"]["message"]
    assert resp.json["request_id"] == resp.headers["request-id"]
    if err is not None:
        assert_known(err)


@pytest.mark.parametrize(
    ("spec", "status", "kind", "retry_after"),
    [
        ("429", 429, "rate_limit_error", "1"),
        ("429:7", 429, "rate_limit_error", "7"),
        ("500", 500, "api_error", None),
        ("529", 529, "overloaded_error", None),
        ("529:2", 529, "overloaded_error", "2"),
        ("401", 401, "authentication_error", None),
        ("504", 504, "timeout_error", None),
    ],
)
async def test_status_faults(spec: str, status: int, kind: str, retry_after: str | None) -> None:
    """A status fault answers that status with Anthropic's error type and optional retry-after."""
    resp = await LocalUpstream().send(BODY, stream=False, headers={FAULT_HEADER: spec})
    assert resp.status == status and resp.json is not None
    assert resp.json["error"]["type"] == kind
    assert resp.headers.get("retry-after") == retry_after


async def test_fault_sources_and_precedence() -> None:
    """Header beats magic prompt beats the injected queue beats the instance default."""
    up = LocalUpstream(fault="500")
    up.inject("529", "429")
    magic = {**BODY, "messages": [{"role": "user", "content": "hi [[mpp-fault:401]]"}]}
    assert (await up.send(magic, stream=False, headers={"X-MPP-Claude-Fault": "none"})).status == 200
    assert (await up.send(magic, stream=False)).status == 401
    assert (await up.send(BODY, stream=False)).status == 529
    assert (await up.send(BODY, stream=False)).status == 429
    assert (await up.send(BODY, stream=False)).status == 500
    assert up.calls == 5 and len(up.received) == 5


async def test_bad_fault_spec() -> None:
    """An unknown fault spec is refused: ValueError in code, a 400 over the wire."""
    with pytest.raises(ValueError, match="fault spec"):
        check_fault("explode")
    with pytest.raises(ValueError):
        LocalUpstream(fault="600")
    resp = await LocalUpstream().send(BODY, stream=False, headers={FAULT_HEADER: "explode"})
    assert resp.status == 400


async def test_drop_fault_breaks_the_stream() -> None:
    """'drop' yields part of a 200 stream and then raises UpstreamError (stream interrupted)."""
    resp = await LocalUpstream().send(BODY, stream=True, headers={FAULT_HEADER: "drop"})
    assert resp.status == 200 and resp.stream is not None
    got = []
    with pytest.raises(UpstreamError) as info:
        async for chunk in resp.stream:
            got.append(chunk)
    assert info.value.code == "upstream_stream_interrupted" and info.value.status == 502
    assert got and b"message_stop" not in b"".join(got)


async def test_drop_fault_without_stream() -> None:
    """'drop' on a JSON request raises UpstreamError (connection error)."""
    with pytest.raises(UpstreamError) as info:
        await LocalUpstream().send(BODY, stream=False, headers={FAULT_HEADER: "drop"})
    assert info.value.code == "upstream_connection_error"


async def test_stream_error_fault() -> None:
    """'stream-error' ends a 200 stream with an SSE error event and no message_stop."""
    resp = await LocalUpstream().send(BODY, stream=True, headers={FAULT_HEADER: "stream-error"})
    events = parse_sse(await read_all(resp.stream))
    assert events[-1][0] == "error"
    assert events[-1][1]["error"] == {"type": "overloaded_error", "message": "Overloaded"}
    assert "message_stop" not in [n for n, _ in events]


async def test_sdk_raises_its_own_errors() -> None:
    """Through the SDK, faults become the SDK's exception classes (so error mapping can be tested)."""
    up = LocalUpstream()
    client = sdk(up)
    up.inject("429:3")
    with pytest.raises(anthropic.RateLimitError) as rate:
        await client.messages.create(**BODY)
    assert rate.value.response.headers["retry-after"] == "3"
    up.inject("529")
    with pytest.raises(anthropic.InternalServerError):
        await client.messages.create(**BODY)
    with pytest.raises(anthropic.BadRequestError, match="max_tokens"):
        await client.messages.create(**{**BODY, "max_tokens": 0})
    with pytest.raises(anthropic.NotFoundError):
        await client.messages.create(**{**BODY, "model": "claude-unknown"})
    up.inject("stream-error")
    with pytest.raises(anthropic.APIStatusError, match="Overloaded"):
        async with client.messages.stream(**BODY) as stream:
            async for _ in stream:
                pass
    await client.close()


async def test_app_checks_key_and_version() -> None:
    """With api_key set the app wants that x-api-key (401 otherwise); anthropic-version is required."""
    app = create_local_anthropic_app(api_key="secret")
    async with httpx2.AsyncClient(transport=httpx2.ASGITransport(app=app), base_url="http://l") as http:
        ok_headers = {"x-api-key": "secret", "anthropic-version": "2023-06-01"}
        assert (await http.post("/v1/messages", json=BODY, headers=ok_headers)).status_code == 200
        wrong = await http.post("/v1/messages", json=BODY, headers={**ok_headers, "x-api-key": "no"})
        assert wrong.status_code == 401 and wrong.json()["error"]["type"] == "authentication_error"
        missing = await http.post("/v1/messages", json=BODY, headers={"x-api-key": "secret"})
        assert missing.status_code == 400 and "anthropic-version" in missing.json()["error"]["message"]
        junk = await http.post("/v1/messages", content=b"{not json", headers=ok_headers)
        assert junk.status_code == 400 and junk.json()["type"] == "error"
