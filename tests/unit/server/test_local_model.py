"""The pure core of the local upstream: tokenizer, reply planning, cuts and the SSE event order."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from mpp_claude.server.upstreams import _local_model as m
from mpp_claude.server.upstreams._local_stream import encode_event, message_events

BODY: dict[str, Any] = {
    "model": "claude-haiku-4-5",
    "max_tokens": 500,
    "messages": [{"role": "user", "content": "Hello there, how are you?"}],
}
WEATHER = {
    "name": "get_weather",
    "description": "Current weather",
    "input_schema": {
        "type": "object",
        "properties": {
            "location": {"type": "string"},
            "unit": {"enum": ["c", "f"]},
            "days": {"type": "integer", "minimum": 2},
        },
        "required": ["location", "unit", "days"],
    },
}
TIME = {"name": "get_time", "input_schema": {"type": "object", "properties": {}}}


def test_count_tokens_documented_rule() -> None:
    """Words cost ceil(len/4), each punctuation mark 1, whitespace nothing."""
    assert m.count_tokens("") == 0
    assert m.count_tokens("hi") == 1
    assert m.count_tokens("hello") == 2
    assert m.count_tokens("hello, world!") == 2 + 1 + 2 + 1
    assert m.count_tokens("   \n\t ") == 0
    assert m.count_tokens("abcdefghijkl") == 3


@given(st.text(), st.integers(min_value=0, max_value=40))
def test_truncate_is_an_exact_prefix(text: str, limit: int) -> None:
    """A cut is a prefix costing what it says, never more than the limit, and uses the limit fully."""
    cut, cost = m.truncate_tokens(text, limit)
    assert text.startswith(cut)
    assert cost == m.count_tokens(cut) <= limit
    if cut != text:
        assert cost == limit < m.count_tokens(text)


@given(st.text(), st.integers(min_value=1, max_value=6))
def test_chunks_rebuild_the_text(text: str, per: int) -> None:
    """Stream chunks concatenate back to the text and none is empty."""
    chunks = m.chunk_text(text, per)
    assert "".join(chunks) == text
    assert all(chunks)


def test_reply_is_deterministic_and_echoes_the_prompt() -> None:
    """The same request gives the same content; the reply quotes the prompt's first words."""
    a = m.build_message(BODY, b"n1")
    b = m.build_message(BODY, b"n2")
    assert a["content"] == b["content"]
    assert a["id"] != b["id"] and a["id"].startswith("msg_")
    assert a["content"][0]["text"].startswith('You said "Hello there, how are you?". ')
    other = m.build_message({**BODY, "messages": [{"role": "user", "content": "Something else"}]}, b"n1")
    assert other["content"] != a["content"]


def test_echo_prefix_and_stop_sequence() -> None:
    """'echo:' repeats the rest verbatim; a stop sequence cuts before it and is reported."""
    body = {**BODY, "messages": [{"role": "user", "content": "echo: alpha beta STOP gamma"}]}
    msg = m.build_message(body, b"n")
    assert msg["content"] == [{"type": "text", "text": "alpha beta STOP gamma"}]
    assert msg["stop_reason"] == "end_turn"
    cut = m.build_message({**body, "stop_sequences": ["zzz", "STOP"]}, b"n")
    assert cut["content"][0]["text"] == "alpha beta "
    assert (cut["stop_reason"], cut["stop_sequence"]) == ("stop_sequence", "STOP")
    assert cut["usage"]["output_tokens"] == m.count_tokens("alpha beta ")


def test_max_tokens_cuts_output() -> None:
    """max_tokens bounds output_tokens and yields stop_reason max_tokens with a prefix of the full text."""
    full = m.build_message(BODY, b"n")
    short = m.build_message({**BODY, "max_tokens": 5}, b"n")
    assert short["stop_reason"] == "max_tokens"
    assert short["usage"]["output_tokens"] == 5
    assert full["content"][0]["text"].startswith(short["content"][0]["text"])
    assert full["usage"]["output_tokens"] == m.count_tokens(full["content"][0]["text"])


def test_input_tokens_count_system_messages_and_tools() -> None:
    """System, every message (+3 each) and tool definitions (+300 prompt) all count."""
    base = m.count_input_tokens(BODY)
    assert base == 3 + m.count_tokens("Hello there, how are you?")
    assert m.count_input_tokens({**BODY, "system": "Be brief."}) == base + 4
    assert m.count_input_tokens({**BODY, "system": [{"type": "text", "text": "Be brief."}]}) == base + 4
    with_tool = m.count_input_tokens({**BODY, "tools": [TIME]})
    assert with_tool == base + m.TOOL_PROMPT_TOKENS + m.count_tokens("get_time") + m.count_tokens(
        json.dumps(TIME["input_schema"], sort_keys=True)
    )


def test_tool_called_when_named() -> None:
    """Naming a tool makes a text block then a tool_use with schema-shaped input; stop_reason tool_use."""
    body = {
        **BODY,
        "tools": [WEATHER, TIME],
        "messages": [{"role": "user", "content": "What's the weather in Paris? Use get_weather."}],
    }
    msg = m.build_message(body, b"n")
    assert [b["type"] for b in msg["content"]] == ["text", "tool_use"]
    call = msg["content"][1]
    assert call["name"] == "get_weather" and call["id"].startswith("toolu_")
    assert call["input"] == {"location": "Paris", "unit": "c", "days": 2}
    assert msg["stop_reason"] == "tool_use"


