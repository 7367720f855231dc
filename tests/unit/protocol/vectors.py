"""Loading the conformance vectors copied into tests/vectors (one loader, ids = scenario names)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

VECTORS = Path(__file__).resolve().parents[2] / "vectors"

# The harness runs a scenario carrying "adapters" only for those adapters.  We run the
# ones we support anyway (the rust-only `header` echo is implemented here); this table
# lists the only ones skipped, with the reason.
SKIPPED: dict[str, str] = {}


def load(name: str) -> dict[str, Any]:
    """One vector file, e.g. ``load("www-authenticate")`` or ``load("server-verification/cases")``."""
    data: dict[str, Any] = json.loads((VECTORS / f"{name}.json").read_text(encoding="utf-8"))
    return data


def scenarios(name: str, test: str | None = None) -> list[Any]:
    """``pytest.param``s of a vector file's scenarios (those having ``tests[test]`` when given)."""
    out = []
    for s in load(name)["scenarios"]:
        if test is not None and test not in s.get("tests", {}):
            continue
        marks = [pytest.mark.skip(reason=SKIPPED[s["name"]])] if s["name"] in SKIPPED else []
        out.append(pytest.param(s, id=s["name"], marks=marks))
    return out


def wire_of(s: dict[str, Any]) -> str:
    """A scenario's wire text (the ``{prefix, repeat, count, suffix}`` form expanded)."""
    w = s["wire"]
    if isinstance(w, dict):
        return str(w["prefix"] + w["repeat"] * w["count"] + w.get("suffix", ""))
    return str(w)


def expects_success(s: dict[str, Any], test: str) -> bool:
    """Whether ``tests[test]`` expects success (``true``) or an error (``{"success": false}``)."""
    spec = s["tests"][test]
    return spec is True or (isinstance(spec, dict) and spec.get("success", True) is not False)


def error_type(s: dict[str, Any], test: str) -> str:
    """The conformance error type a failing ``tests[test]`` expects."""
    return str(s["tests"][test]["error_type"])
