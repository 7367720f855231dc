"""Test helpers for convert/: upstream fixtures, SSE framing, and the openai SDK as the oracle.

The openai SDK parses what we produce exactly as a client would: a real ``OpenAI`` client whose
``httpx2`` transport is a ``MockTransport`` that answers with our bytes.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import Any

import httpx2
import openai
from openai.types.chat import ChatCompletion, ChatCompletionChunk

from mpp_claude.convert import (
    MessageAccumulator,
    MessagesRequest,
    SseParser,
    StreamTranslator,
    chat_request_to_messages,
)

Event = tuple[str, dict[str, Any]]
MODEL = "claude-haiku-4-5"


def req(messages: list[dict[str, Any]] | None = None, /, **fields: Any) -> MessagesRequest:
    """Map a request for ``MODEL`` (override with ``model=``) with one user message by default."""
    body: dict[str, Any] = {"model": MODEL, "messages": messages or [{"role": "user", "content": "Hi"}]}
    body.update(fields)
    return chat_request_to_messages(body)


def user(text: str = "Hi") -> dict[str, Any]:
    return {"role": "user", "content": text}


def message(
    content: list[dict[str, Any]],
    stop_reason: str | None = "end_turn",
    usage: dict[str, Any] | None = None,
    msg_id: str = "msg_01",
) -> dict[str, Any]:
    """An Anthropic message as the Messages API returns it."""
    return {
        "id": msg_id,
        "type": "message",
        "role": "assistant",
        "model": MODEL,
        "content": content,
        "stop_reason": stop_reason,
        "stop_sequence": None,
        "usage": usage or {"input_tokens": 10, "output_tokens": 5},
    }


def events_for(msg: dict[str, Any], *, split: int = 3, ping: bool = True) -> list[Event]:
    """The SSE events Anthropic would stream for ``msg`` (text and JSON cut into ``split``-char pieces)."""
    usage = dict(msg["usage"])
    start_usage = {k: v for k, v in usage.items() if k != "output_tokens"} | {"output_tokens": 1}
    out: list[Event] = [
        (
            "message_start",
            {
                "type": "message_start",
                "message": {**msg, "content": [], "stop_reason": None, "usage": start_usage},
            },
        )
    ]
    if ping:
        out.append(("ping", {"type": "ping"}))

    def pieces(text: str) -> list[str]:
        return [text[i : i + split] for i in range(0, len(text), split)]

    for i, block in enumerate(msg["content"]):
        kind = block["type"]
        if kind == "text":
            out.append(
                (
                    "content_block_start",
                    {
                        "type": "content_block_start",
                        "index": i,
                        "content_block": {"type": "text", "text": ""},
                    },
                )
            )
            deltas = [{"type": "text_delta", "text": p} for p in pieces(block["text"])]
        elif kind in ("tool_use", "server_tool_use"):
            out.append(
                (
                    "content_block_start",
                    {"type": "content_block_start", "index": i, "content_block": {**block, "input": {}}},
                )
            )
            raw = json.dumps(block["input"]) if block["input"] else ""
            deltas = [{"type": "input_json_delta", "partial_json": p} for p in pieces(raw)]
        elif kind == "thinking":
            out.append(
                (
                    "content_block_start",
                    {
                        "type": "content_block_start",
                        "index": i,
                        "content_block": {"type": "thinking", "thinking": "", "signature": ""},
                    },
                )
            )
            deltas = [{"type": "thinking_delta", "thinking": p} for p in pieces(block["thinking"])]
            deltas.append({"type": "signature_delta", "signature": block["signature"]})
        else:
            out.append(
                ("content_block_start", {"type": "content_block_start", "index": i, "content_block": block})
            )
            deltas = []
        out.extend(
            ("content_block_delta", {"type": "content_block_delta", "index": i, "delta": d}) for d in deltas
        )
        out.append(("content_block_stop", {"type": "content_block_stop", "index": i}))
    out.append(
        (
            "message_delta",
            {
                "type": "message_delta",
                "delta": {"stop_reason": msg["stop_reason"], "stop_sequence": None},
                "usage": {"output_tokens": usage["output_tokens"]},
            },
        )
    )
    out.append(("message_stop", {"type": "message_stop"}))
    return out


def sse(events: Iterable[Event]) -> bytes:
    """Frame events the way Anthropic does (``event:`` + ``data:`` lines)."""
    return b"".join(f"event: {name}\ndata: {json.dumps(data)}\n\n".encode() for name, data in events)


def translate(events: Sequence[Event], *, step: int = 17, close: bool = True, **kwargs: Any) -> bytes:
    """Run upstream SSE bytes through ``SseParser`` (fed ``step`` bytes at a time) and a translator."""
    kwargs.setdefault("model", MODEL)
    kwargs.setdefault("created", 1_700_000_000)
    translator = StreamTranslator(**kwargs)
    parser = SseParser()
    raw = sse(events)
    out = b""
    for i in range(0, len(raw), step):
        for event in parser.feed(raw[i : i + step]):
            out += translator.feed(event)
    for event in parser.flush():
        out += translator.feed(event)
    if close:
        out += translator.close()
    return out


def accumulate(events: Sequence[Event]) -> dict[str, Any]:
    """Fold events into the Anthropic message with ``MessageAccumulator``."""
    acc = MessageAccumulator()
    parser = SseParser()
    for event in parser.feed(sse(events)):
        acc.feed(event)
    return acc.message()


def _client(handler: Any) -> openai.OpenAI:
    return openai.OpenAI(
        api_key="x",
        base_url="http://proxy.test/v1",
        max_retries=0,
        http_client=httpx2.Client(transport=httpx2.MockTransport(handler)),
    )


def sdk_stream(body: bytes) -> list[ChatCompletionChunk]:
    """Parse our SSE bytes with the openai SDK's own streaming iterator."""

    def handler(request: httpx2.Request) -> httpx2.Response:
        return httpx2.Response(200, headers={"content-type": "text/event-stream"}, content=body)

    with _client(handler) as client:
        stream = client.chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": "Hi"}], stream=True
        )
        return list(stream)


