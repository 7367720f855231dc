"""Spec §7.1 cases on parameters: T17-T42 (tools, sampling, limits, formats, reasoning)."""

from __future__ import annotations

import hashlib
from dataclasses import replace
from typing import Any

import pytest

from mpp_claude.convert import (
    JSON_OBJECT_INSTRUCTION,
    MODELS,
    ConvertOptions,
    chat_request_to_messages,
)
from mpp_claude.errors import ConversionError

from .helpers import MODEL, req, user

TOOLS = [
    {"type": "function", "function": {"name": n, "parameters": {"type": "object", "properties": {}}}}
    for n in ("a", "b", "f")
]


def _refused(**fields: Any) -> ConversionError:
    body = {"model": MODEL, "messages": [user()], **fields}
    with pytest.raises(ConversionError) as info:
        chat_request_to_messages(body)
    assert info.value.status == 400
    return info.value


def test_T17_tool_without_parameters() -> None:
    """A function without parameters gets an empty object schema (not dropped)."""
    body = req(tools=[{"type": "function", "function": {"name": "now"}}]).body
    assert body["tools"] == [{"name": "now", "input_schema": {"type": "object", "properties": {}}}]


def test_T18_strict_tool_on_structured_output_model() -> None:
    """strict: true is forwarded where structured outputs exist and absent elsewhere."""
    tool = [
        {
            "type": "function",
            "function": {
                "name": "f",
                "strict": True,
                "parameters": {"type": "object", "properties": {}, "additionalProperties": False},
            },
        }
    ]
    assert req(model="claude-sonnet-4-6", tools=tool).body["tools"][0]["strict"] is True
    plain = replace(MODELS["claude-sonnet-4-6"], structured_outputs=False)
    table = {**MODELS, "claude-sonnet-4-6": plain}
    out = chat_request_to_messages(
        {"model": "claude-sonnet-4-6", "messages": [user()], "tools": tool},
        options=ConvertOptions(models=table),
    )
    assert "strict" not in out.body["tools"][0]


@pytest.mark.parametrize(
    ("choice", "expected"),
    [
        ("none", {"type": "none"}),
        ("auto", {"type": "auto"}),
        ("required", {"type": "any"}),
        ({"type": "function", "function": {"name": "f"}}, {"type": "tool", "name": "f"}),
    ],
    ids=["T19-none", "T19-auto", "T19-required", "T19-named"],
)
def test_T19_tool_choice(choice: Any, expected: dict[str, Any]) -> None:
    """Each OpenAI tool_choice maps to its Anthropic form."""
    assert req(tools=TOOLS, tool_choice=choice).body["tool_choice"] == expected


def test_T19_named_tool_must_exist() -> None:
    """A named tool_choice that is not in tools is refused."""
    assert (
        _refused(tools=TOOLS, tool_choice={"type": "function", "function": {"name": "zz"}}).param
        == "tool_choice"
    )


def test_T20_parallel_false_without_choice() -> None:
    """parallel_tool_calls false creates auto with disable_parallel_tool_use."""
    assert req(tools=TOOLS, parallel_tool_calls=False).body["tool_choice"] == {
        "type": "auto",
        "disable_parallel_tool_use": True,
    }


def test_T21_parallel_false_with_none() -> None:
    """tool_choice none never carries the disable flag."""
    assert req(tools=TOOLS, tool_choice="none", parallel_tool_calls=False).body["tool_choice"] == {
        "type": "none"
    }


def test_T22_forced_tool_refused_on_opus_5_5() -> None:
    """Opus 5.5 rejects forced tool use: 400 quoting Anthropic's message."""
    err = _refused(model="claude-opus-5-5", tools=TOOLS, tool_choice="required")
    assert "not supported for this model" in err.message
    assert err.param == "tool_choice"


def test_T22_lenient_downgrades_to_auto() -> None:
    """With lenient_tool_choice the choice becomes auto and is listed as degraded."""
    out = chat_request_to_messages(
        {"model": "claude-opus-5-5", "messages": [user()], "tools": TOOLS, "tool_choice": "required"},
        options=ConvertOptions(lenient_tool_choice=True),
    )
    assert out.body["tool_choice"] == {"type": "auto"}
    assert "tool_choice" in out.response_headers()["x-proxy-degraded-params"]


def test_T23_allowed_tools_filters_and_forces() -> None:
    """allowed_tools keeps only the listed tools; mode required becomes any."""
    body = req(
        tools=TOOLS[:2],
        tool_choice={
            "type": "allowed_tools",
            "allowed_tools": {"mode": "required", "tools": [{"type": "function", "function": {"name": "b"}}]},
        },
    ).body
    assert [t["name"] for t in body["tools"]] == ["b"]
    assert body["tool_choice"] == {"type": "any"}


def test_T24_max_completion_tokens_wins() -> None:
    """max_completion_tokens wins over max_tokens."""
    assert req(max_tokens=100, max_completion_tokens=200).body["max_tokens"] == 200


