"""Spec §7.2 non-streaming responses: T49-T57.  Every answer validates as the SDK's ChatCompletion."""

from __future__ import annotations

import json
from typing import Any

import pytest

from mpp_claude.convert import (
    ThinkingStore,
    continue_after_pause,
    merge_paused,
    message_to_chat_completion,
)
from mpp_claude.errors import ConversionError

from .helpers import MODEL, message, req, sdk_completion

TOOL = {"type": "tool_use", "id": "toolu_1", "name": "f", "input": {"a": 1}}


def _complete(msg: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
    out = message_to_chat_completion(msg, model=MODEL, created=1_700_000_000, **kwargs)
    sdk_completion(out)  # the openai SDK's own type accepts it
    return out


def test_T49_text_answer_envelope() -> None:
    """A text answer gets the full chat.completion envelope and usage details."""
    out = _complete(
        message([{"type": "text", "text": "Hello"}], usage={"input_tokens": 10, "output_tokens": 5})
    )
    assert out["object"] == "chat.completion" and out["id"].startswith("chatcmpl-")
    choice = out["choices"][0]
    assert choice["message"]["role"] == "assistant" and choice["message"]["content"] == "Hello"
    assert choice["finish_reason"] == "stop" and choice["logprobs"] is None
    assert out["usage"]["prompt_tokens"] == 10 and out["usage"]["completion_tokens"] == 5
    assert out["usage"]["total_tokens"] == 15
    assert out["usage"]["prompt_tokens_details"] == {"cached_tokens": 0, "cache_write_tokens": 0}
    assert out["system_fingerprint"] is None


def test_T50_tool_call_only() -> None:
    """A tool_use answer: content null, arguments a JSON string, finish tool_calls."""
    out = _complete(message([TOOL], "tool_use"))
    msg = out["choices"][0]["message"]
    assert msg["content"] is None
    call = msg["tool_calls"][0]
    assert call["id"] == "toolu_1" and call["type"] == "function" and call["function"]["name"] == "f"
    assert json.loads(call["function"]["arguments"]) == {"a": 1}
    assert out["choices"][0]["finish_reason"] == "tool_calls"


def test_T51_text_and_tool_call() -> None:
    """Text plus tool_use sets both content and tool_calls."""
    msg = _complete(message([{"type": "text", "text": "Let me check"}, TOOL], "tool_use"))["choices"][0][
        "message"
    ]
    assert msg["content"] == "Let me check" and len(msg["tool_calls"]) == 1


@pytest.mark.parametrize(
    ("reason", "expected"),
    [
        ("max_tokens", "length"),
        ("model_context_window_exceeded", "length"),
        ("stop_sequence", "stop"),
    ],
    ids=["T52-max_tokens", "T52-context", "T52-stop_sequence"],
)
def test_T52_finish_reasons(reason: str, expected: str) -> None:
    """Length-like stops map to length; stop_sequence to stop."""
    out = _complete(message([{"type": "text", "text": "x"}], reason))
    assert out["choices"][0]["finish_reason"] == expected


def test_T53_refusal() -> None:
    """A refusal is content_filter; refusal text stays null unless configured."""
    msg = message([{"type": "text", "text": ""}], "refusal")
    msg["stop_details"] = {"category": "cyber", "explanation": "no"}
    out = _complete(msg)
    assert out["choices"][0]["finish_reason"] == "content_filter"
    assert out["choices"][0]["message"]["refusal"] is None
    assert _complete(msg, expose_refusal=True)["choices"][0]["message"]["refusal"] == "no"


def test_T54_pause_turn_continuation_and_merge() -> None:
    """pause_turn: the continuation ends with the paused content; the merged answer sums usage."""
    mapped = req()
    paused = message(
        [
            {"type": "server_tool_use", "id": "srvtoolu_1", "name": "web_search", "input": {"query": "q"}},
            {"type": "web_search_tool_result", "tool_use_id": "srvtoolu_1", "content": []},
            {"type": "text", "text": "Found "},
        ],
        "pause_turn",
        usage={"input_tokens": 10, "output_tokens": 3},
    )
    body = continue_after_pause(mapped, paused)
    assert body["messages"][-1] == {"role": "assistant", "content": paused["content"]}
    assert len(mapped.body["messages"]) == 1  # original untouched
    final = message(
        [{"type": "text", "text": "it."}], "end_turn", usage={"input_tokens": 20, "output_tokens": 4}
    )
    out = _complete(merge_paused([paused, final]))
    assert out["choices"][0]["message"]["content"] == "Found it."
    assert "tool_calls" not in out["choices"][0]["message"]
    assert out["usage"]["prompt_tokens"] == 30 and out["usage"]["completion_tokens"] == 7
    assert out["choices"][0]["finish_reason"] == "stop"


def test_T55_cache_usage() -> None:
    """Cached tokens are inside prompt_tokens and reported in the details."""
    usage = _complete(
        message(
            [{"type": "text", "text": "x"}],
            usage={
                "input_tokens": 100,
                "cache_read_input_tokens": 900,
                "cache_creation_input_tokens": 50,
                "output_tokens": 20,
            },
        )
    )["usage"]
    assert usage["prompt_tokens"] == 1050 and usage["total_tokens"] == 1070
    assert usage["prompt_tokens_details"] == {"cached_tokens": 900, "cache_write_tokens": 50}


def test_T56_thinking_hidden_by_default() -> None:
    """Thinking text is not returned unless exposed; reasoning tokens are reported."""
    msg = message(
        [{"type": "thinking", "thinking": "hmm", "signature": "s"}, {"type": "text", "text": "42"}],
        usage={"input_tokens": 1, "output_tokens": 40, "output_tokens_details": {"thinking_tokens": 30}},
    )
    out = _complete(msg)
    assert out["choices"][0]["message"]["content"] == "42"
    assert "reasoning_content" not in out["choices"][0]["message"]
    assert out["usage"]["completion_tokens_details"]["reasoning_tokens"] == 30
    assert _complete(msg, expose_reasoning=True)["choices"][0]["message"]["reasoning_content"] == "hmm"


@pytest.mark.parametrize("reason", [None, "something_new"], ids=["T57-null", "T57-unknown"])
def test_T57_unknown_stop_reason(reason: str | None) -> None:
    """Null or unknown stop reasons never leave OpenAI's enum: stop."""
    assert (
        _complete(message([{"type": "text", "text": "x"}], reason))["choices"][0]["finish_reason"] == "stop"
    )


class TestResponseEdges:
    def test_thinking_stored_for_tool_calls(self) -> None:
        """Thinking before a tool_use is kept under the tool-call id."""
        store = ThinkingStore()
        think = {"type": "thinking", "thinking": "plan", "signature": "sig"}
        _complete(message([think, TOOL], "tool_use"), thinking_store=store, now=5)
        assert store.get("toolu_1", now=6) == [think]

    def test_legacy_functions_answer(self) -> None:
        """A request made with functions gets function_call back."""
        mapped = req(functions=[{"name": "f"}])
        out = _complete(message([TOOL], "tool_use"), request=mapped)
        choice = out["choices"][0]
        assert choice["finish_reason"] == "function_call"
        assert choice["message"]["function_call"]["name"] == "f"

    def test_not_a_message(self) -> None:
        """Garbage from upstream is a 502, not a crash."""
        with pytest.raises(ConversionError) as info:
            message_to_chat_completion({"content": "x"}, model=MODEL, created=1)
        assert info.value.status == 502

    def test_server_tool_use_not_a_tool_call(self) -> None:
        """A tool_use stop with only server tools gives finish stop and no tool_calls."""
        out = _complete(
            message(
                [
                    {"type": "server_tool_use", "id": "s", "name": "web_search", "input": {}},
                    {"type": "text", "text": "ok"},
                ],
                "tool_use",
            )
        )
        assert out["choices"][0]["finish_reason"] == "stop"
        assert "tool_calls" not in out["choices"][0]["message"]
