"""OpenAI ``messages`` -> Anthropic ``system`` + alternating ``messages`` (spec §1.2).

Strategy: one pass turns every OpenAI message into blocks on a *side* (system, user, assistant);
tool and function results are user-side blocks kept in a separate list so that, when consecutive
user-side messages merge into one turn, every ``tool_result`` comes first (Anthropic's rule).
A second pass checks the rules Anthropic enforces that we can check cheaply (non-empty turns,
tool_use/tool_result pairing, prefill) so a request it would refuse is refused here with a
``param`` pointing at the message.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass, field
from typing import Any

from ..protocol.encoding import loads_bounded
from ._util import bad, parse_data_url, sanitize_id, sanitize_name, unsupported
from .models import ModelInfo
from .types import AnthropicMessage, Block

__all__ = ["PREFILL_MESSAGE", "ConvertedMessages", "convert_messages"]

IMAGE_TYPES = frozenset({"image/jpeg", "image/png", "image/gif", "image/webp"})
PREFILL_MESSAGE = ("This model does not support assistant message prefill. "
                   "The conversation must end with a user message.")


@dataclass
class _Turn:
    role: str
    index: int
    results: list[Block] = field(default_factory=list)
    content: list[Block] = field(default_factory=list)
    tool_ids: list[str] = field(default_factory=list)  # tool_use ids (sanitised) of an assistant turn
    thinking: list[Block] | None = None  # explicit ``thinking_blocks`` extension


@dataclass
class ConvertedMessages:
    """Result of ``convert_messages``: the Anthropic ``system`` and ``messages`` plus bookkeeping."""

    system: list[Block]
    messages: list[AnthropicMessage]
    tool_id_map: dict[str, str]
    tool_name_map: dict[str, str]
    #: per Anthropic message index: the (sanitised) tool_use ids of assistant turns
    assistant_tool_ids: dict[int, list[str]]
    #: assistant message indexes whose thinking came from the ``thinking_blocks`` extension
    explicit_thinking: set[int]
    #: index of the assistant turn of an open tool loop (last assistant turn answered by the final
    #: user turn's tool results), else None
    open_loop: int | None


class _Ctx:
    def __init__(self) -> None:
        self.id_map: dict[str, str] = {}
        self.name_map: dict[str, str] = {}
        self.fn_counter = 0
        self.fn_pending: dict[str, str] = {}  # legacy function name -> synthesised id

    def tool_id(self, original: str) -> str:
        clean = sanitize_id(original)
        if clean != original:
            self.id_map[clean] = original
        return clean

    def tool_name(self, original: str) -> str:
        clean = sanitize_name(original)
        if clean != original:
            self.name_map[clean] = original
        return clean


def _text_parts(content: Any, param: str, allowed: frozenset[str]) -> list[str]:
    """Texts of a string or a list of parts; parts of a type outside ``allowed`` are skipped."""
    if content is None:
        return []
    if isinstance(content, str):
        return [content]
    if not isinstance(content, list):
        raise bad("content must be a string or an array of content parts", param)
    out: list[str] = []
    for j, part in enumerate(content):
        if not isinstance(part, dict):
            raise bad("content part must be an object", f"{param}[{j}]")
        kind = part.get("type")
        if kind == "text":
            text = part.get("text")
            if not isinstance(text, str):
                raise bad("text part needs a string `text`", f"{param}[{j}].text")
            out.append(text)
        elif kind not in allowed:
            raise unsupported(f"content part type {kind!r} is not supported here", f"{param}[{j}]")
    return out


def _image(part: dict[str, Any], param: str) -> Block:
    spec = part.get("image_url")
    url = spec.get("url") if isinstance(spec, dict) else spec
    if not isinstance(url, str) or not url:
        raise bad("image_url.url must be a non-empty string", f"{param}.image_url.url")
    data = parse_data_url(url)
    if data is not None:
        mime, is_b64, payload = data
        if mime not in IMAGE_TYPES or not is_b64 or not payload:
            raise unsupported("image data URLs must be base64 image/jpeg, image/png, image/gif or image/webp",
                              param)
        return {"type": "image", "source": {"type": "base64", "media_type": mime, "data": payload}}
    if url.startswith(("https://", "http://")):
        return {"type": "image", "source": {"type": "url", "url": url}}
    raise unsupported("image_url.url must be an http(s) URL or a base64 data URL", param)


def _file(part: dict[str, Any], param: str) -> Block:
    spec = part.get("file")
    if not isinstance(spec, dict):
        raise bad("file part needs a `file` object", param)
    if spec.get("file_id") is not None:
        raise unsupported("file_id is not supported: send the file inline as file_data", param)
    data, name = spec.get("file_data"), spec.get("filename")
    if not isinstance(data, str) or not data:
        raise bad("file.file_data must be a data URL", f"{param}.file.file_data")
    parsed = parse_data_url(data)
    if parsed is None and isinstance(name, str) and name.lower().endswith(".pdf"):
        parsed = ("application/pdf", True, data)
    if parsed is None or not parsed[1] or not parsed[2]:
        raise unsupported("file.file_data must be a base64 data URL", f"{param}.file.file_data")
    mime, _, payload = parsed
    if mime == "application/pdf":
        block: Block = {"type": "document",
                        "source": {"type": "base64", "media_type": "application/pdf", "data": payload}}
    elif mime == "text/plain":
        try:
            text = base64.b64decode(payload, validate=True).decode("utf-8")
        except (binascii.Error, ValueError) as exc:
            raise bad("file_data is not valid base64 UTF-8 text", f"{param}.file.file_data") from exc
        block = {"type": "document", "source": {"type": "text", "media_type": "text/plain", "data": text}}
    else:
        raise unsupported(f"file type {mime!r} is not supported (application/pdf, text/plain)", param)
    if isinstance(name, str) and name:
        block["title"] = name
    return block


def _user_blocks(content: Any, param: str) -> list[Block]:
    if isinstance(content, str):
        if not content.strip():
            raise bad("user message content must be non-empty", param)
        return [{"type": "text", "text": content}]
    if not isinstance(content, list):
        raise bad("content must be a string or an array of content parts", param)
    blocks: list[Block] = []
    for j, part in enumerate(content):
        p = f"{param}[{j}]"
        if not isinstance(part, dict):
            raise bad("content part must be an object", p)
        kind = part.get("type")
        if kind == "text":
            text = part.get("text")
            if not isinstance(text, str):
                raise bad("text part needs a string `text`", f"{p}.text")
            if text.strip():
                block: Block = {"type": "text", "text": text}
                if isinstance(part.get("cache_control"), dict):
                    block["cache_control"] = part["cache_control"]
                blocks.append(block)
        elif kind == "image_url":
            blocks.append(_image(part, p))
        elif kind == "file":
            blocks.append(_file(part, p))
        elif kind == "input_audio":
            raise unsupported("audio input is not supported", p)
        else:
            raise unsupported(f"content part type {kind!r} is not supported", p)
    if not blocks:
        raise bad("user message content must be non-empty", param)
    return blocks


def _tool_use(call: Any, param: str, ctx: _Ctx) -> Block:
    if not isinstance(call, dict):
        raise bad("tool call must be an object", param)
    if call.get("type", "function") != "function":
        raise unsupported("only function tool calls are supported", f"{param}.type")
    fn, cid = call.get("function"), call.get("id")
    if not isinstance(cid, str) or not cid:
        raise bad("tool call needs a non-empty string `id`", f"{param}.id")
    if not isinstance(fn, dict) or not isinstance(fn.get("name"), str) or not fn["name"]:
        raise bad("tool call needs `function.name`", f"{param}.function.name")
    return {"type": "tool_use", "id": ctx.tool_id(cid), "name": ctx.tool_name(fn["name"]),
            "input": _arguments(fn.get("arguments"), f"{param}.function.arguments")}


def _arguments(raw: Any, param: str) -> dict[str, Any]:
    if raw is None or (isinstance(raw, str) and not raw.strip()):
        return {}
    if not isinstance(raw, str):
        raise bad("function.arguments must be a JSON string", param)
    try:
        value = loads_bounded(raw)
    except ValueError as exc:
        raise bad(f"function.arguments is not valid JSON: {exc}", param) from exc
    if not isinstance(value, dict):
        raise bad("function.arguments must encode a JSON object", param)
    return value


def _assistant(msg: dict[str, Any], i: int, ctx: _Ctx) -> _Turn:
    param = f"messages[{i}]"
    turn = _Turn("assistant", i)
    for text in _text_parts(msg.get("content"), f"{param}.content", frozenset({"refusal"})):
        if text.strip():
            turn.content.append({"type": "text", "text": text})
    calls = msg.get("tool_calls")
    if calls is not None:
        if not isinstance(calls, list):
            raise bad("tool_calls must be an array", f"{param}.tool_calls")
        for j, call in enumerate(calls):
            block = _tool_use(call, f"{param}.tool_calls[{j}]", ctx)
            turn.content.append(block)
            turn.tool_ids.append(block["id"])
    legacy = msg.get("function_call")
    if legacy is not None:
        if not isinstance(legacy, dict) or not isinstance(legacy.get("name"), str) or not legacy["name"]:
            raise bad("function_call needs a `name`", f"{param}.function_call")
        ctx.fn_counter += 1
        cid = f"call_{ctx.fn_counter}"
        ctx.fn_pending[legacy["name"]] = cid
        turn.content.append({"type": "tool_use", "id": cid, "name": ctx.tool_name(legacy["name"]),
                             "input": _arguments(legacy.get("arguments"),
                                                 f"{param}.function_call.arguments")})
        turn.tool_ids.append(cid)
    blocks = msg.get("thinking_blocks")
    if isinstance(blocks, list) and blocks and turn.tool_ids:
        kinds = ("thinking", "redacted_thinking")
        if not all(isinstance(b, dict) and b.get("type") in kinds for b in blocks):
            raise bad("thinking_blocks must be thinking or redacted_thinking blocks",
                      f"{param}.thinking_blocks")
        turn.thinking = [dict(b) for b in blocks]
    return turn


def _tool_result(msg: dict[str, Any], i: int, ctx: _Ctx) -> Block:
    param = f"messages[{i}]"
    if msg["role"] == "function":
        name = msg.get("name")
        if not isinstance(name, str) or name not in ctx.fn_pending:
            raise bad("function message does not answer a preceding assistant function_call", f"{param}.name")
        use_id = ctx.fn_pending.pop(name)
    else:
        cid = msg.get("tool_call_id")
        if not isinstance(cid, str) or not cid:
            raise bad("tool message needs a non-empty string `tool_call_id`", f"{param}.tool_call_id")
        use_id = ctx.tool_id(cid)
    block: Block = {"type": "tool_result", "tool_use_id": use_id}
    content = msg.get("content")
    if isinstance(content, str):
        if content:
            block["content"] = content
    else:
        texts = [t for t in _text_parts(content, f"{param}.content", frozenset()) if t.strip()]
        if texts:
            block["content"] = [{"type": "text", "text": t} for t in texts]
    return block


def convert_messages(raw: Any, model: ModelInfo) -> ConvertedMessages:
    """Map the OpenAI ``messages`` array (§1.2).

    Args:
        raw: the request's ``messages`` value (validated here).
        model: the resolved model (decides whether a final assistant turn is a valid prefill).
    Returns:
        ``ConvertedMessages``.
    Raises:
        ConversionError: 400 with ``param`` set to the offending message or part.
    """
    if not isinstance(raw, list) or not raw:
        raise bad("messages must be a non-empty array", "messages")
    ctx = _Ctx()
    system: list[Block] = []
    turns: list[_Turn] = []
    for i, msg in enumerate(raw):
        if not isinstance(msg, dict):
            raise bad("each message must be an object", f"messages[{i}]")
        role = msg.get("role")
        if role in ("system", "developer"):
            for text in _text_parts(msg.get("content"), f"messages[{i}].content", frozenset()):
                if text.strip():
                    system.append({"type": "text", "text": text})
            continue
        if role == "assistant":
            turn = _assistant(msg, i, ctx)
            if not turn.content:
                continue  # nothing to send: DROP, neighbours merge
            if turns and turns[-1].role == "assistant":
                if turn.thinking and not turns[-1].thinking:
                    turns[-1].thinking = turn.thinking
                turns[-1].content.extend(turn.content)
                turns[-1].tool_ids.extend(turn.tool_ids)
            else:
                turns.append(turn)
            continue
        if role == "user":
            blocks, results = _user_blocks(msg.get("content"), f"messages[{i}].content"), []
        elif role in ("tool", "function"):
            blocks, results = [], [_tool_result(msg, i, ctx)]
        else:
            raise bad(f"unknown message role {role!r}", f"messages[{i}].role")
        if not turns or turns[-1].role != "user":
            turns.append(_Turn("user", i))
        turns[-1].results.extend(results)
        turns[-1].content.extend(blocks)
    if not turns:
        raise bad("messages must contain at least one user or assistant message", "messages")
    _check_pairing(turns)
    _handle_prefill(turns, model)
    return _assemble(system, turns, ctx)


def _check_pairing(turns: list[_Turn]) -> None:
    """tool_use ids must be answered in the next turn; tool_results must answer the previous turn."""
    for k, turn in enumerate(turns):
        if turn.role == "assistant" and turn.tool_ids and k + 1 < len(turns):
            answered = {b["tool_use_id"] for b in turns[k + 1].results}
            missing = [t for t in turn.tool_ids if t not in answered]
            if missing:
                raise bad(f"assistant tool_calls {missing} are not answered by tool messages right "
                          "after them",
                          f"messages[{turn.index}].tool_calls")
        if turn.role == "user" and turn.results:
            asked = set(turns[k - 1].tool_ids) if k > 0 else set()
            for b in turn.results:
                if b["tool_use_id"] not in asked:
                    raise bad(f"tool result {b['tool_use_id']!r} does not answer a tool call of the "
                              "preceding assistant message", f"messages[{turn.index}]")


def _handle_prefill(turns: list[_Turn], model: ModelInfo) -> None:
    last = turns[-1]
    if last.role != "assistant":
        return
    if last.tool_ids:
        raise bad("the last assistant message has tool_calls without tool messages answering them",
                  f"messages[{last.index}].tool_calls")
    if not model.prefill:
        raise bad(PREFILL_MESSAGE, f"messages[{last.index}]", "unsupported_value")
    # Anthropic: "final assistant content cannot end with trailing whitespace" (pitfall 2)
    tail = last.content[-1]
    if tail.get("type") == "text":
        tail["text"] = tail["text"].rstrip()


def _assemble(system: list[Block], turns: list[_Turn], ctx: _Ctx) -> ConvertedMessages:
    messages: list[AnthropicMessage] = []
    tool_ids: dict[int, list[str]] = {}
    explicit: set[int] = set()
    for k, turn in enumerate(turns):
        if turn.role == "assistant":
            content = turn.content
            if turn.tool_ids:
                tool_ids[k] = turn.tool_ids
            if turn.thinking:
                content = turn.thinking + content
                explicit.add(k)
            messages.append({"role": "assistant", "content": content})
        else:
            messages.append({"role": "user", "content": turn.results + turn.content})
    open_loop = None
    if len(turns) >= 2 and turns[-1].role == "user" and turns[-1].results:
        open_loop = len(turns) - 2
    return ConvertedMessages(system, messages, ctx.id_map, ctx.name_map, tool_ids, explicit, open_loop)
