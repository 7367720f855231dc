"""Hypothesis strategies shaped after the openai SDK's request TypedDicts and Anthropic's messages.

``chat_requests()`` draws bodies that ``openai.types.chat.CompletionCreateParams`` allows
(field names, value types and literals from the SDK; free strings, numbers and schemas
anywhere the type says ``str``/``float``/``Dict[str, object]``), so the property "mapped or
refused with a ConversionError" is tested on what real clients may send.
"""

from __future__ import annotations

import json
from typing import Any

from hypothesis import strategies as st

from mpp_claude.convert import MODELS, RETIRED

JSON_SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(-(10**6), 10**6)
    | st.floats(allow_nan=False)
    | st.text(max_size=8)
)
JSON = st.recursive(
    JSON_SCALARS,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=12,
)

texts = st.text(max_size=12)
names = st.sampled_from(["f", "get_weather", "a", "b", "x.y", "functions.get:0", ""]) | st.text(max_size=6)
ids = st.sampled_from(["call_1", "call_2", "toolu_9", "functions.get:0", "c"]) | st.text(max_size=6)
models = (
    st.sampled_from([*sorted({m.id for m in MODELS.values()}), "claude-haiku-4-5-20251001"])
    | st.sampled_from(sorted(RETIRED))
    | st.text(max_size=10)
)
floats = st.floats(allow_nan=True, allow_infinity=True) | st.integers(-5, 5)

schemas = st.fixed_dictionaries(
    {"type": st.just("object")},
    optional={
        "properties": st.dictionaries(
            st.text(max_size=4),
            st.fixed_dictionaries(
                {"type": st.sampled_from(["string", "integer", "object", "array"])},
                optional={
                    "minLength": st.integers(0, 5),
                    "description": texts,
                    "minItems": st.integers(0, 3),
                    "format": st.sampled_from(["date", "uri", "weird"]),
                },
            ),
            max_size=3,
        ),
        "required": st.lists(st.text(max_size=4), max_size=2),
        "additionalProperties": st.booleans(),
    },
) | st.dictionaries(st.text(max_size=4), JSON, max_size=3)

text_part = st.fixed_dictionaries({"type": st.just("text"), "text": texts})
image_part = st.fixed_dictionaries(
    {
        "type": st.just("image_url"),
        "image_url": st.fixed_dictionaries(
            {
                "url": st.sampled_from(
                    [
                        "https://example.com/a.png",
                        "data:image/png;base64,iVBOR",
                        "data:image/svg+xml;utf8,<s>",
                        "data:image/png,raw",
                        "ftp://x",
                        "",
                    ]
                )
                | st.text(max_size=12)
            },
            optional={"detail": st.sampled_from(["auto", "low", "high"])},
        ),
    }
)
file_part = st.fixed_dictionaries(
    {
        "type": st.just("file"),
        "file": st.fixed_dictionaries(
            {},
            optional={
                "file_data": st.sampled_from(
                    [
                        "data:application/pdf;base64,JVBER",
                        "data:text/plain;base64,aGk=",
                        "data:text/plain;base64,!!",
                        "JVBER",
                        "data:image/png;base64,x",
                    ]
                )
                | texts,
                "file_id": st.just("file-abc"),
                "filename": st.sampled_from(["a.pdf", "b.txt", ""]),
            },
        ),
    }
)
audio_part = st.just({"type": "input_audio", "input_audio": {"data": "AAAA", "format": "wav"}})
user_content = texts | st.lists(text_part | image_part | file_part | audio_part, max_size=3)

tool_call = st.fixed_dictionaries(
    {
        "id": ids,
        "type": st.just("function"),
        "function": st.fixed_dictionaries(
            {"name": names, "arguments": st.sampled_from(["", "{}", '{"a":1}', "{bad", "[1]", "null"])}
        ),
    }
)
thinking_block = st.fixed_dictionaries({"type": st.just("thinking"), "thinking": texts, "signature": texts})

