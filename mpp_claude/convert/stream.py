"""Anthropic SSE events -> OpenAI ``chat.completion.chunk`` frames, sans I/O (spec §3).

``StreamTranslator`` is fed one upstream event at a time and returns the bytes to write to the
client.  Work per event is constant (one small JSON encode at most; the chunk envelope is
serialised once), and nothing of the answer is kept except thinking blocks when a
``ThinkingStore`` is given (they must be replayed, §1.7).

State (§3.2): whether the role chunk went out, the kind of each open content block, a dense tool
slot per client tool_use block (text/thinking/server blocks take no slot: pitfall 19), the
argument length per slot (empty arguments become ``"{}"``, pitfall 20), stop reason, usage and
whether the stream ended.  Exactly one chunk carries a finish_reason (pitfall 23).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from mpp_claude.errors import ConversionError

from .error_map import error_frame, stream_error_to_openai
from .response import finish_reason, map_usage
from .sse import DONE_FRAME, SseEvent
from .thinking import ThinkingStore
from .types import MessagesRequest

__all__ = ["StreamTranslator"]

_dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
_USAGE_KEYS = ("input_tokens", "cache_read_input_tokens", "cache_creation_input_tokens", "output_tokens")


class StreamTranslator:
    """Translate one upstream Anthropic stream (plus pause_turn continuations) for one client.

    Args:
        model: the ``model`` value every chunk reports.
        created: unix seconds, the same on every chunk.
        include_usage: ``stream_options.include_usage`` (``usage: null`` on every chunk, then a
            usage-only chunk before ``[DONE]``).
        request: the mapped request (reverse tool id/name maps, legacy ``functions``).
        expose_reasoning: send thinking text as ``delta.reasoning_content``.
        thinking_store: keep thinking blocks preceding tool calls (§1.7), with ``now``.
        completion_id: the chunk ``id``; default ``"chatcmpl-" + <Anthropic message id>``.

    Use: ``frames = t.feed(event)`` for each parsed upstream event, write ``frames``; when the
    upstream body ends call ``t.close()`` and write its frames.  If ``t.paused`` is true after
    the upstream ended, the server may send a continuation request and feed its events to the
    same translator (ids and tool slots continue, usage is summed) before ``close()``.
    """

    def __init__(self, *, model: str, created: int, include_usage: bool = False,
                 request: MessagesRequest | None = None, expose_reasoning: bool = False,
                 thinking_store: ThinkingStore | None = None, now: float = 0,
                 completion_id: str | None = None) -> None:
        self.model = model
        self.created = created
        self.include_usage = include_usage
        self.expose_reasoning = expose_reasoning
        self._store = thinking_store
        self._now = now
        self._id_map = request.tool_id_map if request else {}
        self._name_map = request.tool_name_map if request else {}
        self._legacy = bool(request and request.legacy_functions)
        self.completion_id = completion_id
        self._envelope = b""
        self._prefix = b""
        self._tail = (b',"usage":null}' if include_usage else b"}") + b"\n\n"
        self._suffix = b',"logprobs":null,"finish_reason":null}]' + self._tail
        self._started = False
        self._kinds: dict[int, str] = {}
        self._slots: dict[int, int] = {}
        self._args: dict[int, int] = {}
        self._next_slot = 0
        self._thinking: dict[int, dict[str, Any]] = {}
        self._pending_thinking: list[dict[str, Any]] = []
        self._stop_reason: Any = None
        self._usage: dict[str, int] = {}
        self._base: dict[str, int] = {}
        self._finished = False
        self.paused = False
        self.done = False

    # --- public --------------------------------------------------------------------------------

    def feed(self, event: SseEvent) -> bytes:
        """Translate one parsed SSE event; returns the frames to write (may be ``b""``)."""
        if self.done:
            return b""
        try:
            data = event.json()
        except ConversionError as err:
            return self._fail(err)
        return self.feed_event(event.event, data)

    def feed_event(self, event_type: str, data: Any) -> bytes:
        """Translate one event given its name and decoded JSON payload."""
        if self.done:
            return b""
        if not isinstance(data, Mapping):
            data = {}
        kind = data.get("type", event_type) if event_type == "message" else event_type
        handler = _HANDLERS.get(kind)
        if handler is None:
            return b""  # ping and unknown events (Anthropic's versioning policy allows new ones)
        if not self._started and kind not in ("message_start", "error"):
            return self._fail(ConversionError(f"upstream sent {kind} before message_start", status=502,
                                              type="server_error", code="upstream_invalid_response"))
        try:
            return handler(self, data)
        except (KeyError, TypeError, AttributeError, ValueError) as exc:
            return self._fail(ConversionError(f"upstream sent a malformed {kind} event: {exc!r}", status=502,
                                              type="server_error", code="upstream_invalid_response"))

    def close(self) -> bytes:
        """The upstream body ended.  Finishes a paused answer (``length``), or reports an
        interrupted stream as an error frame (``upstream_stream_interrupted``)."""
        if self.done:
            return b""
        if self.paused:
            self.paused = False
            self._stop_reason = "pause_turn"
            return self._finish_frames() + self._end_frames()
        return self._fail(ConversionError("upstream stream ended before message_stop", status=502,
                                          type="server_error", code="upstream_stream_interrupted"))

    def fail(self, err: ConversionError) -> bytes:
        """End the stream with ``err`` as an OpenAI error frame (e.g. a continuation failed)."""
        return b"" if self.done else self._fail(err)

    def usage(self) -> dict[str, Any]:
        """The OpenAI usage object of what was streamed so far."""
        return map_usage(self._total_usage())

    # --- helpers -------------------------------------------------------------------------------

    def _fail(self, err: ConversionError) -> bytes:
        self.done = True
        return error_frame(err)

    def _chunk(self, delta: Mapping[str, Any]) -> bytes:
        return self._prefix + _dumps(delta).encode() + self._suffix

    def _total_usage(self) -> dict[str, Any]:
        total: dict[str, Any] = {k: self._base.get(k, 0) + self._usage.get(k, 0) for k in _USAGE_KEYS}
        thinking = self._base.get("thinking_tokens", 0) + self._usage.get("thinking_tokens", 0)
        total["output_tokens_details"] = {"thinking_tokens": thinking}
        return total

    def _take_usage(self, usage: Any) -> None:
        if not isinstance(usage, Mapping):
            return
        for key in _USAGE_KEYS:
            value = usage.get(key)
            if isinstance(value, int) and not isinstance(value, bool):
                self._usage[key] = value  # cumulative counts: replace, never add (pitfall 21)
        details = usage.get("output_tokens_details")
        if isinstance(details, Mapping) and isinstance(details.get("thinking_tokens"), int):
            self._usage["thinking_tokens"] = details["thinking_tokens"]

    def _finish_frames(self) -> bytes:
        if self._finished:
            return b""
        self._finished = True
        reason = finish_reason(self._stop_reason, has_tool_calls=self._next_slot > 0,
                               legacy_functions=self._legacy)
        return (self._prefix + b'{},"logprobs":null,"finish_reason":' + _dumps(reason).encode() + b"}]"
                + self._tail)

    def _end_frames(self) -> bytes:
        self.done = True
        out = b""
        if self.include_usage:
            out += self._envelope + b'"choices":[],"usage":' + _dumps(self.usage()).encode() + b"}\n\n"
        return out + DONE_FRAME

    # --- event handlers ------------------------------------------------------------------------

    def _message_start(self, data: Mapping[str, Any]) -> bytes:
        message = data.get("message") or {}
        if self._started:  # a pause_turn continuation: same completion, usage summed
            for key, value in self._usage.items():
                self._base[key] = self._base.get(key, 0) + value
            self._usage = {}
            self._finished = False
            self._take_usage(message.get("usage"))
            return b""
        self._started = True
        if self.completion_id is None:
            self.completion_id = f"chatcmpl-{message.get('id') or 'unknown'}"
        envelope = _dumps({"id": self.completion_id, "object": "chat.completion.chunk",
                           "created": self.created, "model": self.model, "system_fingerprint": None})
        self._envelope = b"data: " + envelope[:-1].encode() + b","
        self._prefix = self._envelope + b'"choices":[{"index":0,"delta":'
        self._take_usage(message.get("usage"))
        return self._chunk({"role": "assistant", "content": ""})

    def _block_start(self, data: Mapping[str, Any]) -> bytes:
        index, block = data["index"], data.get("content_block") or {}
        btype = block.get("type")
        if btype == "text":
            self._kinds[index] = "text"
            text = block.get("text")
            return self._chunk({"content": text}) if isinstance(text, str) and text else b""
        if btype == "tool_use":
            self._kinds[index] = "tool"
            slot = self._next_slot
            self._next_slot += 1
            self._slots[index] = slot
            self._args[slot] = 0
            tool_id = self._id_map.get(block["id"], block["id"])
            if self._store is not None and self._pending_thinking:
                self._store.put(tool_id, self._pending_thinking, now=self._now)
            self._pending_thinking = []
            name = self._name_map.get(block["name"], block["name"])
            if self._legacy:
                return self._chunk({"function_call": {"name": name, "arguments": ""}}) if slot == 0 else b""
            return self._chunk({"tool_calls": [{"index": slot, "id": tool_id, "type": "function",
                                                "function": {"name": name, "arguments": ""}}]})
        if btype in ("thinking", "redacted_thinking"):
            self._kinds[index] = "thinking"
            if self._store is not None:
                self._thinking[index] = {"block": dict(block), "parts": []}
            return b""
        self._kinds[index] = "other"  # server_tool_use, *_tool_result, fallback, ...: never to the client
        return b""

    def _block_delta(self, data: Mapping[str, Any]) -> bytes:
        index, delta = data["index"], data.get("delta") or {}
        kind, dtype = self._kinds.get(index), delta.get("type")
        if dtype == "text_delta" and kind == "text":
            text = delta.get("text")
            return self._chunk({"content": text}) if isinstance(text, str) and text else b""
        if dtype == "input_json_delta" and kind == "tool":
            part = delta.get("partial_json")
            if not isinstance(part, str) or not part:
                return b""
            slot = self._slots[index]
            self._args[slot] += len(part)
            if self._legacy:
                return self._chunk({"function_call": {"arguments": part}}) if slot == 0 else b""
            return self._chunk({"tool_calls": [{"index": slot, "function": {"arguments": part}}]})
        if kind == "thinking":
            pending = self._thinking.get(index)
            if dtype == "thinking_delta" and isinstance(delta.get("thinking"), str):
                if pending is not None:
                    pending["parts"].append(delta["thinking"])
                if self.expose_reasoning and delta["thinking"]:
                    return self._chunk({"reasoning_content": delta["thinking"]})
            elif dtype == "signature_delta" and pending is not None:
                signature = delta.get("signature")
                if isinstance(signature, str):
                    pending["block"]["signature"] = pending["block"].get("signature", "") + signature
        return b""

    def _block_stop(self, data: Mapping[str, Any]) -> bytes:
        index = data["index"]
        kind = self._kinds.pop(index, None)
        if kind == "thinking":
            pending = self._thinking.pop(index, None)
            if pending is not None:
                block = pending["block"]
                if block.get("type") == "thinking":
                    block["thinking"] = block.get("thinking", "") + "".join(pending["parts"])
                self._pending_thinking.append(block)
            return b""
        if kind == "tool":
            slot = self._slots.pop(index)
            if self._args.pop(slot) == 0 and not (self._legacy and slot > 0):
                if self._legacy:
                    return self._chunk({"function_call": {"arguments": "{}"}})
                return self._chunk({"tool_calls": [{"index": slot, "function": {"arguments": "{}"}}]})
        return b""

    def _message_delta(self, data: Mapping[str, Any]) -> bytes:
        delta = data.get("delta") or {}
        self._take_usage(data.get("usage"))
        self._stop_reason = delta.get("stop_reason")
        if self._stop_reason == "pause_turn":
            self.paused = True
            return b""
        self.paused = False
        return self._finish_frames()

    def _message_stop(self, data: Mapping[str, Any]) -> bytes:
        if self.paused:
            return b""  # the server may continue; close() finishes otherwise
        return self._finish_frames() + self._end_frames()

    def _error(self, data: Mapping[str, Any]) -> bytes:
        return self._fail(stream_error_to_openai(data))


_HANDLERS = {
    "message_start": StreamTranslator._message_start,
    "content_block_start": StreamTranslator._block_start,
    "content_block_delta": StreamTranslator._block_delta,
    "content_block_stop": StreamTranslator._block_stop,
    "message_delta": StreamTranslator._message_delta,
    "message_stop": StreamTranslator._message_stop,
    "error": StreamTranslator._error,
}
