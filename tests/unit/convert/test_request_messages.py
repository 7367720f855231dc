"""Spec §7.1 cases on messages and content: T01-T16, T43-T48 (request side, no upstream call)."""

from __future__ import annotations

import re
from typing import Any

import pytest

from mpp_claude.convert import DEFAULT_MAX_TOKENS, chat_request_to_messages
from mpp_claude.errors import ConversionError

from .helpers import MODEL, req, user


def _refused(body: dict[str, Any]) -> ConversionError:
    with pytest.raises(ConversionError) as info:
        chat_request_to_messages({"model": MODEL, **body})
    assert info.value.status == 400
    assert info.value.to_openai()["error"]["type"] == "invalid_request_error"
    return info.value


def _tool_call(cid: str = "call_1", name: str = "f", args: str = '{"a":1}') -> dict[str, Any]:
    return {"id": cid, "type": "function", "function": {"name": name, "arguments": args}}


def test_T01_minimal_request() -> None:
    """A single user string becomes one user turn with a text block, default max_tokens, stream on."""
    body = req().body
    assert body["messages"] == [{"role": "user", "content": [{"type": "text", "text": "Hi"}]}]
    assert body["max_tokens"] == DEFAULT_MAX_TOKENS
    assert "system" not in body
    assert body["stream"] is True


def test_T02_system_and_developer_hoisted_in_order() -> None:
    """System and developer messages anywhere become ordered system blocks; roles alternate."""
    body = req(
        [
            {"role": "system", "content": "A"},
            user("q1"),
            {"role": "developer", "content": "B"},
            {"role": "assistant", "content": "a1"},
            {"role": "system", "content": "C"},
            user("q2"),
        ]
    ).body
    assert body["system"] == [{"type": "text", "text": t} for t in "ABC"]
    assert [m["role"] for m in body["messages"]] == ["user", "assistant", "user"]


def test_T03_empty_system_part_skipped() -> None:
    """An empty text part of a system message is dropped."""
    body = req(
        [{"role": "system", "content": [{"type": "text", "text": "A"}, {"type": "text", "text": ""}]}, user()]
    ).body
    assert body["system"] == [{"type": "text", "text": "A"}]


def test_T04_consecutive_users_merge_as_blocks() -> None:
    """Two user messages become one turn with two text blocks (not joined text)."""
    body = req([user("x"), user("y")]).body
    assert body["messages"] == [
        {"role": "user", "content": [{"type": "text", "text": "x"}, {"type": "text", "text": "y"}]}
    ]


@pytest.mark.parametrize("content", [None, ""], ids=["T05-null", "T06-empty"])
def test_T05_T06_tool_call_turn_has_no_text_block(content: str | None) -> None:
    """An assistant tool-call turn with null/empty content carries only tool_use; the result follows."""
    body = req(
        [
            user(),
            {"role": "assistant", "content": content, "tool_calls": [_tool_call()]},
            {"role": "tool", "tool_call_id": "call_1", "content": "ok"},
        ]
    ).body
    assert body["messages"][1]["content"] == [
        {"type": "tool_use", "id": "call_1", "name": "f", "input": {"a": 1}}
    ]
    assert body["messages"][2]["content"] == [
        {"type": "tool_result", "tool_use_id": "call_1", "content": "ok"}
    ]


def test_T07_tool_results_first_then_text() -> None:
    """Two tool results and a following user text form one user turn, results first in order."""
    body = req(
        [
            user(),
            {"role": "assistant", "tool_calls": [_tool_call("call_1"), _tool_call("call_2")]},
            {"role": "tool", "tool_call_id": "call_1", "content": "r1"},
            {"role": "tool", "tool_call_id": "call_2", "content": "r2"},
            user("thanks"),
        ]
    ).body
    last = body["messages"][-1]["content"]
    assert [b["type"] for b in last] == ["tool_result", "tool_result", "text"]
    assert [b.get("tool_use_id") for b in last[:2]] == ["call_1", "call_2"]
    assert len(body["messages"]) == 3


def test_T08_tool_result_text_parts() -> None:
    """Array content of a tool message becomes text blocks inside the tool_result."""
    body = req(
        [
            user(),
            {"role": "assistant", "tool_calls": [_tool_call()]},
            {
                "role": "tool",
                "tool_call_id": "call_1",
                "content": [{"type": "text", "text": "r1"}, {"type": "text", "text": "r2"}],
            },
        ]
    ).body
    assert body["messages"][2]["content"][0]["content"] == [
        {"type": "text", "text": "r1"},
        {"type": "text", "text": "r2"},
    ]


