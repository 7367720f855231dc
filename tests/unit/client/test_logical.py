"""The model label read from a request body (small bodies parsed, long conversations searched)."""

from __future__ import annotations

import json

import eth_account  # noqa: F401  (raises the recursion limit, as in every paying process)
import pytest

from mpp_claude.client._logical import PARSE_BELOW, model_of


def _chat(model: object, *, turns: int, extra: dict[str, object] | None = None) -> bytes:
    messages = [{"role": "user", "content": 'say "model": "not-this-one" ' * 20} for _ in range(turns)]
    return json.dumps({"messages": messages, "model": model, **(extra or {})}).encode()


@pytest.mark.parametrize("turns", [1, 200])
def test_top_level_model_small_and_large(turns: int) -> None:
    """Escaped quotes inside message text never match; both paths find the top-level model."""
    body = _chat("claude-haiku-4-5", turns=turns)
    assert (len(body) >= PARSE_BELOW) == (turns == 200)
    assert model_of(body) == "claude-haiku-4-5"


def test_large_body_with_a_nested_model_is_parsed() -> None:
    """Two "model" pairs in a long body: the parse decides which one is top level."""
    body = _chat("top", turns=200, extra={"metadata": {"model": "nested"}})
    assert model_of(body) == "top"


@pytest.mark.parametrize("body", [b"", b"[1]", b'{"model": 3}', b"{" * 300_000, b'{"a":' + b"[" * 15_000,
                                  b'{"model": "\\ud800x"}', _chat("\ud800", turns=200)[:-1] + b"}",
                                  _chat(None, turns=200), _chat(7, turns=200)])
def test_no_model(body: bytes) -> None:
    """Not an object, no string model, broken or absurdly deep JSON: ``None``, never an error."""
    assert model_of(body) is None


def test_escapes_in_the_model_are_decoded() -> None:
    assert model_of(_chat("m\u00e9\"x", turns=200)) == 'mé"x'
