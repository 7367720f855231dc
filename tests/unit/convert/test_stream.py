"""Spec §7.3 streaming: T58-T70.  Streams are parsed by the openai SDK's own iterator."""

from __future__ import annotations

import json

import openai
import pytest
from openai.types import CompletionUsage

from mpp_claude.convert import (
    StreamTranslator,
    ThinkingStore,
    anthropic_error_to_openai,
    chat_request_to_messages,
    message_to_chat_completion,
)

from .helpers import (
    MODEL,
    Event,
    accumulate,
    concat,
    events_for,
    frames,
    message,
    sdk_stream,
    translate,
    user,
)

HELLO = message([{"type": "text", "text": "Hello!"}], usage={"input_tokens": 25, "output_tokens": 15})


def _hello_events() -> list[Event]:
    """The guide's stream: message_start, text block, ping, 'Hello' + '!', message_delta, message_stop."""
    evs = events_for(HELLO, split=5)
    assert [e[0] for e in evs].count("content_block_delta") == 2
    return evs


def test_T58_basic_stream_shape() -> None:
    """Role chunk, content deltas, one finish chunk, [DONE]; no usage; same id/created; ping silent."""
    out = frames(translate(_hello_events()))
    assert out[-1] == "[DONE]"
    chunks = out[:-1]
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert [c["choices"][0]["delta"].get("content") for c in chunks[1:3]] == ["Hello", "!"]
    assert chunks[3]["choices"][0] == {"index": 0, "delta": {}, "logprobs": None, "finish_reason": "stop"}
    assert len(chunks) == 4
    assert all("usage" not in c for c in chunks)
    assert {(c["id"], c["created"]) for c in chunks} == {("chatcmpl-msg_01", 1_700_000_000)}
    parsed = sdk_stream(translate(_hello_events()))
    assert concat(parsed)["content"] == "Hello!"


def test_T59_include_usage() -> None:
    """usage null on every chunk, then one usage chunk with empty choices before [DONE]."""
    out = frames(translate(_hello_events(), include_usage=True))
    assert out[-1] == "[DONE]"
    *chunks, last = out[:-1]
    assert all(c["usage"] is None for c in chunks)
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"
    assert last["choices"] == [] and last["usage"]["total_tokens"] == 40
    assert concat(sdk_stream(translate(_hello_events(), include_usage=True)))["usage"]["prompt_tokens"] == 25


def test_T60_parallel_tool_slots_are_dense() -> None:
    """Tool blocks 1 and 2 become tool_calls indexes 0 and 1; arguments parse to the inputs."""
    msg = message(
        [
            {"type": "text", "text": "Two calls"},
            {"type": "tool_use", "id": "toolu_a", "name": "f", "input": {"x": 1}},
            {"type": "tool_use", "id": "toolu_b", "name": "g", "input": {"y": [1, 2]}},
        ],
        "tool_use",
    )
    chunks = frames(translate(events_for(msg)))[:-1]
    firsts = [
        c["choices"][0]["delta"]["tool_calls"][0]
        for c in chunks
        if c["choices"][0]["delta"].get("tool_calls") and "id" in c["choices"][0]["delta"]["tool_calls"][0]
    ]
    assert [(f["index"], f["id"], f["type"], f["function"]) for f in firsts] == [
        (0, "toolu_a", "function", {"name": "f", "arguments": ""}),
        (1, "toolu_b", "function", {"name": "g", "arguments": ""}),
    ]
    calls = concat(sdk_stream(translate(events_for(msg))))["tool_calls"]
    assert [json.loads(c["arguments"]) for c in calls] == [{"x": 1}, {"y": [1, 2]}]


def test_T61_thinking_then_tool() -> None:
    """Thinking produces no chunks by default; the tool takes index 0; the block is stored."""
    think = {"type": "thinking", "thinking": "Let me think about this", "signature": "sig123"}
    msg = message([think, {"type": "tool_use", "id": "toolu_9", "name": "f", "input": {"q": 1}}], "tool_use")
    store = ThinkingStore()
    chunks = frames(translate(events_for(msg), thinking_store=store, now=10))[:-1]
    assert not any(c["choices"][0]["delta"].get("content") for c in chunks)
    assert not any("reasoning_content" in c["choices"][0]["delta"] for c in chunks)
    assert chunks[1]["choices"][0]["delta"]["tool_calls"][0]["index"] == 0
    assert store.get("toolu_9", now=11) == [think]


def test_T62_empty_tool_input_gets_braces() -> None:
    """A tool_use without input_json_delta gets an arguments '{}' delta."""
    msg = message([{"type": "tool_use", "id": "toolu_1", "name": "now", "input": {}}], "tool_use")
    calls = concat(sdk_stream(translate(events_for(msg))))["tool_calls"]
    assert calls == [{"id": "toolu_1", "name": "now", "arguments": "{}"}]


