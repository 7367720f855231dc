"""OpenAI ``tools`` / ``tool_choice`` / ``parallel_tool_calls`` / ``functions`` -> Anthropic (§1.3)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ._util import bad, sanitize_name, unsupported
from .models import ModelInfo
from .types import Block

__all__ = ["FORCED_TOOL_MESSAGE", "ToolMapping", "map_tools"]

FORCED_TOOL_MESSAGE = 'tool_choice: type "tool" and "any" are not supported for this model.'
_MAX_STRICT_TOOLS = 20
_SEARCH_USES = {"low": 1, "medium": 5, "high": 10}


@dataclass
class ToolMapping:
    """Anthropic ``tools`` and ``tool_choice`` (either may be absent) plus header bookkeeping."""

    tools: list[Block] = field(default_factory=list)
    choice: Block | None = None
    ignored: list[str] = field(default_factory=list)
    degraded: list[str] = field(default_factory=list)
    name_map: dict[str, str] = field(default_factory=dict)
    legacy: bool = False

    @property
    def forced(self) -> bool:
        """True when the choice forces tool use (``any``/``tool``)."""
        return self.choice is not None and self.choice.get("type") in ("any", "tool")


def _function_tool(fn: Any, param: str, model: ModelInfo, out: ToolMapping) -> Block:
    if not isinstance(fn, dict):
        raise bad("function must be an object", param)
    name = fn.get("name")
    if not isinstance(name, str) or not name:
        raise bad("function.name must be a non-empty string", f"{param}.name")
    clean = sanitize_name(name)
    if clean != name:
        out.name_map[clean] = name
    params = fn.get("parameters")
    if params is None:
        schema: dict[str, Any] = {"type": "object", "properties": {}}
    elif not isinstance(params, dict):
        raise bad("function.parameters must be a JSON Schema object", f"{param}.parameters")
    else:
        if params.get("type", "object") != "object":
            raise bad("function.parameters must describe an object (type: object)", f"{param}.parameters")
        schema = {"type": "object", **{k: v for k, v in params.items() if v is not None}}
        schema.setdefault("properties", {})
    tool: Block = {"name": clean, "input_schema": schema}
    desc = fn.get("description")
    if isinstance(desc, str) and desc:
        tool["description"] = desc
    if fn.get("strict") is True and model.structured_outputs:
        tool["strict"] = True
    return tool


def _named(choice: Any, param: str, names: set[str]) -> str:
    if not isinstance(choice, dict):
        raise bad("tool_choice must name a function", param)
    fn = choice.get("function")
    name = fn.get("name") if isinstance(fn, dict) else choice.get("name")
    if not isinstance(name, str) or not name:
        raise bad("tool_choice must name a function", param)
    if name not in names:
        raise bad(f"tool_choice names {name!r}, which is not in tools", param)
    return sanitize_name(name)


def map_tools(body: dict[str, Any], model: ModelInfo, *, manual_thinking: bool, lenient: bool,
              web_search: str | None) -> ToolMapping:
    """Map tools and the tool choice.

    Args:
        body: the OpenAI request.
        model: the resolved model (forced tool choice, strict tools).
        manual_thinking: ``thinking.type == "enabled"`` is sent (forbids forced tool use).
        lenient: downgrade a refused forced choice to ``auto`` instead of a 400.
        web_search: the hosted web-search tool type to add for ``web_search_options``, or None
            when the feature is off (the field is then ignored).
    Returns:
        ``ToolMapping``.
    Raises:
        ConversionError: 400 for malformed tools, custom tools, unknown names, refused forced use.
    """
    out = ToolMapping()
    names: set[str] = set()
    raw_tools, functions = body.get("tools"), body.get("functions")
    for field_name, items in (("tools", raw_tools), ("functions", functions)):
        if items is None:
            continue
        if not isinstance(items, list):
            raise bad(f"{field_name} must be an array", field_name)
        for j, item in enumerate(items):
            param = f"{field_name}[{j}]"
            if field_name == "functions":
                fn, out.legacy = item, True
            elif not isinstance(item, dict):
                raise bad("tool must be an object", param)
            elif item.get("type", "function") != "function":
                raise unsupported(f"{item.get('type')} tools are not supported", f"{param}.type")
            else:
                fn = item.get("function")
                param += ".function"
            tool = _function_tool(fn, param, model, out)
            if tool["name"] in {t["name"] for t in out.tools}:
                raise bad(f"duplicate tool name {fn['name']!r}", param)
            out.tools.append(tool)
            names.add(fn["name"])
    if sum(1 for t in out.tools if t.get("strict")) > _MAX_STRICT_TOOLS:
        raise unsupported(f"at most {_MAX_STRICT_TOOLS} tools may set strict: true", "tools")

    choice_param = "tool_choice" if "tool_choice" in body else "function_call"
    raw_choice = body.get("tool_choice", body.get("function_call"))
    choice: Block | None = None
    if raw_choice is None or raw_choice == "auto":
        choice = {"type": "auto"} if raw_choice == "auto" else None
    elif raw_choice == "none":
        choice = {"type": "none"}
    elif raw_choice == "required":
        choice = {"type": "any"}
    elif isinstance(raw_choice, dict) and raw_choice.get("type") == "allowed_tools":
        spec = raw_choice.get("allowed_tools")
        listed = spec.get("tools") if isinstance(spec, dict) else None
        mode = spec.get("mode") if isinstance(spec, dict) else None
        if not isinstance(listed, list) or mode not in ("auto", "required"):
            raise bad("allowed_tools needs `mode` (auto|required) and `tools`", choice_param)
        keep = {_named(t, f"{choice_param}.allowed_tools.tools", names) for t in listed}
        out.tools = [t for t in out.tools if t["name"] in keep]
        choice = {"type": "any" if mode == "required" else "auto"}
    elif isinstance(raw_choice, dict) and raw_choice.get("type", "function") == "function":
        choice = {"type": "tool", "name": _named(raw_choice, choice_param, names)}
    else:
        raise unsupported("tool_choice must be none, auto, required, a function or allowed_tools",
                          choice_param)
    if choice is not None and choice["type"] in ("any", "tool") and not out.tools:
        raise bad("tool_choice forces a tool call but no tools are given", choice_param)

    if web_search is not None and body.get("web_search_options") is not None:
        out.tools.append(_web_search(body["web_search_options"], web_search))
    elif body.get("web_search_options") is not None:
        out.ignored.append("web_search_options")

    if not out.tools:
        if choice is not None:
            out.ignored.append(choice_param)
        if body.get("parallel_tool_calls") is not None:
            out.ignored.append("parallel_tool_calls")
        return out

    refused = manual_thinking or not model.forced_tool_choice
    if choice is not None and choice["type"] in ("any", "tool") and refused:
        if not lenient:
            msg = FORCED_TOOL_MESSAGE if not model.forced_tool_choice else (
                "tool_choice forcing tool use is not supported with extended thinking "
                "(use reasoning_effort none or tool_choice auto)")
            raise unsupported(msg, choice_param)
        choice = {"type": "auto"}
        out.degraded.append(choice_param)

    parallel = body.get("parallel_tool_calls")
    if parallel is not None and not isinstance(parallel, bool):
        raise bad("parallel_tool_calls must be a boolean", "parallel_tool_calls")
    if parallel is False and (choice is None or choice["type"] != "none"):
        choice = dict(choice or {"type": "auto"})
        choice["disable_parallel_tool_use"] = True
    out.choice = choice
    return out


def _web_search(opts: Any, tool_type: str) -> Block:
    if not isinstance(opts, dict):
        raise bad("web_search_options must be an object", "web_search_options")
    size = opts.get("search_context_size", "medium")
    if size not in _SEARCH_USES:
        raise bad("search_context_size must be low, medium or high", "web_search_options.search_context_size")
    tool: Block = {"type": tool_type, "name": "web_search", "max_uses": _SEARCH_USES[size]}
    loc = opts.get("user_location")
    approx = loc.get("approximate") if isinstance(loc, dict) else None
    if isinstance(approx, dict):
        fields = {k: v for k in ("city", "region", "country", "timezone")
                  if isinstance(v := approx.get(k), str) and v}
        if fields:
            tool["user_location"] = {"type": "approximate", **fields}
    return tool
