"""Server checks of a credential's challenge echo: server-verification/cases.json and extras."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from mpp_claude.conformance.registry import handle_request
from mpp_claude.errors import InvalidChallenge, PaymentExpired, WeakSecretError
from mpp_claude.protocol import Credential, content_digest, new_challenge, verify_echo
from mpp_claude.protocol.encoding import b64url_encode, encode_b64_json

from .vectors import load

CASES = [pytest.param(c, id=c["name"]) for c in load("server-verification/cases")["cases"]]
SECRET = "server-secret-that-is-at-least-32-bytes"
ROUTE: dict[str, Any] = {"realm": "api.example.com", "method": "tempo", "intent": "charge",
                         "request": {"amount": "100", "currency": "0xabc", "recipient": "0xdef"}}
NOW = datetime(2026, 1, 29, 12, 0, tzinfo=timezone.utc)


@pytest.mark.parametrize("case", CASES)
def test_case(case: dict[str, Any]) -> None:
    """The server.verify operation answers exactly the expected value, in process."""
    response = handle_request({"schema": 1, "op": "server.verify", "input": case["input"]})
    assert response == {"ok": True, "value": case["expected"]}


def test_case_malformed_credential() -> None:
    """An echo that is not a valid challenge is malformed_credential, before any HMAC check."""
    case = load("server-verification/cases")["cases"][0]
    inp = dict(case["input"], credential={"challenge": {"id": "x"}, "payload": {}})
    response = handle_request({"schema": 1, "op": "server.verify", "input": inp})
    assert response == {"ok": True, "value": {"ok": False, "errorType": "malformed_credential"}}


def _issue(**overrides: Any) -> Any:
    fields = {**ROUTE, "expires": NOW + timedelta(minutes=5), **overrides}
    return new_challenge(SECRET, **fields)


def test_verify_echo_accepts_our_challenge() -> None:
    """A challenge we issued for this route verifies before it expires."""
    verify_echo(_issue(), secret=SECRET, **ROUTE, expires_required=True, now=NOW)


@pytest.mark.parametrize(("overrides", "error"), [
    ({"realm": "other.example.com"}, InvalidChallenge),
    ({"intent": "session"}, InvalidChallenge),
    ({"request": {"amount": "1", "currency": "0xabc", "recipient": "0xdef"}}, InvalidChallenge),
    ({"expires": None}, InvalidChallenge),
    ({"expires": NOW - timedelta(seconds=1)}, PaymentExpired),
    ({"expires": NOW}, PaymentExpired),
])
def test_verify_echo_rejects(overrides: dict[str, Any], error: type[Exception]) -> None:
    """Validly signed challenges for another route, without or past their expiry, are refused."""
    with pytest.raises(error):
        verify_echo(_issue(**overrides), secret=SECRET, **ROUTE, expires_required=True, now=NOW)


def test_verify_echo_other_secret() -> None:
    """A challenge signed with another secret → InvalidChallenge."""
    ch = new_challenge("another-secret-that-is-at-least-32-bytes", **ROUTE)
    with pytest.raises(InvalidChallenge, match="id does not match"):
        verify_echo(ch, secret=SECRET, **ROUTE, expires_required=False, now=NOW)


def test_verify_echo_numbers_are_not_booleans() -> None:
    """Request comparison is on canonical JSON: true is not 1 (Python's True == 1)."""
    ch = new_challenge(SECRET, **{**ROUTE, "request": {"flag": True}})
    with pytest.raises(InvalidChallenge, match="request"):
        verify_echo(ch, secret=SECRET, **{**ROUTE, "request": {"flag": 1}}, expires_required=False, now=NOW)


def test_verify_echo_digest() -> None:
    """A bound body digest must match the received body."""
    body = b'{"model":"x"}'
    ch = _issue(digest=content_digest(body))
    verify_echo(ch, secret=SECRET, **ROUTE, expires_required=True, now=NOW, body=body)
    with pytest.raises(InvalidChallenge, match="digest"):
        verify_echo(ch, secret=SECRET, **ROUTE, expires_required=True, now=NOW, body=body + b" ")


def test_verify_echo_weak_secret() -> None:
    """The public function keeps the 32-byte minimum (only the conformance op waives it)."""
    cred = Credential.from_dict(load("server-verification/cases")["cases"][0]["input"]["credential"])
    with pytest.raises(WeakSecretError):
        verify_echo(cred.challenge, secret="secret-key", **ROUTE, expires_required=True, now=NOW)


def test_pre_encoded_request_is_the_same_challenge() -> None:
    """new_challenge with the request's base64url text issues exactly what the object issues."""
    request_b64 = encode_b64_json(ROUTE["request"])
    fields = {**ROUTE, "expires": NOW + timedelta(minutes=5), "opaque": "abc"}
    assert new_challenge(SECRET, **{**fields, "request": request_b64}) == new_challenge(SECRET, **fields)


def test_verify_echo_request_text_shortcut() -> None:
    """request_b64 only shortcuts an echo of that very text: another encoding of the same object
    still verifies, another request is still refused whatever request_b64 says."""
    request_b64 = encode_b64_json(ROUTE["request"])
    verify_echo(_issue(), secret=SECRET, **ROUTE, expires_required=True, now=NOW, request_b64=request_b64)
    reordered = b64url_encode(json.dumps(dict(reversed(list(ROUTE["request"].items())))).encode())
    assert reordered != request_b64
    verify_echo(_issue(request=reordered), secret=SECRET, **ROUTE, expires_required=True, now=NOW,
                request_b64=request_b64)
    cheaper = {**ROUTE["request"], "amount": "1"}
    with pytest.raises(InvalidChallenge, match="request"):
        verify_echo(_issue(request=cheaper), secret=SECRET, **ROUTE, expires_required=True, now=NOW,
                    request_b64=request_b64)
