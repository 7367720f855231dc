"""Rebuild an Anthropic message from its SSE events (for non-streaming clients, §1.0).

The proxy always streams upstream; for a client that asked for JSON, the events are folded into
the message Anthropic would have returned, and ``message_to_chat_completion`` maps that.  This
necessarily holds the whole answer (the client wants it in one piece).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from mpp_claude.errors import ConversionError
from mpp_claude.protocol.encoding import loads_bounded

from .error_map import stream_error_to_openai
from .sse import SseEvent

__all__ = ["MessageAccumulator"]


def _invalid(what: str) -> ConversionError:
    return ConversionError(f"upstream stream is invalid: {what}", status=502, type="server_error",
                           code="upstream_invalid_response")


class MessageAccumulator:
    """Feed upstream events; ``message()`` returns the assembled message after ``message_stop``.

    Raises (from ``feed``/``feed_event``):
        ConversionError: the mapped OpenAI error for an ``error`` event; 502 for malformed events.
    """

    def __init__(self) -> None:
        self._message: dict[str, Any] | None = None
        self._blocks: dict[int, dict[str, Any]] = {}
        self._parts: dict[int, list[str]] = {}
        self.complete = False

    def feed(self, event: SseEvent) -> None:
        """Fold one parsed SSE event."""
        self.feed_event(event.event, event.json())

    def feed_event(self, event_type: str, data: Any) -> None:
        """Fold one event given its name and decoded payload."""
        if not isinstance(data, Mapping):
            raise _invalid(f"{event_type} payload is not an object")
        kind = data.get("type", event_type) if event_type == "message" else event_type
        if kind == "error":
            raise stream_error_to_openai(data)
        if kind == "message_start":
            msg = data.get("message")
            if not isinstance(msg, Mapping):
                raise _invalid("message_start without message")
            self._message = {**msg, "content": [], "usage": dict(msg.get("usage") or {})}
            return
        if kind not in ("content_block_start", "content_block_delta", "content_block_stop",
                        "message_delta", "message_stop"):
            return
        if self._message is None:
            raise _invalid(f"{kind} before message_start")
        try:
            getattr(self, "_" + kind)(data)
        except (KeyError, TypeError, AttributeError) as exc:
            raise _invalid(f"malformed {kind}: {exc!r}") from exc

    def message(self) -> dict[str, Any]:
        """The assembled message.

        Raises:
            ConversionError: 502 ``upstream_stream_interrupted`` when ``message_stop`` never came.
        """
        if not self.complete or self._message is None:
            raise ConversionError("upstream stream ended before message_stop", status=502,
                                  type="server_error",
                                  code="upstream_stream_interrupted")
        return self._message

    def _content_block_start(self, data: Mapping[str, Any]) -> None:
        index = data["index"]
        block = dict(data["content_block"])
        self._blocks[index] = block
        self._parts[index] = []
        assert self._message is not None
        self._message["content"].append(block)

    def _content_block_delta(self, data: Mapping[str, Any]) -> None:
        index, delta = data["index"], data["delta"]
        block, parts = self._blocks[index], self._parts[index]
        dtype = delta.get("type")
        if dtype == "text_delta":
            parts.append(delta["text"])
        elif dtype == "input_json_delta":
            parts.append(delta["partial_json"])
        elif dtype == "thinking_delta":
            parts.append(delta["thinking"])
        elif dtype == "signature_delta":
            block["signature"] = block.get("signature", "") + delta["signature"]
        elif dtype == "citations_delta":
            block.setdefault("citations", []).append(delta.get("citation"))

    def _content_block_stop(self, data: Mapping[str, Any]) -> None:
        index = data["index"]
        block, parts = self._blocks.pop(index), self._parts.pop(index)
        btype = block.get("type")
        if btype == "text":
            block["text"] = block.get("text", "") + "".join(parts)
        elif btype == "thinking":
            block["thinking"] = block.get("thinking", "") + "".join(parts)
        elif parts:  # tool_use, server_tool_use: the input arrives as JSON text
            try:
                block["input"] = loads_bounded("".join(parts))
            except ValueError as exc:
                raise _invalid(f"tool input of block {index} is not JSON") from exc
        elif btype in ("tool_use", "server_tool_use") and not isinstance(block.get("input"), dict):
            block["input"] = {}

    def _message_delta(self, data: Mapping[str, Any]) -> None:
        assert self._message is not None
        delta = data.get("delta") or {}
        for key in ("stop_reason", "stop_sequence", "stop_details"):
            if key in delta:
                self._message[key] = delta[key]
        usage = data.get("usage")
        if isinstance(usage, Mapping):
            self._message["usage"].update({k: v for k, v in usage.items() if v is not None})

    def _message_stop(self, data: Mapping[str, Any]) -> None:
        self.complete = True
