"""``chat_request_to_messages``: one OpenAI Chat Completions request -> one Anthropic Messages request.

The order of the steps matters: the model decides every later rule; ``max_tokens`` and thinking
come before tools (manual thinking forbids forced tool use) and before sampling (thinking forbids
temperature); the messages come last because re-attaching stored thinking blocks depends on
whether thinking is on.  Every refusal is a ``ConversionError`` with the OpenAI error shape; any
other exception escaping this module is a bug (a Hypothesis test checks it).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from typing import Any

from ._util import bad, is_int, is_number, unsupported
from .messages import ConvertedMessages, convert_messages
from .models import resolve_model
from .reasoning import Reasoning, map_reasoning
from .schema import clean_schema
from .thinking import ThinkingStore
from .tools import map_tools
from .types import AnthropicRequest, Block, ConvertOptions, MessagesRequest

__all__ = ["JSON_OBJECT_INSTRUCTION", "chat_request_to_messages"]

JSON_OBJECT_INSTRUCTION = "Respond with a single valid JSON object and no other text."
_USER_ID_OK = re.compile(r"^[A-Za-z0-9_.:-]{1,256}$")

#: Accepted and not forwarded (listed in x-proxy-ignored-params when set).
_IGNORED = ("presence_penalty", "frequency_penalty", "seed", "logit_bias", "store", "metadata",
            "prediction", "service_tier", "verbosity", "moderation", "prompt_cache_key",
            "prompt_cache_retention", "prompt_cache_options")
#: Fields handled explicitly somewhere in this package.
_KNOWN = frozenset({
    "model", "messages", "stream", "stream_options", "max_tokens", "max_completion_tokens",
    "temperature", "top_p", "top_k", "stop", "n", "logprobs", "top_logprobs", "modalities", "audio",
    "response_format", "reasoning_effort", "thinking", "user", "safety_identifier", "tools", "functions",
    "tool_choice", "function_call", "parallel_tool_calls", "web_search_options", *_IGNORED})


def chat_request_to_messages(body: Any, *, thinking_store: ThinkingStore | None = None, now: float = 0,
                             options: ConvertOptions | None = None) -> MessagesRequest:
    """Map an OpenAI ``POST /v1/chat/completions`` body to an Anthropic ``POST /v1/messages`` body.

    Args:
        body: the decoded JSON request.
        thinking_store: where thinking blocks of earlier tool-use answers were kept (§1.7);
            ``None`` disables re-attachment (then an open tool loop turns thinking off where the
            model allows it).
        now: current time in seconds, for the store's TTL.
        options: deployment switches (``ConvertOptions()`` when omitted).
    Returns:
        ``MessagesRequest``: ``.body`` is the upstream JSON (always ``stream: true``), plus
        ``stream``, ``include_usage``, the resolved model and the ``x-proxy-*`` header lists.
    Raises:
        ConversionError: 400 for a request Claude cannot serve as asked (``param`` names the
            field), 404 ``model_not_found`` for retired or unknown models.
    """
    opts = options or ConvertOptions()
    if not isinstance(body, dict):
        raise bad("request body must be a JSON object", None)
    model = resolve_model(body.get("model"), opts.models)
    upstream_model = body["model"].strip()
    if upstream_model.lower().removeprefix("anthropic/") != upstream_model:
        upstream_model = model.id
    req = MessagesRequest(body=AnthropicRequest(model=upstream_model, messages=[], max_tokens=1, stream=True),
                          model=model, requested_model=body["model"])
    _refuse_unmappable(body)
    req.stream, req.include_usage = _stream_flags(body)
    for name in _IGNORED:
        if body.get(name) is not None:
            req.ignored_params.append(name)
    req.ignored_params.extend(k for k in body if k not in _KNOWN)

    reasoning = map_reasoning(body, model, opts)
    req.ignored_params.extend(reasoning.ignored)
    req.degraded_params.extend(reasoning.degraded)
    tools = map_tools(body, model, manual_thinking=reasoning.manual, lenient=opts.lenient_tool_choice,
                      web_search=opts.web_search_tool if opts.web_search else None)
    req.ignored_params.extend(tools.ignored)
    req.degraded_params.extend(tools.degraded)
    req.legacy_functions = tools.legacy

    converted = convert_messages(body.get("messages"), model)
    requested = body.get("reasoning_effort") is not None or body.get("thinking") is not None
    _thinking_replay(converted, reasoning, thinking_store, now, req, requested)

    out = req.body
    out["max_tokens"] = reasoning.max_tokens
    system = converted.system
    _response_format(body, model, req, system)
    if system:
        out["system"] = system
    out["messages"] = converted.messages
    if tools.tools:
        out["tools"] = tools.tools
    if tools.choice is not None:
        out["tool_choice"] = tools.choice
    if reasoning.thinking is not None:
        out["thinking"] = reasoning.thinking
    if reasoning.effort is not None:
        out.setdefault("output_config", {})["effort"] = reasoning.effort
    req.thinking_active = reasoning.active
    _sampling(body, model.sampling, reasoning.active, opts.strict_mode, req)
    _stop(body, req)
    _user(body, req)
    if opts.auto_cache:
        out["cache_control"] = {"type": "ephemeral"}
    req.tool_id_map = converted.tool_id_map
    req.tool_name_map = {**converted.tool_name_map, **tools.name_map}
    return req


def _refuse_unmappable(body: Mapping[str, Any]) -> None:
    n = body.get("n")
    if n is not None:
        if not is_int(n) or n < 1:
            raise bad("n must be a positive integer", "n")
        if n > 1:
            raise unsupported("n must be 1 for Claude models", "n")
    logprobs = body.get("logprobs")
    if logprobs is not None and not isinstance(logprobs, bool):
        raise bad("logprobs must be a boolean", "logprobs")
    if logprobs:
        raise unsupported("logprobs are not available for Claude models", "logprobs")
    top = body.get("top_logprobs")
    if top is not None and (not is_int(top) or top < 0):
        raise bad("top_logprobs must be a non-negative integer", "top_logprobs")
    if top:
        raise unsupported("logprobs are not available for Claude models", "top_logprobs")
    modalities = body.get("modalities")
    if modalities is not None:
        if not isinstance(modalities, list):
            raise bad("modalities must be an array", "modalities")
        if "audio" in modalities:
            raise unsupported("audio output is not supported", "modalities")
    if body.get("audio") is not None:
        raise unsupported("audio output is not supported", "audio")


def _stream_flags(body: Mapping[str, Any]) -> tuple[bool, bool]:
    stream = body.get("stream")
    if stream is not None and not isinstance(stream, bool):
        raise bad("stream must be a boolean", "stream")
    options = body.get("stream_options")
    if options is not None and not isinstance(options, dict):
        raise bad("stream_options must be an object", "stream_options")
    include = options.get("include_usage") if isinstance(options, dict) else None
    if include is not None and not isinstance(include, bool):
        raise bad("stream_options.include_usage must be a boolean", "stream_options.include_usage")
    return bool(stream), bool(stream and include)


def _thinking_replay(conv: ConvertedMessages, reasoning: Reasoning, store: ThinkingStore | None,
                     now: float, req: MessagesRequest, requested: bool) -> None:
    """Re-attach stored thinking blocks to assistant tool-use turns (§1.7 steps 1, 3, 4)."""
    if not reasoning.active:
        _strip_thinking(conv)  # rule 4: never send thinking blocks to a request without thinking
        return
    for k in conv.assistant_tool_ids:
        if k in conv.explicit_thinking or store is None:
            continue
        rebuilt: list[Block] = []
        first_use = True
        for block in conv.messages[k]["content"]:
            if block.get("type") == "tool_use":
                use_id: str = block["id"]
                hit = store.get(conv.tool_id_map.get(use_id, use_id), now=now)
                if hit and first_use:
                    rebuilt = hit + rebuilt  # the turn must start with thinking, before its text
                elif hit:
                    rebuilt.extend(hit)
                first_use = False
            rebuilt.append(block)
        conv.messages[k]["content"] = rebuilt
    loop = conv.open_loop
    if loop is None:
        return
    first = conv.messages[loop]["content"][0]
    if first.get("type") in ("thinking", "redacted_thinking"):
        return
    # step 3: a miss on the open loop; Anthropic would answer 400 while thinking is on
    if req.model.can_disable_thinking:
        reasoning.thinking, reasoning.effort, reasoning.active = {"type": "disabled"}, None, False
        _strip_thinking(conv)
        req.warnings.append("thinking blocks for the open tool loop are unknown: thinking disabled")
        if requested:
            req.degraded_params.append("reasoning_effort")


def _strip_thinking(conv: ConvertedMessages) -> None:
    for message in conv.messages:
        if message["role"] == "assistant":
            message["content"] = [b for b in message["content"]
                                  if b.get("type") not in ("thinking", "redacted_thinking")]


def _response_format(body: Mapping[str, Any], model: Any, req: MessagesRequest, system: list[Block]) -> None:
    fmt = body.get("response_format")
    if fmt is None:
        return
    kind = fmt.get("type") if isinstance(fmt, dict) else None
    if kind == "text":
        return
    if kind == "json_schema":
        spec = fmt.get("json_schema")
        if not isinstance(spec, dict):
            raise bad("response_format.json_schema must be an object", "response_format.json_schema")
        schema = spec.get("schema")
        if schema is not None:
            if not model.structured_outputs:
                raise unsupported(f"{model.id} does not support structured outputs (json_schema)",
                                  "response_format")
            cleaned = clean_schema(schema, "response_format.json_schema.schema")
            req.body.setdefault("output_config", {})["format"] = {"type": "json_schema", "schema": cleaned}
            return
        kind = "json_object"
    if kind == "json_object":
        system.append({"type": "text", "text": JSON_OBJECT_INSTRUCTION})
        req.degraded_params.append("response_format")
        return
    raise unsupported("response_format.type must be text, json_object or json_schema", "response_format.type")


def _sampling(body: Mapping[str, Any], sampling: str, thinking: bool, strict: bool,
              req: MessagesRequest) -> None:
    """temperature / top_p / top_k with the per-model rules of table 1.1 (§1.4)."""
    values: dict[str, float] = {}
    for name, low, high in (("temperature", 0.0, 2.0), ("top_p", 0.0, 1.0)):
        value = body.get(name)
        if value is None:
            continue
        if not is_number(value) or not low <= value <= high:
            raise bad(f"{name} must be a number between {low:g} and {high:g}", name)
        values[name] = float(value)
    top_k = body.get("top_k")
    if top_k is not None:
        if not is_int(top_k) or top_k < 0:
            raise bad("top_k must be a non-negative integer", "top_k")
        values["top_k"] = float(top_k)
    defaults = {"temperature": 1.0, "top_p": 1.0}

    def drop(name: str, why: str) -> None:
        if strict and values[name] != defaults.get(name):
            raise unsupported(f"Unsupported value: '{name}' {why}. Only the default (1) value is supported.",
                              name)
        if values[name] != defaults.get(name):
            req.warnings.append(f"{name} dropped: {why}")
        req.ignored_params.append(name)

    for name in list(values):
        if sampling == "none":
            drop(name, f"is not supported with {req.model.id}")
        elif thinking and name in ("temperature", "top_k"):
            drop(name, "is not supported while thinking is on")
        elif name == "top_p" and sampling == "exclusive" and "temperature" in values:
            drop(name, f"cannot be combined with temperature on {req.model.id}")
        elif name == "top_k":
            req.body["top_k"] = int(values[name])
        elif name == "top_p" and thinking and values[name] < 0.95:
            req.body["top_p"] = 0.95
            req.degraded_params.append("top_p")
        elif name == "temperature" and values[name] > 1.0:
            if strict:
                raise unsupported("temperature must be between 0 and 1 for Claude models", "temperature")
            req.body["temperature"] = 1.0
            req.degraded_params.append("temperature")
        else:
            req.body[name] = values[name]  # type: ignore[literal-required]


def _stop(body: Mapping[str, Any], req: MessagesRequest) -> None:
    stop = body.get("stop")
    if stop is None:
        return
    items = [stop] if isinstance(stop, str) else stop
    if not isinstance(items, list) or not all(isinstance(s, str) for s in items):
        raise bad("stop must be a string or an array of strings", "stop")
    kept = list(dict.fromkeys(s for s in items if s.strip()))
    if len(kept) != len(items):
        req.warnings.append("empty or whitespace-only stop sequences dropped")
    if kept:
        req.body["stop_sequences"] = kept


def _user(body: Mapping[str, Any], req: MessagesRequest) -> None:
    for name in ("safety_identifier", "user"):
        value = body.get(name)
        if value is None:
            continue
        if not isinstance(value, str):
            raise bad(f"{name} must be a string", name)
        if not value:
            continue
        ok = _USER_ID_OK.match(value) and "@" not in value
        req.body["metadata"] = {"user_id": value if ok else hashlib.sha256(value.encode()).hexdigest()}
        return
