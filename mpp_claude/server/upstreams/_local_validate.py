"""Pure request validation for the local upstream, with the Messages API's statuses and wording.

Checks what the real API rejects most often (conversion doc §5): missing or
wrong-typed fields, unknown fields, bad roles, empty text blocks, trailing
whitespace in a final assistant turn, stop sequences without non-whitespace,
out-of-range sampling values, thinking budgets, unpaired tool_use/tool_result
blocks, tool blocks without ``tools``, unknown models (404).  Model-specific
rules (sampling parameters rejected on newer models, forced tool use, prefill)
are not imitated.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

MODELS: Mapping[str, int] = {
    "claude-haiku-4-5": 64000, "claude-haiku-4-5-20251001": 64000,
    "claude-sonnet-4-5": 64000, "claude-sonnet-4-5-20250929": 64000,
    "claude-opus-4-5": 64000, "claude-opus-4-5-20251101": 64000,
    "claude-sonnet-4-6": 64000, "claude-opus-4-6": 128000,
    "claude-opus-4-7": 128000, "claude-opus-4-8": 128000,
    "claude-sonnet-5": 128000, "claude-opus-5": 128000,
    "claude-sonnet-5-5": 128000, "claude-opus-5-5": 128000, "claude-haiku-5-5": 64000,
    "claude-fable-5": 128000, "claude-fable-5-1": 128000,
    "claude-mythos-5": 128000, "claude-mythos-5-1": 128000,
}
"""Model ids the local upstream serves, with their maximum output tokens."""

_FIELDS = frozenset({
    "model", "messages", "max_tokens", "system", "metadata", "stop_sequences", "stream", "temperature",
    "top_p", "top_k", "tools", "tool_choice", "thinking", "service_tier", "container", "mcp_servers",
    "output_config", "output_format", "context_management", "inference_geo", "cache_control",
})
_BLOCK_TYPES = frozenset({"text", "image", "document", "tool_use", "tool_result", "thinking",
                          "redacted_thinking", "search_result", "server_tool_use",
                          "web_search_tool_result", "container_upload"})
_TOOL_NAME = re.compile(r"^[a-zA-Z0-9_-]{1,128}$")


class LocalApiError(Exception):
    """A request the real API would refuse: rendered as Anthropic's error object."""

    def __init__(self, status: int, error_type: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.error_type = error_type
        self.message = message


def _bad(message: str) -> LocalApiError:
    return LocalApiError(400, "invalid_request_error", message)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _number(body: Mapping[str, Any], name: str, low: float, high: float) -> None:
    if name not in body or body[name] is None:
        return
    value = body[name]
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _bad(f"{name}: Input should be a valid number")
    if value < low:
        raise _bad(f"{name}: Input should be greater than or equal to {low:g}")
    if value > high:
        raise _bad(f"{name}: Input should be less than or equal to {high:g}")


def _content(i: int, message: Mapping[str, Any], last: bool) -> list[Mapping[str, Any]]:
    content = message.get("content")
    where = f"messages.{i}.content"
    if content is None:
        raise _bad(f"{where}: Field required")
    if isinstance(content, str):
        if not content:
            raise _bad("messages: text content blocks must be non-empty")
        blocks: list[Mapping[str, Any]] = [{"type": "text", "text": content}]
    elif isinstance(content, list):
        blocks = []
        for j, block in enumerate(content):
            if not isinstance(block, Mapping) or not isinstance(block.get("type"), str):
                raise _bad(f"{where}.{j}: Input should be a valid dictionary")
            if block["type"] not in _BLOCK_TYPES:
                raise _bad(f"{where}.{j}: Input tag '{block['type']}' found using 'type' does not match any "
                           "of the expected tags")
            if block["type"] == "text":
                if not isinstance(block.get("text"), str):
                    raise _bad(f"{where}.{j}.text: Field required")
                if not block["text"]:
                    raise _bad("messages: text content blocks must be non-empty")
                if not block["text"].strip():
                    raise _bad("messages: text content blocks must contain non-whitespace text")
            blocks.append(block)
    else:
        raise _bad(f"{where}: Input should be a valid list")
    if last and message.get("role") == "assistant":
        tail = blocks[-1] if blocks else {}
        if tail.get("type") == "text" and str(tail.get("text", "")).rstrip() != tail.get("text"):
            raise _bad("messages: final assistant content cannot end with trailing whitespace")
    return blocks


def _check_tool_pairs(messages: list[Any], blocks: list[list[Mapping[str, Any]]]) -> None:
    for i, message in enumerate(messages):
        uses = [str(b.get("id")) for b in blocks[i] if b.get("type") == "tool_use"]
        if message["role"] == "assistant" and uses and i + 1 < len(messages):
            answered = {str(b.get("tool_use_id")) for b in blocks[i + 1] if b.get("type") == "tool_result"}
            missing = [u for u in uses if u not in answered]
            if missing:
                raise _bad(f"messages.{i + 1}: `tool_use` ids were found without `tool_result` blocks "
                           f"immediately after: {', '.join(missing)}. Each `tool_use` block must have a "
                           "corresponding `tool_result` block in the next message.")
        if message["role"] == "user":
            previous = {str(b.get("id")) for b in blocks[i - 1]
                        if b.get("type") == "tool_use"} if i > 0 else set()
            for j, block in enumerate(blocks[i]):
                if block.get("type") == "tool_result" and str(block.get("tool_use_id")) not in previous:
                    raise _bad(f"messages.{i}.content.{j}: unexpected `tool_use_id` found in `tool_result` "
                               f"blocks: {block.get('tool_use_id')}. Each `tool_result` block must have a "
                               "corresponding `tool_use` block in the previous message.")


def _check_tools(body: Mapping[str, Any]) -> list[str]:
    tools = body.get("tools")
    if tools is None:
        return []
    if not isinstance(tools, list):
        raise _bad("tools: Input should be a valid list")
    names = []
    for k, tool in enumerate(tools):
        if not isinstance(tool, Mapping):
            raise _bad(f"tools.{k}: Input should be a valid dictionary")
        name = tool.get("name")
        if not isinstance(name, str) or not _TOOL_NAME.match(name):
            raise _bad(f"tools.{k}.custom.name: String should match pattern '^[a-zA-Z0-9_-]{{1,128}}$'")
        if "type" not in tool or tool.get("type") == "custom":
            schema = tool.get("input_schema")
            if not isinstance(schema, Mapping):
                raise _bad(f"tools.{k}.custom.input_schema: Field required")
            if schema.get("type") != "object":
                raise _bad(f"tools.{k}.custom.input_schema.type: Input should be 'object'")
        names.append(name)
    if len(set(names)) != len(names):
        raise _bad("tools: Tool names must be unique.")
    return names


def _check_tool_choice(body: Mapping[str, Any], names: list[str]) -> None:
    choice = body.get("tool_choice")
    if choice is None:
        return
    if not isinstance(choice, Mapping) or choice.get("type") not in {"auto", "any", "tool", "none"}:
        raise _bad("tool_choice: Input tag found using 'type' does not match any of the expected tags: "
                   "'auto', 'any', 'tool', 'none'")
    if choice["type"] == "tool" and choice.get("name") not in names:
        raise _bad(f"tool_choice.tool.name: tool '{choice.get('name')}' not found in tools")


def _check_thinking(body: Mapping[str, Any], max_tokens: int) -> None:
    thinking = body.get("thinking")
    if thinking is None:
        return
    if not isinstance(thinking, Mapping) or thinking.get("type") not in {"enabled", "disabled", "adaptive"}:
        raise _bad("thinking: Input tag found using 'type' does not match any of the expected tags: "
                   "'enabled', 'disabled', 'adaptive'")
    if thinking["type"] == "enabled":
        budget = thinking.get("budget_tokens")
        if not isinstance(budget, int) or isinstance(budget, bool):
            raise _bad("thinking.enabled.budget_tokens: Field required")
        if budget < 1024:
            raise _bad("thinking.enabled.budget_tokens: Input should be greater than or equal to 1024")
        if max_tokens <= budget:
            raise _bad("`max_tokens` must be greater than `thinking.budget_tokens`. Please consult our "
                       "documentation at https://docs.claude.com/en/docs/build-with-claude/extended-thinking"
                       "#max-tokens-and-context-window-size")


def validate_request(body: Any) -> None:
    """Raise :class:`LocalApiError` where the Messages API would refuse ``body``.

    Raises:
        LocalApiError: 400 ``invalid_request_error`` or 404 ``not_found_error`` (unknown model).
    """
    if not isinstance(body, Mapping):
        raise _bad("Input should be a valid dictionary or object to extract fields from")
    for name in body:
        if name not in _FIELDS:
            raise _bad(f"{name}: Extra inputs are not permitted")
    for name in ("model", "messages", "max_tokens"):
        if name not in body:
            raise _bad(f"{name}: Field required")
    model = body["model"]
    if not isinstance(model, str):
        raise _bad("model: Input should be a valid string")
    max_tokens = body["max_tokens"]
    if not _is_int(max_tokens):
        raise _bad("max_tokens: Input should be a valid integer")
    if max_tokens < 1:
        raise _bad("max_tokens: Input should be greater than or equal to 1")
    if model not in MODELS:
        raise LocalApiError(404, "not_found_error", f"model: {model}")
    if max_tokens > MODELS[model]:
        raise _bad(f"max_tokens: {max_tokens} > {MODELS[model]}, which is the maximum allowed number of "
                   f"output tokens for {model}")
    messages = body["messages"]
    if not isinstance(messages, list):
        raise _bad("messages: Input should be a valid list")
    if not messages:
        raise _bad("messages: List should have at least 1 item after validation, not 0")
    blocks = []
    for i, message in enumerate(messages):
        if not isinstance(message, Mapping):
            raise _bad(f"messages.{i}: Input should be a valid dictionary")
        if message.get("role") not in {"user", "assistant"}:
            raise _bad(f"messages.{i}.role: Input should be 'user' or 'assistant'")
        blocks.append(_content(i, message, i == len(messages) - 1))
    system = body.get("system")
    if system is not None and not isinstance(system, (str, list)):
        raise _bad("system: Input should be a valid string")
    _number(body, "temperature", 0, 1)
    _number(body, "top_p", 0, 1)
    if "top_k" in body and body["top_k"] is not None and (not _is_int(body["top_k"]) or body["top_k"] < 0):
        raise _bad("top_k: Input should be greater than or equal to 0")
    stops = body.get("stop_sequences")
    if stops is not None:
        if not isinstance(stops, list) or not all(isinstance(s, str) for s in stops):
            raise _bad("stop_sequences: Input should be a valid list of strings")
        if any(not s.strip() for s in stops):
            raise _bad("stop_sequences: each stop sequence must contain non-whitespace")
    if "stream" in body and not isinstance(body["stream"], bool):
        raise _bad("stream: Input should be a valid boolean")
    names = _check_tools(body)
    _check_tool_choice(body, names)
    uses_tools = any(b.get("type") in {"tool_use", "tool_result"} for bs in blocks for b in bs)
    if uses_tools and not names:
        raise _bad("Requests which include `tool_use` or `tool_result` blocks must define tools.")
    _check_tool_pairs(messages, blocks)
    _check_thinking(body, max_tokens)