system_msg = st.fixed_dictionaries(
    {"role": st.sampled_from(["system", "developer"]), "content": texts | st.lists(text_part, max_size=2)},
    optional={"name": texts},
)
user_msg = st.fixed_dictionaries({"role": st.just("user"), "content": user_content}, optional={"name": texts})
assistant_msg = st.fixed_dictionaries(
    {"role": st.just("assistant")},
    optional={
        "content": st.none()
        | texts
        | st.lists(
            text_part | st.fixed_dictionaries({"type": st.just("refusal"), "refusal": texts}), max_size=2
        ),
        "tool_calls": st.lists(tool_call, max_size=2),
        "function_call": st.none() | st.fixed_dictionaries({"name": names, "arguments": st.just("{}")}),
        "refusal": st.none() | texts,
        "name": texts,
        "thinking_blocks": st.lists(thinking_block, max_size=1),
    },
)
tool_msg = st.fixed_dictionaries(
    {"role": st.just("tool"), "tool_call_id": ids, "content": texts | st.lists(text_part, max_size=2)}
)
function_msg = st.fixed_dictionaries(
    {"role": st.just("function"), "name": names, "content": st.none() | texts}
)
messages = st.lists(system_msg | user_msg | assistant_msg | tool_msg | function_msg, min_size=1, max_size=6)

function_def = st.fixed_dictionaries(
    {"name": names},
    optional={"description": texts, "parameters": schemas, "strict": st.none() | st.booleans()},
)
tools = st.lists(
    st.fixed_dictionaries({"type": st.just("function"), "function": function_def})
    | st.just({"type": "custom", "custom": {"name": "g"}}),
    max_size=3,
)
tool_choice = (
    st.sampled_from(["none", "auto", "required"])
    | st.fixed_dictionaries({"type": st.just("function"), "function": st.fixed_dictionaries({"name": names})})
    | st.fixed_dictionaries(
        {
            "type": st.just("allowed_tools"),
            "allowed_tools": st.fixed_dictionaries(
                {
                    "mode": st.sampled_from(["auto", "required"]),
                    "tools": st.lists(
                        st.fixed_dictionaries(
                            {"type": st.just("function"), "function": st.fixed_dictionaries({"name": names})}
                        ),
                        max_size=2,
                    ),
                }
            ),
        }
    )
    | st.fixed_dictionaries({"type": st.just("custom"), "custom": st.fixed_dictionaries({"name": names})})
)
response_format = st.sampled_from([{"type": "text"}, {"type": "json_object"}]) | st.fixed_dictionaries(
    {
        "type": st.just("json_schema"),
        "json_schema": st.fixed_dictionaries(
            {"name": texts},
            optional={"schema": schemas, "strict": st.none() | st.booleans(), "description": texts},
        ),
    }
)