def test_T09_empty_arguments_become_empty_input() -> None:
    """arguments "" maps to input {}."""
    body = req(
        [
            user(),
            {"role": "assistant", "tool_calls": [_tool_call(args="")]},
            {"role": "tool", "tool_call_id": "call_1", "content": "ok"},
        ]
    ).body
    assert body["messages"][1]["content"][0]["input"] == {}


def test_T10_invalid_arguments_refused_with_param() -> None:
    """Arguments that are not JSON give a 400 pointing at the field."""
    err = _refused(
        {
            "messages": [
                user(),
                {"role": "assistant", "tool_calls": [_tool_call(args="{bad")]},
                {"role": "tool", "tool_call_id": "call_1", "content": "ok"},
            ]
        }
    )
    assert err.param == "messages[1].tool_calls[0].function.arguments"


def test_T11_data_url_image() -> None:
    """A base64 PNG data URL becomes a base64 image block; detail is ignored."""
    url = "data:image/png;base64,iVBORw0KGgo="
    body = req(
        [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": url, "detail": "high"}}]}]
    ).body
    assert body["messages"][0]["content"] == [
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}}
    ]


def test_T12_http_image_url_passed_as_url_source() -> None:
    """An https image URL becomes a url source (the converter does no I/O at all)."""
    body = req(
        [
            {
                "role": "user",
                "content": [{"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg"}}],
            }
        ]
    ).body
    assert body["messages"][0]["content"][0] == {
        "type": "image",
        "source": {"type": "url", "url": "https://example.com/cat.jpg"},
    }


def test_T13_svg_data_url_refused() -> None:
    """A non-base64 SVG data URL is refused with param pointing at the part."""
    err = _refused(
        {
            "messages": [
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": "see"},
                        {"type": "image_url", "image_url": {"url": "data:image/svg+xml;utf8,<svg/>"}},
                    ],
                }
            ]
        }
    )
    assert err.param == "messages[0].content[1]"


def test_T14_pdf_file_part() -> None:
    """A PDF file_data part becomes a document block titled with the filename."""
    body = req(
        [
            {
                "role": "user",
                "content": [
                    {
                        "type": "file",
                        "file": {"filename": "a.pdf", "file_data": "data:application/pdf;base64,JVBERi0x"},
                    }
                ],
            }
        ]
    ).body
    assert body["messages"][0]["content"][0] == {
        "type": "document",
        "title": "a.pdf",
        "source": {"type": "base64", "media_type": "application/pdf", "data": "JVBERi0x"},
    }


def test_T15_file_id_refused() -> None:
    """An OpenAI file id means nothing to Anthropic: 400."""
    err = _refused(
        {"messages": [{"role": "user", "content": [{"type": "file", "file": {"file_id": "file-abc"}}]}]}
    )
    assert err.param == "messages[0].content[0]"


def test_T16_audio_input_refused() -> None:
    """input_audio parts are refused, never dropped silently."""
    err = _refused(
        {
            "messages": [
                {
                    "role": "user",
                    "content": [{"type": "input_audio", "input_audio": {"data": "AAAA", "format": "wav"}}],
                }
            ]
        }
    )
    assert err.message == "audio input is not supported"
    assert err.param == "messages[0].content[0]"


def test_T43_legacy_functions_round_trip() -> None:
    """functions/function_call map to tools/tool_choice; the call and its result share one id."""
    body = req(
        [
            user(),
            {"role": "assistant", "content": None, "function_call": {"name": "f", "arguments": '{"x":1}'}},
            {"role": "function", "name": "f", "content": "42"},
        ],
        functions=[{"name": "f", "parameters": {"type": "object", "properties": {"x": {"type": "integer"}}}}],
        function_call={"name": "f"},
    )
    out = body.body
    assert out["tools"][0]["name"] == "f"
    assert out["tool_choice"] == {"type": "tool", "name": "f"}
    use, result = out["messages"][1]["content"][0], out["messages"][2]["content"][0]
    assert use["type"] == "tool_use" and result["type"] == "tool_result"
    assert use["id"] == result["tool_use_id"]
    assert use["input"] == {"x": 1}
    assert body.legacy_functions


def test_T44_only_system_messages_refused() -> None:
    """A conversation of system messages only is a 400 before any upstream call."""
    err = _refused({"messages": [{"role": "system", "content": "be nice"}]})
    assert err.param == "messages"


