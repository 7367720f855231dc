"""Pricing: upper-bound quotes, exact rounding, tiers, overrides, actual usage cost."""

from __future__ import annotations

import pytest

from mpp_claude.errors import ConversionError
from mpp_claude.server.config import PriceOverride
from mpp_claude.server.pricing import (
    IMAGE_TOKENS,
    PriceTable,
    Usage,
    count_parts,
    estimate_prompt_tokens,
    quote,
    usage_cost,
)

TABLE = PriceTable.builtin()


def test_quote_is_prompt_at_input_price_plus_max_tokens_at_output_price() -> None:
    """Haiku 4.5 ($1 in / $5 out per million): 1000 prompt + 4096 output = 1000 + 20480 base units."""
    q = quote(TABLE, "claude-haiku-4-5", prompt_tokens=1000, max_tokens=4096)
    assert q.amount == 1000 * 1 + 4096 * 5
    assert "4096 output tokens" in q.description


def test_quote_rounds_up_to_one_base_unit() -> None:
    """Fractions of a base unit round up, and a quote is never zero."""
    q = quote(TABLE, "claude-haiku-5-5", prompt_tokens=1, max_tokens=1)  # $0.10 + $0.50 per Mtok
    assert q.amount == 1


def test_long_context_tier_applies_to_every_token() -> None:
    """Haiku 5.5 above 100k prompt tokens bills input and output at the higher tier."""
    low = quote(TABLE, "claude-haiku-5-5", prompt_tokens=100_000, max_tokens=1000)
    high = quote(TABLE, "claude-haiku-5-5", prompt_tokens=100_001, max_tokens=1000)
    assert low.amount == 100_000 // 10 + 1000 // 2
    assert high.amount == (100_001 * 5 + 9) // 10 + 1000 * 5 // 2


def test_prompt_estimate_bounds_text_tokens_from_above() -> None:
    """The estimate is at least the body size plus per-message and per-image overheads."""
    body = b'{"messages":[{"role":"user","content":"hello"}]}'
    assert estimate_prompt_tokens(body) == len(body)
    assert estimate_prompt_tokens(body, messages=2, images=1) > len(body) + IMAGE_TOKENS


def test_count_parts_sees_images_in_both_dialects() -> None:
    """OpenAI image_url parts and Anthropic image/document blocks count as images."""
    messages = [{"role": "user", "content": [{"type": "text", "text": "x"},
                                             {"type": "image_url", "image_url": {"url": "u"}}]},
                {"role": "user", "content": [{"type": "image", "source": {}}, {"type": "document"}]},
                {"role": "assistant", "content": "plain"}]
    assert count_parts(messages) == (3, 3)
    assert count_parts("not a list") == (0, 0)


def test_unknown_model_is_a_404_conversion_error() -> None:
    """An unknown model has no price: 404 model_not_found, never a zero price."""
    with pytest.raises(ConversionError) as info:
        quote(TABLE, "gpt-4o", prompt_tokens=1, max_tokens=1)
    assert info.value.status == 404 and info.value.code == "model_not_found"


def test_overrides_replace_fields_and_add_models() -> None:
    """Config overrides change the named fields of a known model and may add a new one."""
    table = TABLE.with_overrides({"claude-haiku-4-5": PriceOverride(output="10"),
                                  "my-model": PriceOverride(input="2", output="4")})
    assert quote(table, "claude-haiku-4-5", prompt_tokens=0, max_tokens=100).amount == 1000
    assert quote(table, "my-model", prompt_tokens=100, max_tokens=100).amount == 600
    with pytest.raises(ValueError, match="needs input and output"):
        TABLE.with_overrides({"other": PriceOverride(output="1")})


def test_usage_cost_prices_cache_reads_and_writes() -> None:
    """Actual cost: input, output, cache reads (0.1x) and cache writes (1.25x) at their rates."""
    usage = Usage(input_tokens=1000, output_tokens=100, cache_read_tokens=1000, cache_write_tokens=1000)
    # Haiku 4.5: 1000*1 + 100*5 + 1000*0.1 + 1000*1.25
    assert usage_cost(TABLE, "claude-haiku-4-5", usage) == 1000 + 500 + 100 + 1250


def test_usage_from_anthropic_ignores_missing_and_bogus_fields() -> None:
    """Missing, null or negative usage fields count as zero."""
    usage = Usage.from_anthropic({"input_tokens": 5, "output_tokens": None, "cache_read_input_tokens": -3})
    assert usage == Usage(5, 0, 0, 0)
    assert Usage.from_anthropic(None) == Usage()


def test_quote_always_covers_the_actual_cost() -> None:
    """For any usage within the quoted bounds, the actual cost never exceeds the quote."""
    for model in TABLE.models():
        q = quote(TABLE, model, prompt_tokens=5000, max_tokens=2000)
        worst = Usage(input_tokens=5000, output_tokens=2000)
        assert usage_cost(TABLE, model, worst) <= q.amount, model