OPTIONAL: dict[str, st.SearchStrategy[Any]] = {
    "audio": st.none() | st.just({"voice": "alloy", "format": "mp3"}),
    "frequency_penalty": st.none() | floats,
    "function_call": st.sampled_from(["none", "auto"]) | st.fixed_dictionaries({"name": names}),
    "functions": st.lists(function_def, max_size=2),
    "logit_bias": st.none() | st.dictionaries(st.text(max_size=3), st.integers(-100, 100), max_size=2),
    "logprobs": st.none() | st.booleans(),
    "max_completion_tokens": st.none() | st.integers(-5, 300_000),
    "max_tokens": st.none() | st.integers(-5, 300_000),
    "metadata": st.none() | st.dictionaries(st.text(max_size=4), st.text(max_size=4), max_size=2),
    "modalities": st.none() | st.lists(st.sampled_from(["text", "audio"]), max_size=2),
    "n": st.none() | st.integers(-1, 3),
    "parallel_tool_calls": st.booleans(),
    "prediction": st.none() | st.just({"type": "content", "content": "x"}),
    "presence_penalty": st.none() | floats,
    "prompt_cache_key": st.none() | texts,
    "prompt_cache_retention": st.none() | st.sampled_from(["in_memory", "24h"]),
    "reasoning_effort": st.none()
    | st.sampled_from(["none", "minimal", "low", "medium", "high", "xhigh", "max"]),
    "response_format": response_format,
    "safety_identifier": st.none() | texts,
    "seed": st.none() | st.integers(),
    "service_tier": st.none() | st.sampled_from(["auto", "default", "flex", "scale", "priority", "fast"]),
    "stop": st.none() | texts | st.lists(texts, max_size=4),
    "store": st.none() | st.booleans(),
    "stream": st.none() | st.booleans(),
    "stream_options": st.none()
    | st.fixed_dictionaries(
        {}, optional={"include_usage": st.booleans(), "include_obfuscation": st.booleans()}
    ),
    "temperature": st.none() | floats,
    "tool_choice": tool_choice,
    "tools": tools,
    "top_logprobs": st.none() | st.integers(-1, 20),
    "top_p": st.none() | floats,
    "user": texts,
    "verbosity": st.none() | st.sampled_from(["low", "medium", "high"]),
    "web_search_options": st.fixed_dictionaries(
        {},
        optional={
            "search_context_size": st.sampled_from(["low", "medium", "high"]),
            "user_location": st.none() | st.just({"type": "approximate", "approximate": {"city": "Paris"}}),
        },
    ),
    # extensions the converter reads
    "thinking": st.fixed_dictionaries(
        {"type": st.sampled_from(["enabled", "adaptive", "disabled", "between_tools", "bogus"])},
        optional={"budget_tokens": st.integers(0, 70_000)},
    ),
    "top_k": st.none() | st.integers(-2, 100),
}


def chat_requests() -> st.SearchStrategy[dict[str, Any]]:
    """Bodies of ``POST /v1/chat/completions`` as the openai SDK types allow them."""
    return st.fixed_dictionaries({"model": models, "messages": messages}, optional=OPTIONAL)


def json_bodies() -> st.SearchStrategy[Any]:
    """Any JSON value, mostly objects with the known field names holding arbitrary JSON."""
    keyed = st.fixed_dictionaries({}, optional={k: JSON for k in ["model", "messages", *OPTIONAL]})
    return keyed | JSON


# --- Anthropic side -----------------------------------------------------------------------------------------

a_text = st.fixed_dictionaries({"type": st.just("text"), "text": st.text(max_size=20)})
a_tool = st.fixed_dictionaries(
    {
        "type": st.just("tool_use"),
        "id": st.from_regex(r"toolu_[a-z0-9]{1,6}", fullmatch=True),
        "name": st.sampled_from(["f", "g", "get_weather"]),
        "input": st.dictionaries(st.text(max_size=4), JSON, max_size=3),
    }
)
a_thinking = st.fixed_dictionaries(
    {
        "type": st.just("thinking"),
        "thinking": st.text(max_size=20),
        "signature": st.text(min_size=1, max_size=8),
    }
)
a_server = st.fixed_dictionaries(
    {
        "type": st.just("server_tool_use"),
        "id": st.just("srvtoolu_1"),
        "name": st.just("web_search"),
        "input": st.just({"query": "q"}),
    }
)
a_usage = st.fixed_dictionaries(
    {"input_tokens": st.integers(0, 10**6), "output_tokens": st.integers(1, 10**5)},
    optional={
        "cache_read_input_tokens": st.integers(0, 10**6),
        "cache_creation_input_tokens": st.integers(0, 10**6),
        "output_tokens_details": st.fixed_dictionaries({"thinking_tokens": st.integers(0, 1000)}),
    },
)


