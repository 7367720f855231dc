"""Pure SSE framing for the local upstream: a finished message as the Messages API streams it.

The order is the API's: ``message_start`` → for each block ``content_block_start``
(a ``ping`` follows the first one), its deltas and ``content_block_stop`` →
``message_delta`` (stop reason, cumulative usage) → ``message_stop``.  Text and
thinking are split into chunks of about four tokens, tool input JSON into
12-character ``input_json_delta`` pieces, and a thinking block ends with its
``signature_delta``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from typing import Any

from ._local_model import chunk_text


def _delta(index: int, delta: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    return "content_block_delta", {"type": "content_block_delta", "index": index, "delta": delta}


def message_events(message: Mapping[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """The SSE events (name, data) that stream ``message``, in the Messages API's order.

    ``message_start`` → per block ``content_block_start`` (a ``ping`` after the
    first), its deltas (``text_delta``, ``thinking_delta`` + ``signature_delta``,
    ``input_json_delta``) and ``content_block_stop`` → ``message_delta`` (stop
    reason and cumulative usage) → ``message_stop``.
    """
    u = message["usage"]
    start = {**message, "content": [], "stop_reason": None, "stop_sequence": None,
             "usage": {**u, "output_tokens": 1, "output_tokens_details": None}}
    yield "message_start", {"type": "message_start", "message": start}
    for index, block in enumerate(message["content"]):
        kind = block["type"]
        first: dict[str, Any]
        if kind == "text":
            first = {"type": "text", "text": ""}
        elif kind == "thinking":
            first = {"type": "thinking", "thinking": "", "signature": ""}
        else:
            first = {**block, "input": {}}
        yield "content_block_start", {"type": "content_block_start", "index": index, "content_block": first}
        if index == 0:
            yield "ping", {"type": "ping"}
        if kind == "text":
            for piece in chunk_text(block["text"]):
                yield _delta(index, {"type": "text_delta", "text": piece})
        elif kind == "thinking":
            for piece in chunk_text(block["thinking"]):
                yield _delta(index, {"type": "thinking_delta", "thinking": piece})
            yield _delta(index, {"type": "signature_delta", "signature": block["signature"]})
        else:
            raw = json.dumps(block["input"], separators=(",", ":"))
            for i in range(0, len(raw), 12):
                yield _delta(index, {"type": "input_json_delta", "partial_json": raw[i:i + 12]})
        yield "content_block_stop", {"type": "content_block_stop", "index": index}
    if not message["content"]:
        yield "ping", {"type": "ping"}
    delta_usage = {k: u[k] for k in ("input_tokens", "cache_creation_input_tokens", "cache_read_input_tokens",
                                     "output_tokens", "output_tokens_details", "server_tool_use")}
    yield "message_delta", {"type": "message_delta",
                            "delta": {"stop_reason": message["stop_reason"],
                                      "stop_sequence": message["stop_sequence"], "stop_details": None,
                                      "container": None},
                            "usage": delta_usage}
    yield "message_stop", {"type": "message_stop"}


def encode_event(name: str, data: Mapping[str, Any]) -> bytes:
    """One SSE event as the API frames it: ``event: <name>\\ndata: <json>\\n\\n``."""
    return f"event: {name}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n".encode()
