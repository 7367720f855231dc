"""``max_tokens`` and ``reasoning_effort``/``thinking`` -> Anthropic thinking (spec §1.4, §1.6).

Budget models (Claude <= 4.5) take ``thinking: {type: enabled, budget_tokens}`` with
``1024 <= budget < max_tokens``; adaptive models (4.6+) take ``thinking: {type: adaptive}`` plus
``output_config.effort``.  OpenAI counts reasoning inside ``max_completion_tokens``, so a client
limit bounds the budget; without one, room for the answer is added above the budget.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ._util import bad, is_int, unsupported
from .models import ModelInfo
from .types import Block, ConvertOptions

__all__ = ["BUDGETS", "Reasoning", "map_reasoning"]

#: reasoning_effort -> thinking budget on budget models (§1.6 Rec).
BUDGETS = {"minimal": 1024, "low": 1024, "medium": 8192, "high": 24576, "xhigh": 32768, "max": 32768}
_MIN_BUDGET = 1024
#: explicit ``thinking.budget_tokens`` -> effort on adaptive-only models (LiteLLM's bucketing idea)
_BUCKETS = (("xhigh", 32768), ("high", 24576), ("medium", 8192), ("low", 0))
_EFFORT_FOR = {"minimal": "low", "low": "low", "medium": "medium", "high": "high", "xhigh": "xhigh",
               "max": "max"}
_FALLBACK = {"max": ("max", "xhigh", "high"), "xhigh": ("xhigh", "high"), "high": ("high",),
             "medium": ("medium",), "low": ("low",)}


@dataclass
class Reasoning:
    """Result of ``map_reasoning``: the fields to send and what the rest of the mapping must know."""

    max_tokens: int
    thinking: Block | None = None
    effort: str | None = None
    active: bool = False  # thinking is on for this request (explicitly or by model default)
    manual: bool = False  # thinking.type == enabled
    client_limit: bool = False
    ignored: list[str] = field(default_factory=list)
    degraded: list[str] = field(default_factory=list)


def _limit(body: dict[str, Any]) -> tuple[int | None, str]:
    for name in ("max_completion_tokens", "max_tokens"):
        value = body.get(name)
        if value is None:
            continue
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if not is_int(value) or value < 1:
            raise bad(f"{name} must be an integer >= 1", name)
        return value, name
    return None, "max_completion_tokens"


def _effort(model: ModelInfo, level: str) -> str:
    for candidate in _FALLBACK[_EFFORT_FOR[level]]:
        if candidate in model.efforts:
            return candidate
    return "high" if "high" in model.efforts else (model.efforts[-1] if model.efforts else "high")


def map_reasoning(body: dict[str, Any], model: ModelInfo, opts: ConvertOptions) -> Reasoning:
    """Decide ``max_tokens``, ``thinking`` and ``output_config.effort``.

    Args:
        body: the OpenAI request (reads ``max_completion_tokens``, ``max_tokens``,
            ``reasoning_effort`` and the ``thinking`` extension).
        model: the resolved model.
        opts: options (default limit, strict mode, answer room).
    Returns:
        ``Reasoning``.
    Raises:
        ConversionError: 400 for invalid limits, unknown effort values, a limit too small for the
            requested thinking, or (strict mode) a limit above the model maximum.
    """
    limit, limit_name = _limit(body)
    out = Reasoning(max_tokens=0, client_limit=limit is not None)
    if limit is not None and limit > model.max_output_tokens:
        if opts.strict_mode:
            raise unsupported(f"{limit_name} {limit} exceeds the maximum of {model.max_output_tokens} "
                              f"output tokens for {model.id}", limit_name)
        limit = model.max_output_tokens
        out.degraded.append("max_tokens")
    out.max_tokens = limit if limit is not None else min(model.max_output_tokens, opts.default_max_tokens)

    explicit = body.get("thinking")
    effort = body.get("reasoning_effort")
    if explicit is not None:
        if effort is not None:
            out.ignored.append("reasoning_effort")
        _explicit(explicit, model, out, limit, limit_name, opts)
    elif effort is not None:
        if effort not in ("none", *BUDGETS):
            raise bad("reasoning_effort must be none, minimal, low, medium, high, xhigh or max",
                      "reasoning_effort")
        _from_effort(effort, model, out, limit, limit_name, opts)
    else:
        out.active = model.thinking_default_on
    return out


def _budget(level_budget: int, model: ModelInfo, out: Reasoning, limit: int | None, limit_name: str,
            opts: ConvertOptions, label: str) -> None:
    if limit is not None:
        budget = min(level_budget, limit - 1)
        if budget < _MIN_BUDGET:
            raise bad(f"{limit_name} too small for {label} (thinking needs at least {_MIN_BUDGET + 1})",
                      limit_name)
    else:
        budget = min(level_budget, model.max_output_tokens - 1)
        out.max_tokens = min(budget + opts.answer_room, model.max_output_tokens)
    out.thinking = {"type": "enabled", "budget_tokens": budget}
    out.active = out.manual = True


def _from_effort(effort: str, model: ModelInfo, out: Reasoning, limit: int | None, limit_name: str,
                 opts: ConvertOptions) -> None:
    if model.reasoning == "budget":
        if effort == "none":
            out.active = False
            return
        _budget(BUDGETS[effort], model, out, limit, limit_name, opts, f"reasoning_effort={effort}")
        return
    if effort == "none":
        if model.can_disable_thinking:
            out.thinking, out.active = {"type": "disabled"}, False
        elif "between_tools" in model.thinking_types:
            out.thinking, out.active = {"type": "between_tools"}, True
        else:  # always-on models: the lightest thinking there is
            out.thinking, out.effort, out.active = {"type": "adaptive"}, _effort(model, "low"), True
            out.degraded.append("reasoning_effort")
        return
    out.thinking, out.effort, out.active = {"type": "adaptive"}, _effort(model, effort), True


def _explicit(spec: Any, model: ModelInfo, out: Reasoning, limit: int | None, limit_name: str,
              opts: ConvertOptions) -> None:
    kind = spec.get("type") if isinstance(spec, dict) else None
    if kind == "enabled":
        budget = spec.get("budget_tokens")
        if not is_int(budget) or budget < _MIN_BUDGET:
            raise bad(f"thinking.budget_tokens must be an integer >= {_MIN_BUDGET}", "thinking.budget_tokens")
        if "enabled" in model.thinking_types:  # accepted (deprecated on 4.6): pass it through
            if limit is not None and budget >= limit:
                raise bad(f"thinking.budget_tokens must be less than {limit_name}", "thinking.budget_tokens")
            _budget(budget, model, out, limit, limit_name, opts, "thinking")
            return
        level = next(name for name, floor in _BUCKETS if budget >= floor)
        out.thinking, out.effort, out.active = {"type": "adaptive"}, _effort(model, level), True
        out.degraded.append("thinking")
    elif kind == "adaptive":
        if "adaptive" in model.thinking_types:
            out.thinking, out.active = {"type": "adaptive"}, True
            display = spec.get("display")
            if isinstance(display, str):
                out.thinking["display"] = display
        else:
            _budget(BUDGETS["medium"], model, out, limit, limit_name, opts, "thinking")
            out.degraded.append("thinking")
    elif kind == "disabled":
        if model.can_disable_thinking:
            out.thinking, out.active = {"type": "disabled"}, False
        elif "between_tools" in model.thinking_types:
            out.thinking, out.active = {"type": "between_tools"}, True
            out.degraded.append("thinking")
        else:
            out.active = True
            out.degraded.append("thinking")
    elif kind == "between_tools" and "between_tools" in model.thinking_types:
        out.thinking, out.active = {"type": "between_tools"}, True
    else:
        raise unsupported(f"thinking type {kind!r} is not supported by {model.id}", "thinking.type")