def anthropic_messages() -> st.SearchStrategy[dict[str, Any]]:
    """Final Anthropic messages with mixed content, any stop reason and usage."""
    return st.fixed_dictionaries(
        {
            "id": st.from_regex(r"msg_[A-Za-z0-9]{1,8}", fullmatch=True),
            "type": st.just("message"),
            "role": st.just("assistant"),
            "model": st.just("claude-haiku-4-5"),
            "content": st.lists(a_text | a_tool | a_thinking | a_server, max_size=5),
            "stop_reason": st.sampled_from(
                [
                    "end_turn",
                    "max_tokens",
                    "stop_sequence",
                    "tool_use",
                    "refusal",
                    "model_context_window_exceeded",
                    "new_reason",
                ]
            )
            | st.none(),
            "stop_sequence": st.none(),
            "usage": a_usage,
        }
    )


def json_roundtrip(value: Any) -> Any:
    """What the server would see after decoding the client's JSON."""
    return json.loads(json.dumps(value))


# --- mostly-valid conversations (so the "mapped" branch is exercised, not only refusals) -------------------

valid_models = st.sampled_from(sorted({m.id for m in MODELS.values()}))
word = st.text(alphabet="abc xyz\n", min_size=1, max_size=10).filter(lambda s: s.strip())


@st.composite
def conversations(draw: st.DrawFn) -> list[dict[str, Any]]:
    """A coherent history: system prompt, user turns, tool loops answered in order, maybe a prefill."""
    out: list[dict[str, Any]] = []
    if draw(st.booleans()):
        out.append({"role": draw(st.sampled_from(["system", "developer"])), "content": draw(word)})
    counter = 0
    for _ in range(draw(st.integers(1, 3))):
        out.append(
            {"role": "user", "content": draw(word | st.lists(text_part | image_part, min_size=1, max_size=2))}
        )
        if draw(st.booleans()):
            calls = []
            for _ in range(draw(st.integers(1, 2))):
                counter += 1
                cid = draw(st.sampled_from([f"call_{counter}", f"functions.f:{counter}", f"toolu_{counter}"]))
                calls.append(
                    {
                        "id": cid,
                        "type": "function",
                        "function": {
                            "name": draw(st.sampled_from(["f", "g"])),
                            "arguments": draw(st.sampled_from(["", "{}", '{"a": 1}'])),
                        },
                    }
                )
            out.append(
                {"role": "assistant", "content": draw(st.none() | st.just("") | word), "tool_calls": calls}
            )
            out.extend(
                {"role": "tool", "tool_call_id": c["id"], "content": draw(word | st.just(""))} for c in calls
            )
            if draw(st.booleans()):
                out.append({"role": "user", "content": draw(word)})
        elif draw(st.booleans()):
            out.append({"role": "assistant", "content": draw(word)})
    if draw(st.booleans()) and out[-1]["role"] in ("user", "tool"):
        out.append({"role": "assistant", "content": draw(word)})  # prefill
    return out


VALID_OPTIONAL: dict[str, st.SearchStrategy[Any]] = {
    "max_completion_tokens": st.integers(1, 200_000),
    "temperature": st.floats(0, 2),
    "top_p": st.floats(0, 1),
    "top_k": st.integers(0, 50),
    "stop": texts | st.lists(texts, max_size=3),
    "n": st.just(1),
    "reasoning_effort": OPTIONAL["reasoning_effort"],
    "response_format": response_format,
    "tools": st.just(
        [
            {"type": "function", "function": {"name": "f"}},
            {
                "type": "function",
                "function": {"name": "g", "strict": True, "parameters": {"type": "object", "properties": {}}},
            },
        ]
    ),
    "tool_choice": st.sampled_from(
        ["none", "auto", "required", {"type": "function", "function": {"name": "g"}}]
    ),
    "parallel_tool_calls": st.booleans(),
    "user": texts,
    "stream": st.booleans(),
    "stream_options": st.fixed_dictionaries({"include_usage": st.booleans()}),
    "seed": st.integers(),
    "thinking": OPTIONAL["thinking"],
}


def valid_chat_requests() -> st.SearchStrategy[dict[str, Any]]:
    """Requests most of which can be mapped."""
    return st.fixed_dictionaries(
        {"model": valid_models, "messages": conversations()}, optional=VALID_OPTIONAL
    )
