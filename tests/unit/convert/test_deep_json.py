"""Deeply nested JSON from a client or an upstream is refused, never a crash.

eth-account's dependency py_ecc raises the recursion limit to 100 000, after which
``json.loads("[" * 300000)`` overflows the C stack; every untrusted parse in convert/
goes through ``loads_bounded``.
"""

from __future__ import annotations

import eth_account  # noqa: F401  (raises the recursion limit, as in a real server process)
import pytest

from mpp_claude.convert import SseParser, chat_request_to_messages
from mpp_claude.errors import ConversionError

DEEP = "[" * 300_000


def test_deep_tool_arguments_are_a_400() -> None:
    """A tool call whose arguments nest 300 000 deep gets a 400 naming the parameter."""
    body = {"model": "claude-sonnet-5-5", "messages": [
        {"role": "user", "content": "hi"},
        {"role": "assistant", "tool_calls": [
            {"id": "c1", "type": "function", "function": {"name": "f", "arguments": DEEP}}]},
        {"role": "tool", "tool_call_id": "c1", "content": "x"}]}
    with pytest.raises(ConversionError) as info:
        chat_request_to_messages(body)
    assert info.value.status == 400
    assert "function.arguments" in info.value.message


def test_deep_upstream_event_is_a_502() -> None:
    """An upstream SSE event whose data nests 300 000 deep is an upstream_invalid_response."""
    parser = SseParser()
    events = parser.feed(f"event: message_start\ndata: {DEEP}\n\n".encode())
    assert len(events) == 1
    with pytest.raises(ConversionError) as info:
        events[0].json()
    assert info.value.code == "upstream_invalid_response"
