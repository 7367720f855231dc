"""Hypothesis properties of the conversion contract.

* Any request the openai types allow (and any JSON at all) is either mapped to an Anthropic request
  that satisfies every rule we know Anthropic enforces, or refused with a ConversionError 400
  (404 for the model) -- never another exception.
* Any Anthropic message maps to a valid ``ChatCompletion``, and streaming the same message yields
  chunks whose concatenation equals it (content, tool calls, finish reason, usage).
* The stream translator survives arbitrary event sequences.
"""

from __future__ import annotations

import json
import re
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mpp_claude.convert import (
    MODELS,
    ConvertOptions,
    StreamTranslator,
    ThinkingStore,
    chat_request_to_messages,
    message_to_chat_completion,
)
from mpp_claude.errors import ConversionError

from .helpers import accumulate, concat, events_for, sdk_completion, sdk_stream, translate
from .strategies import (
    JSON,
    anthropic_messages,
    chat_requests,
    json_bodies,
    json_roundtrip,
    valid_chat_requests,
)

SETTINGS = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
_ID = re.compile(r"^[a-zA-Z0-9_-]+$")
_NAME = re.compile(r"^[a-zA-Z0-9_-]{1,128}$")


def check_anthropic_request(body: dict[str, Any]) -> None:
    """Rules of the Messages API we know about (A3 "Common validation errors", §1, §5)."""
    json.dumps(body, allow_nan=False)
    model = MODELS[body["model"].lower()]
    assert body["stream"] is True
    assert isinstance(body["max_tokens"], int) and 1 <= body["max_tokens"] <= model.max_output_tokens
    msgs = body["messages"]
    assert msgs
    for k, msg in enumerate(msgs):
        assert msg["role"] in ("user", "assistant") and msg["content"]
        if k:
            assert msg["role"] != msgs[k - 1]["role"], "roles alternate"
        seen_other = False
        for block in msg["content"]:
            if block["type"] == "text":
                assert block["text"].strip(), "no empty or whitespace-only text blocks"
            if block["type"] == "tool_result":
                assert msg["role"] == "user" and not seen_other, "tool results come first"
                assert block["tool_use_id"] in {b.get("id") for b in msgs[k - 1]["content"]}
            else:
                seen_other = True
            if block["type"] == "tool_use":
                assert _ID.match(block["id"]) and _NAME.match(block["name"])
                assert isinstance(block["input"], dict)
        uses = [b["id"] for b in msg["content"] if b["type"] == "tool_use"]
        if uses:
            assert k + 1 < len(msgs)
            answered = {b.get("tool_use_id") for b in msgs[k + 1]["content"]}
            assert set(uses) <= answered
    if msgs[-1]["role"] == "assistant":
        assert model.prefill
        last = msgs[-1]["content"][-1]
        assert last["type"] != "text" or last["text"] == last["text"].rstrip()
    for block in body.get("system", []):
        assert block["type"] == "text" and block["text"].strip()
    thinking = body.get("thinking")
    if thinking is not None:
        assert thinking["type"] in model.thinking_types
        if thinking["type"] == "enabled":
            assert 1024 <= thinking["budget_tokens"] < body["max_tokens"]
    effort = body.get("output_config", {}).get("effort")
    assert effort is None or effort in model.efforts
    thinking_on = (thinking or {}).get(
        "type", "adaptive" if model.thinking_default_on else "disabled"
    ) != "disabled"
    if model.sampling == "none":
        assert not {"temperature", "top_p", "top_k"} & set(body)
    if model.sampling == "exclusive":
        assert not {"temperature", "top_p"} <= set(body)
    if thinking_on:
        assert "temperature" not in body and "top_k" not in body
        assert body.get("top_p", 1.0) >= 0.95
    assert 0 <= body.get("temperature", 0) <= 1 and 0 <= body.get("top_p", 0) <= 1
    for stop in body.get("stop_sequences", []):
        assert stop.strip()
    choice = body.get("tool_choice")
    if choice is not None:
        assert body.get("tools"), "no tool_choice without tools"
        if choice["type"] in ("any", "tool"):
            assert model.forced_tool_choice and (thinking or {}).get("type") != "enabled"
        if choice["type"] == "tool":
            assert choice["name"] in {t["name"] for t in body["tools"]}
    for tool in body.get("tools", []):
        assert _NAME.match(tool["name"])
        assert tool.get("input_schema", {"type": "object"})["type"] == "object"
    user_id = body.get("metadata", {}).get("user_id")
    assert user_id is None or ("@" not in user_id and 1 <= len(user_id) <= 256)
    if thinking is not None and thinking["type"] == "disabled":
        for msg in msgs:
            assert all(b["type"] not in ("thinking", "redacted_thinking") for b in msg["content"])