def test_T63_midstream_error() -> None:
    """An error event after text becomes an OpenAI error frame; no finish chunk; the SDK raises."""
    evs = _hello_events()[:5]  # message_start, ping, block start, two text deltas
    evs.append(("error", {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}))
    out = frames(translate(evs))
    assert [c["choices"][0]["delta"].get("content") for c in out[1:3]] == ["Hello", "!"]
    assert out[-1] == {
        "error": {"message": "Overloaded", "type": "server_error", "param": None, "code": "overloaded_error"}
    }
    assert not any(isinstance(c, dict) and c.get("choices") and c["choices"][0]["finish_reason"] for c in out)
    with pytest.raises(openai.APIError):
        sdk_stream(translate(evs))


def test_T64_pre_stream_529_is_json_503() -> None:
    """Upstream 529 before any event is a plain 503 JSON error (not SSE)."""
    err = anthropic_error_to_openai(
        529, b'{"type":"error","error":{"type":"overloaded_error","message":"x"}}', {}
    )
    assert err.status == 503 and err.to_openai()["error"]["code"] == "overloaded_error"


def test_T65_thinking_replayed_on_next_turn() -> None:
    """Turn 2 gets turn 1's thinking block back in front of its tool_use (cache on)."""
    think = {"type": "thinking", "thinking": "I should call f", "signature": "EqQBCgIYAh"}
    msg = message([think, {"type": "tool_use", "id": "toolu_9", "name": "f", "input": {}}], "tool_use")
    store = ThinkingStore()
    translate(events_for(msg), thinking_store=store, now=100)
    turn2 = {
        "model": "claude-sonnet-5",
        "tools": [{"type": "function", "function": {"name": "f"}}],
        "messages": [
            user(),
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {"id": "toolu_9", "type": "function", "function": {"name": "f", "arguments": "{}"}}
                ],
            },
            {"role": "tool", "tool_call_id": "toolu_9", "content": "done"},
        ],
    }
    body = chat_request_to_messages(turn2, thinking_store=store, now=200).body
    assert body["messages"][1]["content"][0] == think
    assert body["messages"][1]["content"][1]["id"] == "toolu_9"
    assert "thinking" not in body  # model default (on)


def test_T65_cache_off_disables_thinking() -> None:
    """Without the blocks, a model that allows it gets thinking disabled for the open loop."""
    turn2 = {
        "model": "claude-sonnet-5",
        "tools": [{"type": "function", "function": {"name": "f"}}],
        "messages": [
            user(),
            {
                "role": "assistant",
                "tool_calls": [
                    {"id": "toolu_9", "type": "function", "function": {"name": "f", "arguments": "{}"}}
                ],
            },
            {"role": "tool", "tool_call_id": "toolu_9", "content": "done"},
        ],
    }
    body = chat_request_to_messages(turn2).body
    assert body["thinking"] == {"type": "disabled"}
    assert body["messages"][1]["content"][0]["type"] == "tool_use"


def test_T66_interrupted_stream() -> None:
    """A stream cut after a text delta ends with an upstream_stream_interrupted error frame."""
    evs = _hello_events()[:4]
    out = frames(translate(evs))
    assert out[-1]["error"]["code"] == "upstream_stream_interrupted"
    assert "[DONE]" not in out
    with pytest.raises(openai.APIError):
        sdk_stream(translate(evs))


def test_T67_unknown_event_ignored() -> None:
    """An unknown event type changes nothing."""
    evs = _hello_events()
    with_foo = [*evs[:4], ("foo_bar", {"type": "foo_bar", "x": 1}), *evs[4:]]
    assert translate(with_foo) == translate(evs)


def test_T68_server_tools_hidden() -> None:
    """server_tool_use (with JSON deltas) and search results produce no chunks; text passes."""
    msg = message(
        [
            {"type": "server_tool_use", "id": "srvtoolu_1", "name": "web_search", "input": {"query": "cats"}},
            {"type": "web_search_tool_result", "tool_use_id": "srvtoolu_1", "content": []},
            {"type": "text", "text": "Cats are great."},
        ]
    )
    got = concat(sdk_stream(translate(events_for(msg))))
    assert got["content"] == "Cats are great." and got["tool_calls"] == []
    assert got["finish"] == ["stop"]


