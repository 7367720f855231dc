"""The public surface of mpp_claude.convert, and the spec-case inventory (T01-T80 all present)."""

from __future__ import annotations

import re
from pathlib import Path

import mpp_claude.convert as convert


def test_all_is_sorted_and_complete() -> None:
    """__all__ is sorted, names only existing objects, and covers the entry points the server uses."""

    def group(name: str) -> tuple[int, str]:  # ruff's isort-style order: CONSTANTS, Classes, functions
        return (0 if name.isupper() else 1 if name[0].isupper() else 2, name)

    assert convert.__all__ == sorted(convert.__all__, key=group)
    assert all(hasattr(convert, name) for name in convert.__all__)
    for name in (
        "chat_request_to_messages",
        "message_to_chat_completion",
        "StreamTranslator",
        "anthropic_error_to_openai",
        "resolve_model",
        "MODELS",
        "PRICES",
        "SseParser",
    ):
        assert name in convert.__all__


def test_every_spec_case_has_a_test() -> None:
    """Each of T01-T80 appears in a test name (function or parametrised id) under this directory."""
    text = "\n".join(
        p.read_text() for p in Path(__file__).parent.glob("test_*.py") if p.name != Path(__file__).name
    )
    found = {int(m) for m in re.findall(r"(?<=[_\-\"])T(\d\d)(?=[_\-\"])", text)}
    assert found >= set(range(1, 81)), sorted(set(range(1, 81)) - found)
