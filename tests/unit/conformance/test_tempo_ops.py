"""The Tempo conformance vectors through the adapter: in process, and one per file as a subprocess."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from mpp_claude.conformance.registry import handle_request

VECTORS = Path(__file__).resolve().parents[2] / "vectors"


def load_vectors(name: str) -> dict[str, Any]:
    return dict(json.loads((VECTORS / name).read_text()))

FILES = ("tempo-fee-payer-cosign", "tempo-receipt-verification", "tempo-transaction-verification",
         "tempo-proof")


def _cases() -> list[Any]:
    out = []
    for name in FILES:
        doc = load_vectors(f"{name}.json")
        op = doc["commands"]["operation"]
        for s in doc["scenarios"]:
            if s.get("adapters") and "python" not in s["adapters"]:
                continue
            out.append(pytest.param(op, s, id=f"{name}:{s['name']}"))
    return out


def _matches(response: dict[str, Any], expected: dict[str, Any]) -> bool:
    if response["ok"] != expected["ok"]:
        return False
    if expected["ok"]:
        return bool(response["value"] == expected["value"])
    return bool(response["error"]["type"] == expected["error"]["type"])


@pytest.mark.parametrize(("op", "scenario"), _cases())
def test_vector_in_process(op: str, scenario: dict[str, Any]) -> None:
    """Each Tempo scenario gives the expected ok/value or error type (and the message hint)."""
    response = handle_request({"schema": 1, "op": op, "input": scenario["input"]})
    assert _matches(response, scenario["expected"]), response
    hint = scenario["expected"].get("error", {}).get("messageContains")
    if hint:
        assert hint in response["error"]["message"]


@pytest.mark.parametrize("name", FILES)
def test_first_vector_of_each_file_as_subprocess(name: str) -> None:
    """The adapter executable answers one request per process, as the upstream runner calls it."""
    doc = load_vectors(f"{name}.json")
    scenario = doc["scenarios"][0]
    request = {"schema": 1, "op": doc["commands"]["operation"], "input": scenario["input"],
               "context": {"caseName": scenario["name"], "vectorName": name, "timeoutMs": 30000}}
    proc = subprocess.run([sys.executable, "-m", "mpp_claude.conformance"], input=json.dumps(request),
                          capture_output=True, text=True, timeout=60, check=True)
    assert _matches(json.loads(proc.stdout), scenario["expected"]), proc.stdout + proc.stderr


def test_rejected_scenario_as_subprocess() -> None:
    """A refused envelope comes back as verification_error from the executable too."""
    doc = load_vectors("tempo-fee-payer-cosign.json")
    scenario = next(s for s in doc["scenarios"] if s["name"] == "extra_call_rejected")
    request = {"schema": 1, "op": doc["commands"]["operation"], "input": scenario["input"]}
    proc = subprocess.run([sys.executable, "-m", "mpp_claude.conformance"], input=json.dumps(request),
                          capture_output=True, text=True, timeout=60, check=True)
    out = json.loads(proc.stdout)
    assert out["ok"] is False and out["error"]["type"] == "verification_error"
    assert "contains unauthorized extra calls" in out["error"]["message"]