def test_tool_not_called_unless_asked() -> None:
    """Tools on offer but not mentioned, or tool_choice none: a plain answer."""
    body = {**BODY, "tools": [WEATHER]}
    assert [b["type"] for b in m.build_message(body, b"n")["content"]] == ["text"]
    named = {
        **body,
        "messages": [{"role": "user", "content": "use the tool"}],
        "tool_choice": {"type": "none"},
    }
    assert m.build_message(named, b"n")["stop_reason"] == "end_turn"


def test_parallel_and_forced_tools() -> None:
    """Two named tools → two calls (one if parallel use is disabled); forced choice → tool_use only."""
    body = {
        **BODY,
        "tools": [WEATHER, TIME],
        "messages": [{"role": "user", "content": "get_time and get_weather for Rome"}],
    }
    assert [b["name"] for b in m.build_message(body, b"n")["content"][1:]] == ["get_weather", "get_time"]
    single = {**body, "tool_choice": {"type": "auto", "disable_parallel_tool_use": True}}
    assert [b["type"] for b in m.build_message(single, b"n")["content"]] == ["text", "tool_use"]
    forced = {**BODY, "tools": [WEATHER, TIME], "tool_choice": {"type": "tool", "name": "get_time"}}
    msg = m.build_message(forced, b"n")
    assert [(b["type"], b.get("name")) for b in msg["content"]] == [("tool_use", "get_time")]
    anyone = m.build_message({**forced, "tool_choice": {"type": "any"}}, b"n")
    assert anyone["content"][0]["name"] == "get_weather"


def test_tool_result_is_answered_in_text() -> None:
    """After a tool_result the model answers with text quoting it instead of calling again."""
    body = {
        **BODY,
        "tools": [WEATHER],
        "messages": [
            {"role": "user", "content": "weather? use get_weather"},
            {
                "role": "assistant",
                "content": [
                    {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"location": "x"}}
                ],
            },
            {
                "role": "user",
                "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "21C sunny"}],
            },
        ],
    }
    msg = m.build_message(body, b"n")
    assert msg["stop_reason"] == "end_turn"
    assert msg["content"][0]["text"].startswith("The tool returned: 21C sunny.")


def test_thinking_block_comes_first_and_counts() -> None:
    """Enabled thinking adds a signed thinking block first; its tokens are inside output_tokens."""
    body = {**BODY, "max_tokens": 4000, "thinking": {"type": "enabled", "budget_tokens": 1024}}
    msg = m.build_message(body, b"n")
    thinking, text = msg["content"]
    assert thinking["type"] == "thinking" and thinking["signature"] and thinking["thinking"]
    u = msg["usage"]
    assert u["output_tokens_details"]["thinking_tokens"] == m.count_tokens(thinking["thinking"])
    assert u["output_tokens"] == m.count_tokens(thinking["thinking"]) + m.count_tokens(text["text"])


def _events(msg: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    return list(message_events(msg))


def test_event_order_matches_the_messages_api() -> None:
    """message_start, block start, ping, deltas, block stop ..., message_delta, message_stop."""
    body = {
        **BODY,
        "max_tokens": 4000,
        "thinking": {"type": "adaptive"},
        "tools": [TIME],
        "messages": [{"role": "user", "content": "call get_time please"}],
    }
    msg = m.build_message(body, b"n")
    names = [n for n, _ in _events(msg)]
    assert names[:3] == ["message_start", "content_block_start", "ping"]
    assert names[-2:] == ["message_delta", "message_stop"]
    assert names.count("content_block_start") == names.count("content_block_stop") == 3
    deltas = [d["delta"]["type"] for n, d in _events(msg) if n == "content_block_delta"]
    assert deltas.index("signature_delta") < deltas.index("text_delta") < deltas.index("input_json_delta")
    start = _events(msg)[0][1]["message"]
    assert start["content"] == [] and start["stop_reason"] is None
    final = _events(msg)[-2][1]
    assert final["delta"]["stop_reason"] == "tool_use"
    assert final["usage"]["output_tokens"] == msg["usage"]["output_tokens"]


def test_stream_deltas_rebuild_the_message() -> None:
    """Concatenated deltas give back exactly the JSON message's blocks."""
    body = {**BODY, "tools": [WEATHER], "messages": [{"role": "user", "content": "get_weather in Oslo"}]}
    msg = m.build_message(body, b"n")
    text, partial = "", ""
    for name, data in _events(msg):
        if name == "content_block_delta" and data["delta"]["type"] == "text_delta":
            text += data["delta"]["text"]
        if name == "content_block_delta" and data["delta"]["type"] == "input_json_delta":
            partial += data["delta"]["partial_json"]
    assert text == msg["content"][0]["text"]
    assert json.loads(partial) == msg["content"][1]["input"]


def test_encode_event_framing() -> None:
    """An SSE event is 'event:' and 'data:' lines closed by a blank line."""
    raw = encode_event("ping", {"type": "ping"})
    assert raw == b'event: ping\ndata: {"type":"ping"}\n\n'