def sdk_completion(payload: dict[str, Any]) -> ChatCompletion:
    """Validate a non-streaming answer as the SDK type."""
    return ChatCompletion.model_validate(payload)


def concat(chunks: Sequence[ChatCompletionChunk]) -> dict[str, Any]:
    """Reassemble streamed chunks the way SDK users do: content, tool calls by index, finish, usage."""
    content: list[str] = []
    calls: dict[int, dict[str, Any]] = {}
    finish: list[str] = []
    usage = None
    ids = {c.id for c in chunks}
    for chunk in chunks:
        if chunk.usage is not None:
            usage = chunk.usage.model_dump()
        for choice in chunk.choices:
            if choice.delta.content:
                content.append(choice.delta.content)
            for tc in choice.delta.tool_calls or []:
                slot = calls.setdefault(tc.index, {"id": None, "name": None, "arguments": ""})
                if tc.id:
                    slot["id"] = tc.id
                if tc.function and tc.function.name:
                    slot["name"] = tc.function.name
                if tc.function and tc.function.arguments:
                    slot["arguments"] += tc.function.arguments
            if choice.finish_reason:
                finish.append(choice.finish_reason)
    return {
        "content": "".join(content),
        "tool_calls": [calls[k] for k in sorted(calls)],
        "finish": finish,
        "usage": usage,
        "ids": ids,
    }


def frames(body: bytes) -> list[Any]:
    """Split our SSE output into decoded ``data:`` payloads (``"[DONE]"`` kept as a string)."""
    out: list[Any] = []
    for block in body.decode().split("\n\n"):
        if not block:
            continue
        assert block.startswith("data: "), block
        data = block[len("data: ") :]
        out.append(data if data == "[DONE]" else json.loads(data))
    return out
