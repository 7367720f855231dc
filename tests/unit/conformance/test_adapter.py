"""The conformance adapter: every core vector through the request/response envelope, a few
through `python -m mpp_claude.conformance` as a subprocess, and the registry's behaviour."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from mpp_claude.conformance import registry
from mpp_claude.conformance.registry import AdapterError, handle_request, load_operations, operation

from ..protocol.vectors import expects_success, load, scenarios, wire_of

ROOT = Path(__file__).resolve().parents[3]
Call = Callable[[str, Any], dict[str, Any]]


def in_process(op: str, inp: Any) -> dict[str, Any]:
    return handle_request({"schema": 1, "op": op, "input": inp, "context": {"caseName": "t"}})


def subprocess_call(op: str, inp: Any) -> dict[str, Any]:
    return run_adapter(json.dumps({"schema": 1, "op": op, "input": inp}))


def run_adapter(stdin: str, *args: str) -> dict[str, Any]:
    proc = subprocess.run([sys.executable, "-m", "mpp_claude.conformance", *args], input=stdin.encode(),
                          capture_output=True, cwd=ROOT, timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr.decode()
    out: dict[str, Any] = json.loads(proc.stdout)
    return out


def _value(response: dict[str, Any]) -> Any:
    assert response["ok"] is True, response
    return response["value"]


def _error(response: dict[str, Any]) -> str:
    assert response["ok"] is False, response
    return str(response["error"]["type"])


def _normalise_credential(obj: dict[str, Any]) -> dict[str, Any]:
    """What the upstream runner does: decode a challenge.request given as a string."""
    from mpp_claude.protocol import decode_b64_json
    if isinstance(obj.get("challenge", {}).get("request"), str):
        echo = obj["challenge"]
        obj = {**obj, "challenge": {**echo, "request": decode_b64_json(echo["request"])}}
    return obj


def run_header_vector(call: Call, kind: str, s: dict[str, Any]) -> None:
    """The runner's semantics for challenge/credential vectors: parse, format, roundtrip."""
    norm = _normalise_credential if kind == "credential" else (lambda o: o)
    tests = s["tests"]
    if "parse" in tests:
        response = call(f"{kind}.parse", {"header": wire_of(s)})
        if expects_success(s, "parse"):
            assert norm(_value(response)) == s["object"]
        else:
            assert _error(response) == tests["parse"]["error_type"]
    if "format" in tests:
        response = call(f"{kind}.format", s["object"])
        if expects_success(s, "format"):
            produced = _value(response)["header"]
            assert norm(_value(call(f"{kind}.parse", {"header": produced}))) == norm(
                _value(call(f"{kind}.parse", {"header": wire_of(s)})))
        else:
            assert _error(response) == tests["format"]["error_type"]
    if tests.get("roundtrip"):
        produced = _value(call(f"{kind}.format", s["object"]))["header"]
        assert norm(_value(call(f"{kind}.parse", {"header": produced}))) == s["object"]


def run_base64url_vector(call: Call, s: dict[str, Any]) -> None:
    tests = s["tests"]
    if "parse" in tests:
        response = call("base64url.decode", {"text": s["encoded"]})
        if expects_success(s, "parse"):
            assert _value(response) == {"text": s["decoded"]}
        else:
            assert _error(response) == tests["parse"]["error_type"]
    if tests.get("format"):
        assert _value(call("base64url.encode", {"text": s["decoded"]})) == {"text": s["encoded"]}
    if tests.get("roundtrip"):
        encoded = _value(call("base64url.encode", {"text": s["decoded"]}))["text"]
        assert _value(call("base64url.decode", {"text": encoded})) == {"text": s["decoded"]}


def run_challenge_id_vector(call: Call, s: dict[str, Any]) -> None:
    response = call("challenge.id", s["input"])
    if "expected" in s:
        assert _value(response) == {"id": s["expected"]}
    else:
        assert _error(response) == s["tests"]["generate"]["error_type"]


SERVER_CASES = [pytest.param(c, id=c["name"]) for c in load("server-verification/cases")["cases"]]


# --- every vector, in process, through the envelope -------------------------------------------


@pytest.mark.parametrize("s", scenarios("www-authenticate"))
def test_www_authenticate(s: dict[str, Any]) -> None:
    """challenge.parse / challenge.format behave as the runner expects."""
    run_header_vector(in_process, "challenge", s)


@pytest.mark.parametrize("s", scenarios("authorization"))
def test_authorization(s: dict[str, Any]) -> None:
    """credential.parse / credential.format behave as the runner expects."""
    run_header_vector(in_process, "credential", s)


@pytest.mark.parametrize("s", scenarios("base64url"))
def test_base64url(s: dict[str, Any]) -> None:
    """base64url.encode / decode behave as the runner expects."""
    run_base64url_vector(in_process, s)


@pytest.mark.parametrize("s", scenarios("challenge-id"))
def test_challenge_id(s: dict[str, Any]) -> None:
    """challenge.id gives the expected id or generation_error."""
    run_challenge_id_vector(in_process, s)


# --- a few per file through the real subprocess (one process per call: keep them few) -----------


def _pick(name: str, *ids: str) -> list[Any]:
    return [p for p in scenarios(name) if p.id in ids]


def _single_header_call(kind: str, s: dict[str, Any]) -> None:
    """One adapter process per scenario: its parse test, or else its format test."""
    norm = _normalise_credential if kind == "credential" else (lambda o: o)
    test = "parse" if "parse" in s["tests"] else "format"
    op_input = {"header": wire_of(s)} if test == "parse" else s["object"]
    response = subprocess_call(f"{kind}.{test}", op_input)
    if not expects_success(s, test):
        assert _error(response) == s["tests"][test]["error_type"]
    elif test == "parse":
        assert norm(_value(response)) == s["object"]
    else:
        assert norm(in_process(f"{kind}.parse", _value(response))["value"]) == s["object"]


