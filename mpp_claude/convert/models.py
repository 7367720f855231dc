"""Claude model capabilities and prices (pure data plus one lookup).

Source: shared/docs/openai-anthropic-conversion.md §1.1 (capabilities) and §6 (prices, USD per
million tokens, dated versions of the Anthropic pricing page up to 2026-10-09 plus the Sonnet 5.5
cache-read cut effective 2026-10-07).  Re-check prices before billing.

Two facts are *not* in the spec and are assumptions, to be refreshed at start-up from
``GET /v1/models/{id}`` (whose ``max_tokens`` is the output limit):

* ``max_output_tokens`` per model (64k for Haiku/Sonnet, 128k for Opus/Fable/Mythos 4.6+).
* ``claude-haiku-5-5`` sampling / forced-tool / prefill support (§8 open point): the table takes
  the conservative reading (like the other 5.5 models), which drops or refuses rather than
  forwarding a request Anthropic may reject.

The server passes its own table (``ConvertOptions.models``) if it refreshed one; everything here
is a default.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Literal

from mpp_claude.errors import ConversionError

__all__ = [
    "MODELS",
    "PRICES",
    "RETIRED",
    "ModelInfo",
    "ModelPrice",
    "price_for",
    "resolve_model",
]

Sampling = Literal["all", "exclusive", "none"]
"""``all``: temperature/top_p/top_k accepted; ``exclusive``: not temperature and top_p together;
``none``: every non-default sampling value is a 400 upstream."""

Reasoning = Literal["budget", "adaptive"]
"""How ``reasoning_effort`` maps: ``thinking.enabled`` + budget, or ``adaptive`` + effort."""

EFFORTS_ALL = ("low", "medium", "high", "xhigh", "max")


@dataclass(frozen=True, slots=True)
class ModelPrice:
    """USD per million tokens.  ``cache_write`` is the 5-minute write, ``cache_write_1h`` the 1-hour one.

    ``long_context`` (Haiku 5.5 only) replaces every rate of a request whose prompt (input + cache
    reads + cache writes) exceeds ``long_context_threshold`` tokens, output included.
    """

    input: Decimal
    output: Decimal
    cache_read: Decimal
    cache_write: Decimal
    cache_write_1h: Decimal
    long_context: ModelPrice | None = None
    long_context_threshold: int = 0


def _price(inp: str, out: str, read: str, write: str, write_1h: str,
           long_context: ModelPrice | None = None, threshold: int = 0) -> ModelPrice:
    return ModelPrice(Decimal(inp), Decimal(out), Decimal(read), Decimal(write), Decimal(write_1h),
                      long_context, threshold)


@dataclass(frozen=True, slots=True)
class ModelInfo:
    """What the request mapper must know about one callable Claude model (§1.1).

    ``id`` is the canonical API id (alias form); ``aliases`` are other names accepted for it
    (dated snapshot ids).  ``thinking_types`` lists the accepted ``thinking.type`` values;
    ``thinking_default_on`` says whether the model thinks when ``thinking`` is omitted.
    """

    id: str
    display_name: str
    max_output_tokens: int
    reasoning: Reasoning
    thinking_types: frozenset[str]
    thinking_default_on: bool
    sampling: Sampling
    forced_tool_choice: bool
    prefill: bool
    structured_outputs: bool
    efforts: tuple[str, ...]
    price: ModelPrice
    aliases: tuple[str, ...] = ()
    status: str = "current"
    notes: str = ""
    extra: Mapping[str, object] = field(default_factory=dict)

    @property
    def can_disable_thinking(self) -> bool:
        """True when ``thinking: {type: disabled}`` is accepted."""
        return "disabled" in self.thinking_types


_BUDGET = frozenset({"enabled", "disabled"})
_ADAPTIVE_46 = frozenset({"adaptive", "enabled", "disabled"})
_ADAPTIVE_47 = frozenset({"adaptive", "disabled"})
_ALWAYS = frozenset({"adaptive"})

_P_OPUS_OLD = _price("5.00", "25.00", "0.50", "6.25", "10.00")
_P_SONNET_4 = _price("3.00", "15.00", "0.30", "3.75", "6.00")
_P_FABLE = _price("10.00", "50.00", "1.00", "12.50", "20.00")
_P_FABLE_51 = _price("10.00", "50.00", "0.25", "12.50", "20.00")
_P_HAIKU_55_LONG = _price("0.50", "2.50", "0.05", "0.625", "1.00")


def _m(id_: str, name: str, max_out: int, reasoning: Reasoning, thinking: frozenset[str], default_on: bool,
       sampling: Sampling, forced: bool, prefill: bool, efforts: tuple[str, ...], price: ModelPrice,
       aliases: tuple[str, ...] = (), status: str = "current", notes: str = "") -> ModelInfo:
    return ModelInfo(id_, name, max_out, reasoning, thinking, default_on, sampling, forced, prefill, True,
                     efforts, price, aliases, status, notes)


_TABLE: tuple[ModelInfo, ...] = (
    _m("claude-haiku-4-5", "Claude Haiku 4.5", 64_000, "budget", _BUDGET, False, "all", True, True, (),
       _price("1.00", "5.00", "0.10", "1.25", "2.00"), ("claude-haiku-4-5-20251001",), "legacy"),
    _m("claude-sonnet-4-5", "Claude Sonnet 4.5", 64_000, "budget", _BUDGET, False, "exclusive", True, True,
       (), _P_SONNET_4, ("claude-sonnet-4-5-20250929",), "deprecated",
       "retirement listed for 2026-11-30"),
    _m("claude-opus-4-5", "Claude Opus 4.5", 64_000, "budget", _BUDGET, False, "all", True, True,
       ("low", "medium", "high"), _P_OPUS_OLD, ("claude-opus-4-5-20251101",), "legacy"),
    _m("claude-opus-4-6", "Claude Opus 4.6", 128_000, "adaptive", _ADAPTIVE_46, False, "exclusive", True,
       False, ("low", "medium", "high", "max"), _P_OPUS_OLD, status="legacy"),
    _m("claude-sonnet-4-6", "Claude Sonnet 4.6", 64_000, "adaptive", _ADAPTIVE_46, False, "exclusive", True,
       False, ("low", "medium", "high", "max"), _P_SONNET_4, status="legacy"),
    _m("claude-opus-4-7", "Claude Opus 4.7", 128_000, "adaptive", _ADAPTIVE_47, False, "none", True, False,
       EFFORTS_ALL, _P_OPUS_OLD, status="legacy"),
    _m("claude-opus-4-8", "Claude Opus 4.8", 128_000, "adaptive", _ADAPTIVE_47, False, "none", True, False,
       EFFORTS_ALL, _P_OPUS_OLD, status="legacy"),
    _m("claude-sonnet-5", "Claude Sonnet 5", 64_000, "adaptive", _ADAPTIVE_47, True, "none", True, False,
       EFFORTS_ALL, _price("2.00", "10.00", "0.20", "2.50", "4.00"), status="legacy"),
    _m("claude-opus-5", "Claude Opus 5", 128_000, "adaptive", _ADAPTIVE_47, True, "none", True, False,
       EFFORTS_ALL, _P_OPUS_OLD, status="legacy", notes="thinking can be disabled only at effort <= high"),
    _m("claude-sonnet-5-5", "Claude Sonnet 5.5", 64_000, "adaptive", frozenset({"adaptive", "between_tools"}),
       True, "none", False, False, EFFORTS_ALL, _price("2.00", "10.00", "0.10", "2.50", "4.00")),
    _m("claude-opus-5-5", "Claude Opus 5.5", 128_000, "adaptive", _ALWAYS, True, "none", False, False,
       EFFORTS_ALL, _price("4.00", "20.00", "0.20", "5.00", "8.00")),
    _m("claude-haiku-5-5", "Claude Haiku 5.5", 64_000, "adaptive", _ALWAYS, True, "none", False, False,
       EFFORTS_ALL, _price("0.10", "0.50", "0.01", "0.125", "0.20", _P_HAIKU_55_LONG, 100_000),
       notes="sampling/forced tools/prefill unverified (spec §8); conservative defaults"),
    _m("claude-fable-5", "Claude Fable 5", 128_000, "adaptive", _ALWAYS, True, "none", True, False,
       EFFORTS_ALL, _P_FABLE, status="legacy"),
    _m("claude-mythos-5", "Claude Mythos 5", 128_000, "adaptive", _ALWAYS, True, "none", True, False,
       EFFORTS_ALL, _P_FABLE, status="limited"),
    _m("claude-fable-5-1", "Claude Fable 5.1", 128_000, "adaptive", _ALWAYS, True, "none", False, False,
       EFFORTS_ALL, _P_FABLE_51),
    _m("claude-mythos-5-1", "Claude Mythos 5.1", 128_000, "adaptive", _ALWAYS, True, "none", False, False,
       EFFORTS_ALL, _P_FABLE_51, status="limited"),
)

#: Every callable model, keyed by every accepted name (canonical id and aliases), lower case.
MODELS: Mapping[str, ModelInfo] = {name: m for m in _TABLE for name in (m.id, *m.aliases)}

#: Retired ids (no longer callable on the Claude API) -> the current ids to use instead.
RETIRED: Mapping[str, tuple[str, ...]] = {
    "claude-sonnet-4-20250514": ("claude-sonnet-5-5", "claude-sonnet-4-6"),
    "claude-sonnet-4-0": ("claude-sonnet-5-5", "claude-sonnet-4-6"),
    "claude-sonnet-4": ("claude-sonnet-5-5", "claude-sonnet-4-6"),
    "claude-opus-4-20250514": ("claude-opus-5-5", "claude-opus-4-8"),
    "claude-opus-4-0": ("claude-opus-5-5", "claude-opus-4-8"),
    "claude-opus-4": ("claude-opus-5-5", "claude-opus-4-8"),
    "claude-opus-4-1-20250805": ("claude-opus-5-5", "claude-opus-4-8"),
    "claude-opus-4-1": ("claude-opus-5-5", "claude-opus-4-8"),
    "claude-3-7-sonnet-20250219": ("claude-sonnet-5-5", "claude-sonnet-4-6"),
    "claude-3-7-sonnet-latest": ("claude-sonnet-5-5", "claude-sonnet-4-6"),
    "claude-3-5-sonnet-20241022": ("claude-sonnet-5-5", "claude-sonnet-4-6"),
    "claude-3-5-sonnet-latest": ("claude-sonnet-5-5", "claude-sonnet-4-6"),
    "claude-3-5-haiku-20241022": ("claude-haiku-5-5", "claude-haiku-4-5"),
    "claude-3-5-haiku-latest": ("claude-haiku-5-5", "claude-haiku-4-5"),
    "claude-3-haiku-20240307": ("claude-haiku-5-5", "claude-haiku-4-5"),
    "claude-3-opus-20240229": ("claude-opus-5-5", "claude-opus-4-8"),
    "claude-3-opus-latest": ("claude-opus-5-5", "claude-opus-4-8"),
}

#: §6 prices per id, including retired ids (still billed on Bedrock / Google Cloud).
PRICES: Mapping[str, ModelPrice] = {
    **{name: m.price for name, m in MODELS.items()},
    "claude-opus-4-1-20250805": _price("15.00", "75.00", "1.50", "18.75", "30.00"),
    "claude-opus-4-20250514": _price("15.00", "75.00", "1.50", "18.75", "30.00"),
    "claude-sonnet-4-20250514": _P_SONNET_4,
    "claude-3-5-haiku-20241022": _price("0.80", "4.00", "0.08", "1.00", "1.60"),
}

_DATE_SUFFIX = re.compile(r"-(\d{8})$")


def _normalise(name: str) -> str:
    name = name.strip().lower()
    return name.removeprefix("anthropic/")


def price_for(model: str, prompt_tokens: int = 0) -> ModelPrice:
    """The §6 rates that apply to one request.

    Args:
        model: any id or alias in ``PRICES`` (case-insensitive).
        prompt_tokens: input + cache reads + cache writes of the request; selects the long-context
            tier where one exists (Haiku 5.5 above 100k tokens).
    Returns:
        the ``ModelPrice`` (USD per million tokens, ``Decimal``).
    Raises:
        ConversionError: 404 for a model without a price.
    """
    key = _normalise(model)
    price = PRICES.get(key)
    if price is None:
        price = resolve_model(key).price
    if price.long_context is not None and prompt_tokens > price.long_context_threshold:
        return price.long_context
    return price


def resolve_model(name: object, models: Mapping[str, ModelInfo] | None = None) -> ModelInfo:
    """Look a requested model name up in the capability table.

    Args:
        name: the ``model`` field of the OpenAI request.
        models: the table to use (default ``MODELS``); keys are lower-case names.
    Returns:
        the ``ModelInfo`` (its ``id`` is the canonical name; the caller may still send the
        snapshot id the client asked for).
    Raises:
        ConversionError: 400 when ``name`` is not a non-empty string; 404 ``model_not_found``
            for a retired or unknown model, naming the current ids to use instead.
    """
    table = MODELS if models is None else models
    if not isinstance(name, str) or not name.strip():
        raise ConversionError("model must be a non-empty string", param="model", code="invalid_value")
    key = _normalise(name)
    info = table.get(key)
    if info is not None:
        return info
    if key in RETIRED:
        use = RETIRED[key]
        raise ConversionError(
            f"The model `{name}` has been retired and is no longer available on the Claude API. "
            f"Use {' or '.join(f'`{u}`' for u in use)} instead.",
            status=404, param="model", code="model_not_found")
    dated = _DATE_SUFFIX.search(key)
    if dated and key[: dated.start()] in table:
        base = table[key[: dated.start()]]
        raise ConversionError(
            f"The model `{name}` does not exist: unknown snapshot date for `{base.id}`. "
            f"Use `{base.id}`{''.join(f' or `{a}`' for a in base.aliases)}.",
            status=404, param="model", code="model_not_found")
    current = sorted({m.id for m in table.values() if m.status == "current"})
    names = sorted({m.id for m in table.values()})
    close = difflib.get_close_matches(key, names, n=3, cutoff=0.6) or current[:3] or names[:3]
    raise ConversionError(
        f"The model `{name}` does not exist or you do not have access to it. "
        f"Closest available models: {', '.join(close)}.",
        status=404, param="model", code="model_not_found")