def test_T45_prefill_on_haiku_4_5_is_trimmed() -> None:
    """A final assistant turn is a prefill on Haiku 4.5; trailing whitespace is removed."""
    body = req([user(), {"role": "assistant", "content": "The answer is "}]).body
    assert body["messages"][-1] == {
        "role": "assistant",
        "content": [{"type": "text", "text": "The answer is"}],
    }


def test_T45_prefill_refused_on_sonnet_4_6() -> None:
    """Sonnet 4.6 rejects prefill: 400 with Anthropic's wording."""
    err = _refused(
        {
            "model": "claude-sonnet-4-6",
            "messages": [user(), {"role": "assistant", "content": "The answer is "}],
        }
    )
    assert "does not support assistant message prefill" in err.message


def test_T46_foreign_tool_ids_sanitised_consistently() -> None:
    """Ids like functions.get:0 become one valid id on both sides of the pair, reverse-mapped."""
    mapped = req(
        [
            user(),
            {"role": "assistant", "tool_calls": [_tool_call("functions.get:0", "get")]},
            {"role": "tool", "tool_call_id": "functions.get:0", "content": "ok"},
        ]
    )
    use = mapped.body["messages"][1]["content"][0]["id"]
    result = mapped.body["messages"][2]["content"][0]["tool_use_id"]
    assert use == result
    assert re.fullmatch(r"[a-zA-Z0-9_-]+", use)
    assert mapped.tool_id_map[use] == "functions.get:0"


def test_T46_distinct_foreign_ids_do_not_collide() -> None:
    """Two ids differing only in invalid characters stay distinct."""
    mapped = req(
        [
            user(),
            {"role": "assistant", "tool_calls": [_tool_call("a.b"), _tool_call("a:b")]},
            {"role": "tool", "tool_call_id": "a.b", "content": "1"},
            {"role": "tool", "tool_call_id": "a:b", "content": "2"},
        ]
    )
    ids = [b["id"] for b in mapped.body["messages"][1]["content"]]
    assert len(set(ids)) == 2


def test_T47_tool_history_without_tools_is_passed_through() -> None:
    """History with tool blocks but no tools is not patched with invented tools (upstream decides)."""
    body = req(
        [
            user(),
            {"role": "assistant", "tool_calls": [_tool_call()]},
            {"role": "tool", "tool_call_id": "call_1", "content": "ok"},
        ]
    ).body
    assert "tools" not in body
    assert body["messages"][1]["content"][0]["type"] == "tool_use"


def test_T48_developer_only_plus_user() -> None:
    """A developer message alone becomes the system prompt."""
    body = req([{"role": "developer", "content": "Be terse."}, user()]).body
    assert body["system"] == [{"type": "text", "text": "Be terse."}]
    assert [m["role"] for m in body["messages"]] == ["user"]


class TestMessageEdges:
    def test_empty_user_string_refused(self) -> None:
        """Whitespace-only user content is refused (Anthropic rejects empty text blocks)."""
        assert _refused({"messages": [user("  ")]}).param == "messages[0].content"

    def test_empty_assistant_dropped_and_neighbours_merge(self) -> None:
        """An assistant message with nothing to send disappears; the user turns around it merge."""
        body = req([user("a"), {"role": "assistant", "content": ""}, user("b")]).body
        assert len(body["messages"]) == 1 and len(body["messages"][0]["content"]) == 2

    def test_unanswered_tool_call_refused(self) -> None:
        """A tool call followed by a user text without its result is refused before upstream."""
        err = _refused({"messages": [user(), {"role": "assistant", "tool_calls": [_tool_call()]}, user("x")]})
        assert err.param == "messages[1].tool_calls"

    def test_orphan_tool_result_refused(self) -> None:
        """A tool message that answers nothing is refused."""
        assert _refused({"messages": [user(), {"role": "tool", "tool_call_id": "x", "content": "r"}]}).param

    def test_text_file_part(self) -> None:
        """A text/plain file becomes a text document."""
        body = req(
            [
                {
                    "role": "user",
                    "content": [
                        {
                            "type": "file",
                            "file": {"filename": "a.txt", "file_data": "data:text/plain;base64,aGVsbG8="},
                        }
                    ],
                }
            ]
        ).body
        assert body["messages"][0]["content"][0]["source"] == {
            "type": "text",
            "media_type": "text/plain",
            "data": "hello",
        }

    def test_unknown_role_refused(self) -> None:
        """An unknown role names the field."""
        assert _refused({"messages": [{"role": "robot", "content": "x"}]}).param == "messages[0].role"