def test_T25_limit_clamped_to_model_max() -> None:
    """A limit above the model's output maximum is clamped and reported as degraded."""
    out = req(max_completion_tokens=999_999)
    assert out.body["max_tokens"] == MODELS[MODEL].max_output_tokens
    assert "max_tokens" in out.response_headers()["x-proxy-degraded-params"]


def test_T26_temperature_clamped_to_one() -> None:
    """Claude's temperature range is 0..1: 1.7 becomes 1.0."""
    assert req(temperature=1.7).body["temperature"] == 1.0


def test_T27_temperature_dropped_on_opus_4_7() -> None:
    """Opus 4.7 rejects sampling parameters: dropped and listed; strict mode refuses."""
    out = req(model="claude-opus-4-7", temperature=0.2)
    assert "temperature" not in out.body
    assert "temperature" in out.response_headers()["x-proxy-ignored-params"]
    with pytest.raises(ConversionError) as info:
        chat_request_to_messages(
            {"model": "claude-opus-4-7", "messages": [user()], "temperature": 0.2},
            options=ConvertOptions(strict_mode=True),
        )
    assert info.value.code == "unsupported_value" and info.value.param == "temperature"


def test_T28_temperature_and_top_p_exclusive_on_sonnet_4_5() -> None:
    """Sonnet 4.5 refuses both together: temperature kept, top_p dropped."""
    body = req(model="claude-sonnet-4-5", temperature=0.3, top_p=0.9).body
    assert body["temperature"] == 0.3 and "top_p" not in body


@pytest.mark.parametrize(
    ("stop", "expected"),
    [
        ("END", ["END"]),
        (["\n", "END", ""], ["END"]),
        (["\n"], None),
    ],
    ids=["T29-string", "T29-list", "T29-whitespace"],
)
def test_T29_stop_sequences(stop: Any, expected: list[str] | None) -> None:
    """Stop sequences keep non-whitespace entries only; none left means no field."""
    assert req(stop=stop).body.get("stop_sequences") == expected


def test_T30_n() -> None:
    """n > 1 is refused; n 1 passes."""
    assert _refused(n=2).param == "n"
    assert req(n=1).body["messages"]


def test_T31_logprobs() -> None:
    """logprobs true is refused; false passes silently."""
    assert _refused(logprobs=True).param == "logprobs"
    assert "x-proxy-ignored-params" not in req(logprobs=False).response_headers()


def test_T32_ignored_params_listed_not_forwarded() -> None:
    """OpenAI-only knobs are accepted, not sent, and listed in the ignored header."""
    fields = {
        "presence_penalty": 0.5,
        "frequency_penalty": 0.5,
        "seed": 1,
        "logit_bias": {"1": 2},
        "store": True,
        "metadata": {"k": "v"},
        "prediction": {"type": "content", "content": "x"},
        "service_tier": "default",
        "verbosity": "low",
    }
    out = req(**fields)
    listed = out.response_headers()["x-proxy-ignored-params"].split(",")
    assert set(fields) <= set(listed)
    assert not set(fields) & set(out.body)


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"user": "u_123"}, "u_123"),
        ({"user": "alice@example.com"}, hashlib.sha256(b"alice@example.com").hexdigest()),
        ({"safety_identifier": "s1", "user": "u"}, "s1"),
    ],
    ids=["T33-opaque", "T33-email", "T33-safety"],
)
def test_T33_user_id(fields: dict[str, str], expected: str) -> None:
    """user/safety_identifier become metadata.user_id, personal data hashed."""
    assert req(**fields).body["metadata"] == {"user_id": expected}


def test_T34_json_schema_structured_output() -> None:
    """json_schema maps to output_config.format with a closed, cleaned schema; no tools added."""
    body = req(
        model="claude-sonnet-4-6",
        response_format={
            "type": "json_schema",
            "json_schema": {
                "name": "x",
                "schema": {
                    "type": "object",
                    "properties": {"a": {"type": "string", "minLength": 2}},
                    "required": ["a"],
                },
            },
        },
    ).body
    schema = body["output_config"]["format"]["schema"]
    assert body["output_config"]["format"]["type"] == "json_schema"
    assert schema["additionalProperties"] is False
    assert "minLength" not in schema["properties"]["a"]
    assert "minLength" in schema["properties"]["a"]["description"]
    assert "tools" not in body


def test_T35_json_object_instruction() -> None:
    """json_object adds a system instruction and is reported as degraded."""
    out = req(response_format={"type": "json_object"})
    assert out.body["system"][-1] == {"type": "text", "text": JSON_OBJECT_INSTRUCTION}
    assert "output_config" not in out.body
    assert out.response_headers()["x-proxy-degraded-params"] == "response_format"


def test_T36_reasoning_high_on_budget_model() -> None:
    """high effort on Sonnet 4.5 gives a 24576 budget, room above it, and drops temperature."""
    body = req(model="claude-sonnet-4-5", reasoning_effort="high", temperature=0.2).body
    assert body["thinking"] == {"type": "enabled", "budget_tokens": 24576}
    assert body["max_tokens"] > 24576
    assert "temperature" not in body


