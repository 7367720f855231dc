"""The whole pure pipeline driven by the real openai SDK (no server, no network).

A ``MockTransport`` handler plays the proxy: it maps what the SDK sent with
``chat_request_to_messages``, answers from a scripted Anthropic reply through
``StreamTranslator`` (stream) or ``MessageAccumulator`` + ``message_to_chat_completion`` (JSON),
and renders refusals with ``ConversionError.to_openai()``.  The SDK must accept every answer.
"""

from __future__ import annotations

import json
from typing import Any

import httpx2
import openai
import pytest

from mpp_claude.convert import (
    MessageAccumulator,
    SseParser,
    StreamTranslator,
    ThinkingStore,
    chat_request_to_messages,
    message_to_chat_completion,
)
from mpp_claude.errors import ConversionError

from .helpers import events_for, message, sse
from .test_properties import check_anthropic_request

REPLY = message(
    [
        {"type": "thinking", "thinking": "need weather", "signature": "sig"},
        {"type": "text", "text": "Checking the weather."},
        {"type": "tool_use", "id": "toolu_01", "name": "get_weather", "input": {"city": "Paris"}},
    ],
    "tool_use",
    usage={"input_tokens": 50, "cache_read_input_tokens": 10, "output_tokens": 30},
)
TOOLS: list[Any] = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
        },
    }
]


class FakeProxy:
    """The pure conversion steps of the server, with a scripted upstream."""

    def __init__(self) -> None:
        self.store = ThinkingStore()
        self.upstream: list[dict[str, Any]] = []

    def __call__(self, request: httpx2.Request) -> httpx2.Response:
        try:
            mapped = chat_request_to_messages(json.loads(request.content), thinking_store=self.store, now=1)
        except ConversionError as err:
            return httpx2.Response(err.status, json=err.to_openai(), headers=err.headers)
        check_anthropic_request(dict(mapped.body))
        self.upstream.append(dict(mapped.body))
        raw = sse(events_for(REPLY))
        if mapped.stream:
            translator = StreamTranslator(
                model=mapped.model_id,
                created=1,
                include_usage=mapped.include_usage,
                request=mapped,
                thinking_store=self.store,
                now=1,
            )
            out = b"".join(translator.feed(e) for e in SseParser().feed(raw)) + translator.close()
            return httpx2.Response(200, content=out, headers={"content-type": "text/event-stream"})
        acc = MessageAccumulator()
        for event in SseParser().feed(raw):
            acc.feed(event)
        body = message_to_chat_completion(
            acc.message(), model=mapped.model_id, created=1, request=mapped, thinking_store=self.store, now=1
        )
        return httpx2.Response(200, json=body, headers=mapped.response_headers())


@pytest.fixture
def proxy() -> FakeProxy:
    return FakeProxy()


@pytest.fixture
def client(proxy: FakeProxy) -> openai.OpenAI:
    http = httpx2.Client(transport=httpx2.MockTransport(proxy))
    return openai.OpenAI(api_key="x", base_url="http://proxy.test/v1", max_retries=0, http_client=http)


def test_json_and_stream_agree_through_the_sdk(client: openai.OpenAI) -> None:
    """The SDK's parsed JSON answer equals the concatenation of its parsed stream."""
    kwargs: dict[str, Any] = {
        "model": "claude-sonnet-4-6",
        "messages": [{"role": "user", "content": "Weather in Paris?"}],
        "tools": TOOLS,
    }
    whole = client.chat.completions.create(**kwargs)
    chunks = list(
        client.chat.completions.create(**kwargs, stream=True, stream_options={"include_usage": True})
    )
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    args = "".join(
        tc.function.arguments or ""
        for c in chunks
        if c.choices
        for tc in c.choices[0].delta.tool_calls or []
        if tc.function
    )
    assert whole.choices[0].message.content == text == "Checking the weather."
    calls = whole.choices[0].message.tool_calls or []
    assert json.loads(calls[0].function.arguments) == json.loads(args) == {"city": "Paris"}
    assert whole.choices[0].finish_reason == "tool_calls"
    assert chunks[-1].usage is not None and whole.usage is not None
    assert chunks[-1].usage.prompt_tokens == whole.usage.prompt_tokens == 60


def test_tool_loop_replays_thinking(client: openai.OpenAI, proxy: FakeProxy) -> None:
    """The SDK client drops thinking; the next turn still carries it upstream (§1.7)."""
    first = client.chat.completions.create(
        model="claude-sonnet-5", messages=[{"role": "user", "content": "Weather?"}], tools=TOOLS
    )
    msg = first.choices[0].message
    client.chat.completions.create(
        model="claude-sonnet-5",
        tools=TOOLS,
        messages=[
            {"role": "user", "content": "Weather?"},
            msg.model_dump(exclude_none=True),  # type: ignore[list-item]
            {"role": "tool", "tool_call_id": "toolu_01", "content": "14 C"},
        ],
    )
    replay = proxy.upstream[-1]["messages"][1]["content"]
    assert replay[0] == {"type": "thinking", "thinking": "need weather", "signature": "sig"}
    assert "thinking" not in proxy.upstream[-1]


def test_refusal_reaches_the_sdk_as_bad_request(client: openai.OpenAI) -> None:
    """A ConversionError becomes the SDK's BadRequestError with param and code."""
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(
            model="claude-haiku-4-5", messages=[{"role": "user", "content": "x"}], n=2
        )
    assert info.value.code == "unsupported_value" and info.value.param == "n"


def test_retired_model_is_not_found(client: openai.OpenAI) -> None:
    """A retired model gives the SDK's NotFoundError naming the replacement."""
    with pytest.raises(openai.NotFoundError) as info:
        client.chat.completions.create(
            model="claude-sonnet-4-20250514", messages=[{"role": "user", "content": "x"}]
        )
    assert "claude-sonnet-5-5" in str(info.value)