PARITY = {
    "text": message([{"type": "text", "text": "Hello, world. ünïcødé ✓"}]),
    "tools": message(
        [
            {"type": "text", "text": "Checking"},
            {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"location": "SF"}},
            {"type": "tool_use", "id": "toolu_2", "name": "now", "input": {}},
        ],
        "tool_use",
        usage={"input_tokens": 472, "cache_read_input_tokens": 30, "output_tokens": 89},
    ),
    "thinking": message(
        [{"type": "thinking", "thinking": "hmm", "signature": "s"}, {"type": "text", "text": "42"}],
        "max_tokens",
    ),
}


@pytest.mark.parametrize("name", sorted(PARITY), ids=[f"T69-{n}" for n in sorted(PARITY)])
def test_T69_stream_and_json_agree(name: str) -> None:
    """The streamed concatenation equals the non-streamed answer for the same upstream reply."""
    msg = PARITY[name]
    whole = message_to_chat_completion(msg, model=MODEL, created=1)
    via_events = message_to_chat_completion(accumulate(events_for(msg)), model=MODEL, created=1)
    assert via_events == whole
    got = concat(sdk_stream(translate(events_for(msg), include_usage=True)))
    choice = whole["choices"][0]
    assert got["content"] == (choice["message"]["content"] or "")
    assert got["finish"] == [choice["finish_reason"]]
    expected_calls = [
        {"id": c["id"], "name": c["function"]["name"], "arguments": json.loads(c["function"]["arguments"])}
        for c in choice["message"].get("tool_calls", [])
    ]
    assert [{**c, "arguments": json.loads(c["arguments"])} for c in got["tool_calls"]] == expected_calls
    assert got["usage"] == CompletionUsage.model_validate(whole["usage"]).model_dump()
    assert got["ids"] == {whole["id"]}


def test_T70_cumulative_usage() -> None:
    """message_delta output_tokens replaces message_start's placeholder (never summed)."""
    t = StreamTranslator(model=MODEL, created=1, include_usage=True)
    t.feed_event(
        "message_start",
        {
            "message": {
                "id": "m",
                "usage": {"input_tokens": 25, "cache_read_input_tokens": 0, "output_tokens": 1},
            }
        },
    )
    t.feed_event("message_delta", {"delta": {"stop_reason": "end_turn"}, "usage": {"output_tokens": 15}})
    out = frames(t.feed_event("message_stop", {}))
    assert out[0]["usage"]["prompt_tokens"] == 25 and out[0]["usage"]["completion_tokens"] == 15


class TestStreamEdges:
    def test_pause_turn_continues_in_same_stream(self) -> None:
        """A paused stream continues with the next upstream stream: one id, one finish, summed usage."""
        first = message(
            [{"type": "text", "text": "Found "}], "pause_turn", usage={"input_tokens": 10, "output_tokens": 3}
        )
        second = message(
            [{"type": "text", "text": "it."}], usage={"input_tokens": 20, "output_tokens": 4}, msg_id="msg_02"
        )
        t = StreamTranslator(model=MODEL, created=1, include_usage=True)
        body = b"".join(t.feed_event(n, d) for n, d in events_for(first))
        assert t.paused and not t.done
        body += b"".join(t.feed_event(n, d) for n, d in events_for(second)) + t.close()
        got = concat(sdk_stream(body))
        assert got["content"] == "Found it." and got["finish"] == ["stop"]
        assert got["usage"]["prompt_tokens"] == 30 and got["usage"]["completion_tokens"] == 7
        assert got["ids"] == {"chatcmpl-msg_01"}

    def test_pause_without_continuation_is_length(self) -> None:
        """If the server does not continue, close() finishes with length."""
        first = message([{"type": "text", "text": "Found "}], "pause_turn")
        t = StreamTranslator(model=MODEL, created=1)
        body = b"".join(t.feed_event(n, d) for n, d in events_for(first)) + t.close()
        assert concat(sdk_stream(body))["finish"] == ["length"]

    def test_expose_reasoning(self) -> None:
        """With expose_reasoning, thinking deltas become reasoning_content deltas."""
        chunks = frames(translate(events_for(PARITY["thinking"]), expose_reasoning=True))[:-1]
        text = "".join(c["choices"][0]["delta"].get("reasoning_content", "") for c in chunks)
        assert text == "hmm"
        parsed = sdk_stream(translate(events_for(PARITY["thinking"]), expose_reasoning=True))
        extra = [getattr(c.choices[0].delta, "reasoning_content", None) for c in parsed if c.choices]
        assert "".join(e for e in extra if e) == "hmm"

    def test_event_before_message_start(self) -> None:
        """A content event before message_start is an upstream_invalid_response error frame."""
        t = StreamTranslator(model=MODEL, created=1)
        out = frames(t.feed_event("content_block_start", {"index": 0, "content_block": {"type": "text"}}))
        assert out[0]["error"]["code"] == "upstream_invalid_response" and t.done
