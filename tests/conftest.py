"""Shared test configuration: devnet fixtures, vector loading, a clean environment."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

pytest_plugins = ["mpp_claude.testing"]

VECTORS = Path(__file__).parent / "vectors"


def load_vectors(name: str) -> dict[str, Any]:
    """Load a conformance data file copied from shared/conformance into tests/vectors."""
    return json.loads((VECTORS / name).read_text())


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No test sees the developer's MPP_*, ANTHROPIC_* or proxy variables."""
    keep = {"MPP_CLAUDE_ANVIL", "MPP_CLAUDE_CACHE", "MPP_CLAUDE_REDIS_URL"}
    for key in list(os.environ):
        upper = key.upper()
        if key in keep:
            continue
        if upper.startswith(("MPP_", "ANTHROPIC_")) or upper in {
            "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY"}:
            monkeypatch.delenv(key, raising=False)
