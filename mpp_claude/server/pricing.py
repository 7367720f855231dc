"""Per-request prices (pure: no I/O, no clock).

Units: prices are USD per million tokens (decimal strings, as published); amounts are integers
of a 6-decimal USD stablecoin's base units.  With 6 decimals one base unit is $0.000001, so
``tokens × (USD per million tokens)`` *is* the amount in base units; we keep it as an exact
integer over a power of ten and round up once at the end (a quote never rounds in the server's disfavour
and never in the client's by more than one base unit).

The charge intent is paid before the answer exists, so a quote is an **upper bound**:

* prompt tokens are estimated from the UTF-8 size of the request body: every token of text
  covers at least one byte, so bytes >= tokens for text, and the JSON framing only adds to the
  estimate; each image part adds ``IMAGE_TOKENS`` (an image URL is short but costs up to
  a few thousand tokens);
* output tokens are the upstream request's ``max_tokens`` (``default_max_tokens`` when the
  client sent none) at the output price, which also covers thinking tokens.

What the model really used is priced with ``usage_cost`` and recorded next to the quote.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from decimal import Decimal
from fractions import Fraction
from functools import lru_cache
from typing import Any, NewType

from ..convert.models import MODELS, ModelPrice
from ..errors import ConversionError
from .config import PriceOverride

AtomicAmount = NewType("AtomicAmount", int)

IMAGE_TOKENS = 6000  # per image/document part: above Anthropic's largest per-image cost
MESSAGE_OVERHEAD_TOKENS = 16  # role markers and separators per message, beyond its bytes
MIN_CHARGE = AtomicAmount(1)


def _tier(price: ModelPrice, prompt_tokens: int) -> ModelPrice:
    if price.long_context is not None and prompt_tokens > price.long_context_threshold:
        return price.long_context
    return price


def _override(price: ModelPrice, override: PriceOverride) -> ModelPrice:
    changes = {name: Decimal(value) for name in ("input", "output", "cache_read", "cache_write")
               if (value := getattr(override, name)) is not None}
    return replace(price, long_context=None, long_context_threshold=0, **changes)


def new_price(override: PriceOverride) -> ModelPrice:
    """A price for a model absent from the built-in table (cache prices default 0.1x/1.25x/2x input).

    Raises:
        ValueError: ``input`` or ``output`` missing.
    """
    if override.input is None or override.output is None:
        raise ValueError("a model not in the built-in table needs input and output prices")
    inp = Decimal(override.input)
    return ModelPrice(input=inp, output=Decimal(override.output),
                      cache_read=Decimal(override.cache_read) if override.cache_read else inp / 10,
                      cache_write=Decimal(override.cache_write) if override.cache_write else inp * 5 / 4,
                      cache_write_1h=inp * 2)


@dataclass(frozen=True, slots=True)
class Quote:
    """The upper-bound price of one request, as put in the challenge."""

    model: str
    amount: AtomicAmount
    prompt_tokens: int
    max_tokens: int

    @property
    def description(self) -> str:
        """Human text for the challenge ``description`` (display only, never trusted)."""
        dollars, micros = divmod(int(self.amount), 10**6)
        return (f"{self.model}: at most {self.prompt_tokens} prompt + {self.max_tokens} output tokens, "
                f"max ${dollars}.{micros:06d}")


@dataclass(frozen=True, slots=True)
class Usage:
    """Tokens the upstream reported for one request."""

    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0

    @classmethod
    def from_anthropic(cls, usage: Mapping[str, Any] | None) -> Usage:
        """Read an Anthropic ``usage`` object (missing/None fields count as 0)."""
        usage = usage or {}

        def num(key: str) -> int:
            value = usage.get(key)
            return int(value) if isinstance(value, int) and value > 0 else 0

        return cls(num("input_tokens"), num("output_tokens"), num("cache_read_input_tokens"),
                   num("cache_creation_input_tokens"))

    @property
    def prompt_tokens(self) -> int:
        return self.input_tokens + self.cache_read_tokens + self.cache_write_tokens


class PriceTable:
    """Model id -> ``ModelPrice``; unknown models are refused (never priced at zero)."""

    def __init__(self, prices: Mapping[str, ModelPrice]) -> None:
        self._prices = dict(prices)

    def with_overrides(self, overrides: Mapping[str, PriceOverride]) -> PriceTable:
        """A new table with config overrides applied.  An override for an unknown model adds it.

        Raises:
            ValueError: a new model's override lacks ``input`` or ``output``.
        """
        prices = dict(self._prices)
        for model, override in overrides.items():
            if model in prices:
                prices[model] = _override(prices[model], override)
            else:
                try:
                    prices[model] = new_price(override)
                except ValueError as exc:
                    raise ValueError(f"prices.{model}: {exc}") from None
        return PriceTable(prices)

    @classmethod
    def builtin(cls) -> PriceTable:
        """The prices of every callable model in ``convert.models.MODELS`` (canonical ids)."""
        return cls({info.id: info.price for info in MODELS.values()})

    def __contains__(self, model: object) -> bool:
        return model in self._prices

    def models(self) -> Iterable[str]:
        return self._prices.keys()

    def price(self, model: str) -> ModelPrice:
        """The price of ``model``.

        Raises:
            ConversionError: 404 ``model_not_found`` (OpenAI's shape for an unknown model).
        """
        try:
            return self._prices[model]
        except KeyError:
            raise ConversionError(f"The model `{model}` does not exist or is not served here.",
                                  status=404, type="invalid_request_error", param="model",
                                  code="model_not_found") from None


def estimate_prompt_tokens(body: bytes, *, messages: int = 0, images: int = 0) -> int:
    """A conservative upper bound of the prompt's token count.

    Args:
        body: the raw request body as received (its UTF-8 byte count bounds text tokens).
        messages: number of messages (each adds ``MESSAGE_OVERHEAD_TOKENS``).
        images: number of image/document parts (each adds ``IMAGE_TOKENS``).
    """
    return len(body) + messages * MESSAGE_OVERHEAD_TOKENS + images * IMAGE_TOKENS


def count_parts(messages: Any) -> tuple[int, int]:
    """(messages, image-or-document parts) in an OpenAI or Anthropic ``messages`` list."""
    if not isinstance(messages, list):
        return 0, 0
    images = 0
    for message in messages:
        content = message.get("content") if isinstance(message, dict) else None
        if isinstance(content, list):
            images += sum(1 for part in content if isinstance(part, dict)
                          and part.get("type") in {"image_url", "image", "document", "file", "input_audio"})
    return len(messages), images


@lru_cache(maxsize=256)
def _rates(price: ModelPrice) -> tuple[int, int, int, int, int]:
    """``(scale, input, output, cache_read, cache_write)``: the four rates as integers over one
    power of ten, so that amounts are exact integer sums (``Fraction`` arithmetic costs ~20 us)."""
    rates = (price.input, price.output, price.cache_read, price.cache_write)
    scale = 10 ** max(0, *(-int(r.as_tuple().exponent) for r in rates))
    ints = [Fraction(r) * scale for r in rates]
    assert all(v.denominator == 1 for v in ints)  # a decimal times a large enough power of ten
    return scale, int(ints[0]), int(ints[1]), int(ints[2]), int(ints[3])


def _ceil_div(total: int, scale: int) -> int:
    return -(-total // scale)


def quote(table: PriceTable, model: str, *, prompt_tokens: int, max_tokens: int) -> Quote:
    """The amount to charge before serving: prompt estimate at input price + max_tokens at output.

    Raises:
        ConversionError: unknown model (404).
    """
    scale, inp, out, _, _ = _rates(_tier(table.price(model), prompt_tokens))
    amount = AtomicAmount(max(MIN_CHARGE, _ceil_div(prompt_tokens * inp + max_tokens * out, scale)))
    return Quote(model=model, amount=amount, prompt_tokens=prompt_tokens, max_tokens=max_tokens)


def usage_cost(table: PriceTable, model: str, usage: Usage) -> AtomicAmount:
    """What ``usage`` really cost, rounded up to a base unit (0 when nothing was used).

    Raises:
        ConversionError: unknown model (404).
    """
    scale, inp, out, read, write = _rates(_tier(table.price(model), usage.prompt_tokens))
    total = (usage.input_tokens * inp + usage.output_tokens * out + usage.cache_read_tokens * read
             + usage.cache_write_tokens * write)
    return AtomicAmount(_ceil_div(total, scale))