def _map_or_refuse(body: Any, **kwargs: Any) -> None:
    try:
        mapped = chat_request_to_messages(body, **kwargs)
    except ConversionError as err:
        assert err.status in (400, 404), err.status
        assert err.status == 400 or err.code == "model_not_found"
        out = err.to_openai()["error"]
        assert out["type"] == "invalid_request_error" and isinstance(out["message"], str)
        return
    check_anthropic_request(dict(mapped.body))
    assert isinstance(mapped.response_headers(), dict)


@SETTINGS
@given(chat_requests(), st.booleans())
def test_typed_requests_map_or_refuse(body: dict[str, Any], strict: bool) -> None:
    """Requests shaped like the openai types: a valid Anthropic request or a 400/404 ConversionError."""
    _map_or_refuse(json_roundtrip(body), options=ConvertOptions(strict_mode=strict, web_search=strict))


@SETTINGS
@given(json_bodies())
def test_any_json_maps_or_refuses(body: Any) -> None:
    """Even arbitrary JSON never raises anything but a ConversionError."""
    _map_or_refuse(body)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(valid_chat_requests(), st.booleans(), st.booleans())
def test_plausible_requests_map_or_refuse(body: dict[str, Any], strict: bool, store_hits: bool) -> None:
    """Coherent conversations (most of them mappable), with and without stored thinking blocks."""
    store = ThinkingStore()
    if store_hits:
        for n in range(1, 8):
            for cid in (f"call_{n}", f"functions.f:{n}", f"toolu_{n}"):
                store.put(cid, [{"type": "thinking", "thinking": "t", "signature": "s"}], now=0)
    _map_or_refuse(
        json_roundtrip(body), thinking_store=store, now=1, options=ConvertOptions(strict_mode=strict)
    )


@settings(max_examples=60, deadline=None)
@given(anthropic_messages(), st.integers(1, 7), st.booleans())
def test_stream_equals_json(msg: dict[str, Any], split: int, include_usage: bool) -> None:
    """The SDK-parsed stream concatenates to the non-streamed answer for the same upstream reply."""
    whole = message_to_chat_completion(msg, model="m", created=1)
    sdk_completion(whole)
    assert message_to_chat_completion(accumulate(events_for(msg, split=split)), model="m", created=1) == whole
    got = concat(
        sdk_stream(translate(events_for(msg, split=split), model="m", created=1, include_usage=include_usage))
    )
    choice = whole["choices"][0]
    assert got["content"] == (choice["message"]["content"] or "")
    assert got["finish"] == [choice["finish_reason"]]
    calls = [
        (c["id"], c["function"]["name"], json.loads(c["function"]["arguments"]))
        for c in choice["message"].get("tool_calls", [])
    ]
    assert [(c["id"], c["name"], json.loads(c["arguments"])) for c in got["tool_calls"]] == calls
    if include_usage:
        assert got["usage"]["total_tokens"] == whole["usage"]["total_tokens"]
        assert got["usage"]["prompt_tokens"] == whole["usage"]["prompt_tokens"]
    else:
        assert got["usage"] is None


EVENT_NAMES = st.sampled_from(
    [
        "message_start",
        "content_block_start",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
        "ping",
        "error",
        "weird",
    ]
)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(EVENT_NAMES, JSON), max_size=12))
def test_translator_survives_garbage(events: list[tuple[str, Any]]) -> None:
    """Arbitrary event payloads produce frames or an error frame, never an exception."""
    t = StreamTranslator(model="m", created=1, include_usage=True, thinking_store=ThinkingStore())
    out = b"".join(t.feed_event(name, data) for name, data in events) + t.close()
    for frame in out.split(b"\n\n"):
        if frame:
            assert frame.startswith(b"data: ")
            payload = frame[6:]
            assert payload == b"[DONE]" or isinstance(json.loads(payload), dict)
