"""The capability table, model resolution (404s naming replacements) and the §6 price table."""

from __future__ import annotations

from decimal import Decimal

import pytest

from mpp_claude.convert import MODELS, PRICES, RETIRED, price_for, resolve_model
from mpp_claude.errors import ConversionError


def _not_found(name: str) -> ConversionError:
    with pytest.raises(ConversionError) as info:
        resolve_model(name)
    assert info.value.status == 404 and info.value.code == "model_not_found" and info.value.param == "model"
    return info.value


class TestResolve:
    def test_alias_and_snapshot(self) -> None:
        """The alias and the dated snapshot id resolve to the same row."""
        assert resolve_model("claude-haiku-4-5") is resolve_model("claude-haiku-4-5-20251001")

    def test_case_and_whitespace(self) -> None:
        """Names are matched case-insensitively."""
        assert resolve_model(" Claude-Opus-5-5 ").id == "claude-opus-5-5"

    def test_retired_names_replacement(self) -> None:
        """A retired id is a 404 that says what to use instead."""
        err = _not_found("claude-sonnet-4-20250514")
        assert "retired" in err.message and "claude-sonnet-5-5" in err.message
        assert err.to_openai()["error"]["code"] == "model_not_found"

    def test_unknown_names_closest(self) -> None:
        """An unknown id is a 404 listing close current ids."""
        assert "claude-sonnet-5-5" in _not_found("claude-sonet-5-5").message

    def test_unknown_snapshot_date(self) -> None:
        """A made-up snapshot date of a known model is refused, naming the alias."""
        assert "claude-haiku-4-5" in _not_found("claude-haiku-4-5-20990101").message

    def test_not_a_string(self) -> None:
        """A missing model is a 400."""
        with pytest.raises(ConversionError) as info:
            resolve_model(None)
        assert info.value.status == 400

    def test_every_replacement_is_callable(self) -> None:
        """Every suggested replacement is in the table."""
        assert all(name in MODELS for names in RETIRED.values() for name in names)


class TestCapabilities:
    @pytest.mark.parametrize(
        "model", ["claude-opus-5-5", "claude-sonnet-5-5", "claude-fable-5-1", "claude-mythos-5-1"]
    )
    def test_forced_tools_refused(self, model: str) -> None:
        """The models A3/A5 name as rejecting forced tool use are marked so."""
        assert MODELS[model].forced_tool_choice is False

    @pytest.mark.parametrize(
        "model", ["claude-opus-4-7", "claude-opus-4-8", "claude-sonnet-5", "claude-opus-5"]
    )
    def test_sampling_refused(self, model: str) -> None:
        """4.7+ and 5.x reject sampling parameters."""
        assert MODELS[model].sampling == "none"

    def test_prefill_only_up_to_4_5(self) -> None:
        """Prefill is allowed on 4.5 models and refused from 4.6 on."""
        allowed = {m.id for m in MODELS.values() if m.prefill}
        assert allowed == {"claude-haiku-4-5", "claude-sonnet-4-5", "claude-opus-4-5"}


class TestPrices:
    def test_examples_from_section_6(self) -> None:
        """Spot checks against §6 (USD per million tokens)."""
        p = PRICES["claude-sonnet-5-5"]
        assert (p.input, p.output, p.cache_read, p.cache_write, p.cache_write_1h) == (
            Decimal("2.00"),
            Decimal("10.00"),
            Decimal("0.10"),
            Decimal("2.50"),
            Decimal("4.00"),
        )
        assert PRICES["claude-opus-5-5"].cache_read == Decimal("0.20")
        assert PRICES["claude-fable-5-1"].cache_read == Decimal("0.25")
        assert PRICES["claude-sonnet-4-20250514"].output == Decimal("15.00")

    def test_every_model_has_a_price(self) -> None:
        """Every callable name has a Decimal price."""
        assert all(isinstance(PRICES[name].input, Decimal) for name in MODELS)

    def test_haiku_5_5_long_context_tier(self) -> None:
        """Above 100k prompt tokens Haiku 5.5 uses the higher tier for everything."""
        assert price_for("claude-haiku-5-5", 100_000).input == Decimal("0.10")
        assert price_for("claude-haiku-5-5", 100_001).output == Decimal("2.50")

    def test_unknown_price(self) -> None:
        """An unknown model has no price: 404."""
        with pytest.raises(ConversionError):
            price_for("gpt-4o")
