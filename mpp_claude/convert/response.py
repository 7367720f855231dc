"""Anthropic message -> OpenAI ``chat.completion`` (spec §2), plus the pause_turn helpers.

``finish_reason`` never leaves OpenAI's enum; usage counts cached tokens inside
``prompt_tokens`` as OpenAI does (§2.4).  Server-tool blocks (web search...) never become
``tool_calls``: the client would try to run them (pitfall 25).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from mpp_claude.errors import ConversionError

from .thinking import ThinkingStore, blocks_by_tool_id
from .types import MessagesRequest

__all__ = [
    "FINISH_REASONS",
    "continue_after_pause",
    "finish_reason",
    "map_usage",
    "merge_paused",
    "message_to_chat_completion",
]

#: Anthropic stop_reason -> OpenAI finish_reason (§2.3); anything else -> "stop".
FINISH_REASONS: Mapping[str, str] = {
    "end_turn": "stop", "stop_sequence": "stop", "max_tokens": "length",
    "model_context_window_exceeded": "length", "tool_use": "tool_calls", "pause_turn": "length",
    "refusal": "content_filter", "compaction": "length",
}


def finish_reason(stop_reason: Any, *, has_tool_calls: bool, legacy_functions: bool = False) -> str:
    """Map a ``stop_reason``; ``tool_use`` without a client tool call becomes ``stop``."""
    reason = FINISH_REASONS.get(stop_reason, "stop") if isinstance(stop_reason, str) else "stop"
    if reason == "tool_calls":
        if not has_tool_calls:
            return "stop"
        return "function_call" if legacy_functions else "tool_calls"
    return reason


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


def map_usage(usage: Any) -> dict[str, Any]:
    """Anthropic ``usage`` -> OpenAI ``usage`` (§2.4): prompt = input + cache read + cache write."""
    u = usage if isinstance(usage, Mapping) else {}
    cache_read = _int(u.get("cache_read_input_tokens"))
    cache_write = _int(u.get("cache_creation_input_tokens"))
    prompt = _int(u.get("input_tokens")) + cache_read + cache_write
    completion = _int(u.get("output_tokens"))
    details = u.get("output_tokens_details")
    reasoning = _int(details.get("thinking_tokens")) if isinstance(details, Mapping) else 0
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": {"cached_tokens": cache_read, "cache_write_tokens": cache_write},
        "completion_tokens_details": {"reasoning_tokens": reasoning},
    }


def _invalid(what: str) -> ConversionError:
    return ConversionError(f"upstream answered an invalid message: {what}", status=502, type="server_error",
                           code="upstream_invalid_response")


def message_to_chat_completion(message: Any, *, model: str, created: int,
                               request: MessagesRequest | None = None,
                               expose_reasoning: bool = False, expose_refusal: bool = False,
                               thinking_store: ThinkingStore | None = None, now: float = 0) -> dict[str, Any]:
    """Build the OpenAI ``chat.completion`` object for one Anthropic message.

    Args:
        message: the Anthropic message JSON (``{id, content, stop_reason, usage, ...}``).
        model: the ``model`` value to report (normally the upstream ``message["model"]``).
        created: unix seconds, taken by the server at request start.
        request: the mapped request, for reverse tool id/name maps and legacy ``functions``.
        expose_reasoning: add ``message.reasoning_content`` (concatenated thinking text).
        expose_refusal: put ``stop_details.explanation`` into ``message.refusal``.
        thinking_store: where to keep thinking blocks that preceded tool calls (§1.7).
        now: current time in seconds, for the store.
    Returns:
        a dict that validates as ``openai.types.chat.ChatCompletion``.
    Raises:
        ConversionError: 502 ``upstream_invalid_response`` when ``message`` is not a message.
    """
    if not isinstance(message, Mapping) or not isinstance(message.get("content"), list):
        raise _invalid("no content array")
    id_map = request.tool_id_map if request else {}
    name_map = request.tool_name_map if request else {}
    texts: list[str] = []
    thinking: list[str] = []
    calls: list[dict[str, Any]] = []
    for block in message["content"]:
        if not isinstance(block, Mapping):
            raise _invalid("content block is not an object")
        kind = block.get("type")
        if kind == "text" and isinstance(block.get("text"), str):
            texts.append(block["text"])
        elif kind == "tool_use":
            if not isinstance(block.get("id"), str) or not isinstance(block.get("name"), str):
                raise _invalid("tool_use without id or name")
            calls.append({"id": id_map.get(block["id"], block["id"]), "type": "function",
                          "function": {"name": name_map.get(block["name"], block["name"]),
                                       "arguments": json.dumps(block.get("input") or {}, ensure_ascii=False,
                                                               separators=(",", ":"))}})
        elif kind == "thinking" and isinstance(block.get("thinking"), str):
            thinking.append(block["thinking"])
    if thinking_store is not None:
        for tool_id, blocks in blocks_by_tool_id(message["content"]):
            thinking_store.put(id_map.get(tool_id, tool_id), blocks, now=now)

    legacy = bool(request and request.legacy_functions)
    stop_reason = message.get("stop_reason")
    reason = finish_reason(stop_reason, has_tool_calls=bool(calls), legacy_functions=legacy)
    content = "".join(texts) if texts else (None if calls else "")
    msg: dict[str, Any] = {"role": "assistant", "content": content, "refusal": None}
    if calls and legacy:
        msg["function_call"] = calls[0]["function"]
    elif calls:
        msg["tool_calls"] = calls
    if expose_reasoning and thinking:
        msg["reasoning_content"] = "".join(thinking)
    if expose_refusal and stop_reason == "refusal":
        details = message.get("stop_details")
        explanation = details.get("explanation") if isinstance(details, Mapping) else None
        msg["refusal"] = explanation if isinstance(explanation, str) else None
    msg_id = message.get("id")
    return {
        "id": f"chatcmpl-{msg_id}" if isinstance(msg_id, str) and msg_id else "chatcmpl-unknown",
        "object": "chat.completion",
        "created": created,
        "model": model,
        "choices": [{"index": 0, "message": msg, "logprobs": None, "finish_reason": reason}],
        "usage": map_usage(message.get("usage")),
        "system_fingerprint": None,
        "service_tier": None,
    }


def continue_after_pause(request: MessagesRequest, paused: Mapping[str, Any]) -> dict[str, Any]:
    """The upstream body that continues a ``pause_turn`` answer (§2.3).

    Args:
        request: the mapped request that produced the paused answer.
        paused: the paused Anthropic message (its content is appended as an assistant turn).
    Returns:
        a new Anthropic request body (the original is not modified).
    """
    body: dict[str, Any] = dict(request.body)
    body["messages"] = [*request.body["messages"],
                        {"role": "assistant", "content": list(paused.get("content") or [])}]
    return body


def merge_paused(messages: list[Mapping[str, Any]]) -> dict[str, Any]:
    """Fold the answers of a paused turn and its continuations into one message.

    Content blocks are concatenated, the last ``stop_reason`` wins and usage counts are summed.
    """
    if not messages:
        raise ValueError("merge_paused needs at least one message")
    merged: dict[str, Any] = dict(messages[0])
    merged["content"] = [b for m in messages for b in (m.get("content") or [])]
    merged["stop_reason"] = messages[-1].get("stop_reason")
    usage: dict[str, Any] = {}
    for m in messages:
        for key, value in (m.get("usage") or {}).items():
            if isinstance(value, int) and not isinstance(value, bool):
                usage[key] = usage.get(key, 0) + value
            elif isinstance(value, Mapping) and key == "output_tokens_details":
                inner = usage.setdefault(key, {})
                for k2, v2 in value.items():
                    if isinstance(v2, int):
                        inner[k2] = inner.get(k2, 0) + v2
    merged["usage"] = usage
    return merged