@pytest.mark.parametrize("s", _pick("www-authenticate", "basic_challenge", "error_crlf_in_description_format",
                                    "adversarial_unclosed_quoted_extension"))
def test_subprocess_www_authenticate(s: dict[str, Any]) -> None:
    """The adapter process answers challenge vectors (incl. the ReDoS one and a format error)."""
    _single_header_call("challenge", s)


@pytest.mark.parametrize("s", _pick("authorization", "basic_credential"))
def test_subprocess_authorization(s: dict[str, Any]) -> None:
    """The adapter process answers credential vectors."""
    _single_header_call("credential", s)


@pytest.mark.parametrize("s", _pick("base64url", "invalid_utf8_rejected"))
def test_subprocess_base64url(s: dict[str, Any]) -> None:
    """The adapter process answers base64url vectors."""
    assert _error(subprocess_call("base64url.decode", {"text": s["encoded"]})) == "encoding_error"


@pytest.mark.parametrize("s", _pick("challenge-id", "error_weak_secret_key"))
def test_subprocess_challenge_id(s: dict[str, Any]) -> None:
    """The adapter process answers challenge-id vectors."""
    run_challenge_id_vector(subprocess_call, s)


@pytest.mark.parametrize("case", [c for c in SERVER_CASES if c.id == "valid_credential_verified"])
def test_subprocess_server_verify(case: dict[str, Any]) -> None:
    """The adapter process answers server.verify cases (this one is also the upstream example pair)."""
    assert _value(subprocess_call("server.verify", case["input"])) == case["expected"]


def test_subprocess_bad_json_and_manifest() -> None:
    """Non-JSON stdin gets an unknown_error response; --manifest lists the capabilities."""
    assert _error(run_adapter("{not json")) == "unknown_error"
    manifest = run_adapter("", "--manifest")
    assert manifest["schema"] == 1 and manifest["name"] == "mpp_claude"
    assert manifest["command"][1:] == ["-m", "mpp_claude.conformance"]
    assert {"challenge.parse", "challenge.id", "server.verify"} <= set(manifest["capabilities"])


# --- envelope and registry --------------------------------------------------------------------------


@pytest.mark.parametrize(("request_", "error"), [
    ({"schema": 1, "op": "stripe.external_id_binding", "input": {}}, "unsupported_operation"),
    ({"schema": 1, "op": "http.payment_request", "input": {}}, "unsupported_operation"),
    ({"schema": 2, "op": "challenge.parse", "input": {}}, "unknown_error"),
    ({"schema": 1, "op": "challenge.parse"}, "unknown_error"),
    ([], "unknown_error"),
    ({"schema": 1, "op": "challenge.parse", "input": {"header": 5}}, "parse_error"),
    ({"schema": 1, "op": "challenge.format", "input": {"id": "x"}}, "format_error"),
    ({"schema": 1, "op": "receipt.format", "input": {"status": "success"}}, "format_error"),
    ({"schema": 1, "op": "challenge.id", "input": {"secretKey": "k" * 32}}, "generation_error"),
    ({"schema": 1, "op": "server.verify", "input": {"request": {}}}, "verification_error"),
])
def test_envelope_errors(request_: Any, error: str) -> None:
    """Unimplemented ops, bad envelopes and bad inputs get typed error responses, never a crash."""
    assert _error(handle_request(request_)) == error


def test_receipt_ops() -> None:
    """receipt.format then receipt.parse returns the canonical receipt."""
    receipt = {"status": "success", "method": "tempo", "timestamp": "2026-01-29T12:00:00Z",
               "reference": "0xabc", "externalId": "o-1", "extra": {"channelId": "0x1"}}
    header = _value(in_process("receipt.format", receipt))["header"]
    assert _value(in_process("receipt.parse", {"header": header})) == receipt
    assert _error(in_process("receipt.parse", {"header": "!!"})) == "parse_error"


def test_operation_registration(monkeypatch: pytest.MonkeyPatch) -> None:
    """@operation registers a handler; duplicates and unknown error types are refused."""
    monkeypatch.setattr(registry, "OPERATIONS", dict(registry.OPERATIONS))

    @operation("test.echo", error_type="verification_error")
    def echo(inp: Any) -> Any:
        if inp == "fail":
            raise AdapterError("http_error", "asked to fail")
        if inp == "bug":
            raise KeyError("oops")
        return inp

    assert handle_request({"schema": 1, "op": "test.echo", "input": [1]}) == {"ok": True, "value": [1]}
    assert _error(handle_request({"schema": 1, "op": "test.echo", "input": "fail"})) == "http_error"
    assert _error(handle_request({"schema": 1, "op": "test.echo", "input": "bug"})) == "unknown_error"
    with pytest.raises(ValueError, match="twice"):
        operation("test.echo", error_type="verification_error")(echo)
    with pytest.raises(ValueError):
        operation("test.other", error_type="nope")
    with pytest.raises(ValueError):
        AdapterError("nope", "x")


def test_missing_op_module_is_skipped(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """A listed op module that does not exist is skipped; one with a broken import is not."""
    monkeypatch.setattr(registry, "_loaded", False)
    monkeypatch.setattr(registry, "OP_MODULES", ("mpp_claude.conformance.core_ops", "no_such_ops_module_xyz"))
    assert "challenge.parse" in load_operations()

    (tmp_path / "broken_ops_module_xyz.py").write_text("import no_such_dependency_xyz\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(registry, "_loaded", False)
    monkeypatch.setattr(registry, "OP_MODULES", ("broken_ops_module_xyz",))
    with pytest.raises(ModuleNotFoundError, match="no_such_dependency_xyz"):
        load_operations()