def test_T37_budget_bounded_by_client_limit() -> None:
    """A client limit bounds the budget (limit - 1); a limit too small is refused."""
    body = req(model="claude-sonnet-4-5", reasoning_effort="high", max_completion_tokens=2000).body
    assert body["thinking"]["budget_tokens"] == 1999
    assert (
        _refused(model="claude-sonnet-4-5", reasoning_effort="high", max_completion_tokens=1000).param
        == "max_completion_tokens"
    )


def test_T38_adaptive_effort_on_opus_4_8() -> None:
    """Adaptive models get thinking adaptive plus output_config.effort."""
    body = req(model="claude-opus-4-8", reasoning_effort="medium").body
    assert body["thinking"] == {"type": "adaptive"}
    assert body["output_config"] == {"effort": "medium"}


@pytest.mark.parametrize(
    ("model", "thinking", "effort", "degraded"),
    [
        ("claude-sonnet-5", {"type": "disabled"}, None, False),
        ("claude-sonnet-5-5", {"type": "between_tools"}, None, False),
        ("claude-opus-5-5", {"type": "adaptive"}, "low", True),
    ],
    ids=["T39-sonnet-5", "T39-sonnet-5-5", "T39-opus-5-5"],
)
def test_T39_reasoning_none(model: str, thinking: dict[str, str], effort: str | None, degraded: bool) -> None:
    """none disables thinking where possible, else the lightest thinking the model allows."""
    out = req(model=model, reasoning_effort="none")
    assert out.body["thinking"] == thinking
    assert out.body.get("output_config", {}).get("effort") == effort
    assert ("reasoning_effort" in out.response_headers().get("x-proxy-degraded-params", "")) is degraded


def test_T40_xhigh_falls_back_to_high() -> None:
    """Opus 4.6 has no xhigh effort: high is sent."""
    assert req(model="claude-opus-4-6", reasoning_effort="xhigh").body["output_config"] == {"effort": "high"}


@pytest.mark.parametrize(
    "fields",
    [{"modalities": ["text", "audio"]}, {"audio": {"voice": "alloy", "format": "mp3"}}],
    ids=["T41-modalities", "T41-audio"],
)
def test_T41_audio_output_refused(fields: dict[str, Any]) -> None:
    """Audio output has no Claude equivalent: 400."""
    assert _refused(**fields).message == "audio output is not supported"


def test_T42_web_search_when_enabled() -> None:
    """web_search_options adds the hosted search tool when the feature is on; ignored otherwise."""
    body = {"model": MODEL, "messages": [user()], "web_search_options": {"search_context_size": "low"}}
    out = chat_request_to_messages(body, options=ConvertOptions(web_search=True))
    assert {"type": "web_search_20250305", "name": "web_search", "max_uses": 1} in out.body["tools"]
    off = chat_request_to_messages(body)
    assert "tools" not in off.body
    assert "web_search_options" in off.response_headers()["x-proxy-ignored-params"]


class TestParamEdges:
    def test_forced_tool_refused_with_manual_thinking(self) -> None:
        """Manual (enabled) thinking forbids forced tool use."""
        assert (
            _refused(
                model="claude-sonnet-4-5", reasoning_effort="low", tools=TOOLS, tool_choice="required"
            ).param
            == "tool_choice"
        )

    def test_custom_tools_refused(self) -> None:
        """Grammar/custom tools have no equivalent."""
        assert _refused(tools=[{"type": "custom", "custom": {"name": "g"}}]).param == "tools[0].type"

    def test_temperature_out_of_openai_range_refused(self) -> None:
        """Values outside OpenAI's own range are refused, not clamped."""
        assert _refused(temperature=3).param == "temperature"

    def test_thinking_extension_enabled_on_adaptive_only_model(self) -> None:
        """thinking enabled on Opus 4.7 becomes adaptive with a bucketed effort."""
        body = req(model="claude-opus-4-7", thinking={"type": "enabled", "budget_tokens": 30000}).body
        assert body["thinking"] == {"type": "adaptive"} and body["output_config"] == {"effort": "high"}

    def test_top_p_raised_under_thinking(self) -> None:
        """With thinking on, top_p is kept within 0.95-1."""
        assert req(model="claude-opus-4-5", reasoning_effort="low", top_p=0.5).body["top_p"] == 0.95

    def test_unknown_fields_listed(self) -> None:
        """Unknown top-level fields are ignored and listed."""
        assert "frobnicate" in req(frobnicate=1).response_headers()["x-proxy-ignored-params"]

    def test_auto_cache_option(self) -> None:
        """auto_cache adds top-level cache_control; off by default."""
        body = {"model": MODEL, "messages": [user()]}
        assert "cache_control" not in chat_request_to_messages(body).body
        out = chat_request_to_messages(body, options=ConvertOptions(auto_cache=True))
        assert out.body["cache_control"] == {"type": "ephemeral"}

    def test_thinking_extension_enabled_passes_where_accepted(self) -> None:
        """thinking enabled is forwarded on Sonnet 4.6 (accepted there), with max_tokens above the budget."""
        body = req(model="claude-sonnet-4-6", thinking={"type": "enabled", "budget_tokens": 2048}).body
        assert body["thinking"] == {"type": "enabled", "budget_tokens": 2048}
        assert body["max_tokens"] > 2048
