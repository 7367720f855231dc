"""Authorization: Payment credentials: the conformance vectors and validation."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mpp_claude.errors import FormatError, MalformedCredential
from mpp_claude.protocol import (
    MAX_CREDENTIAL_LENGTH,
    Challenge,
    Credential,
    b64url_encode,
    encode_b64_json,
    format_credential,
    parse_credential,
)
from mpp_claude.protocol.credential import format_payment

from .strategies import challenges, text
from .vectors import error_type, expects_success, scenarios, wire_of


@pytest.mark.parametrize("s", scenarios("authorization", "parse"))
def test_vector_parse(s: dict[str, Any]) -> None:
    """parse(wire) equals the canonical object (request decoded), or fails with parse_error."""
    if expects_success(s, "parse"):
        assert parse_credential(wire_of(s)).to_dict() == s["object"]
    else:
        with pytest.raises(MalformedCredential) as info:
            parse_credential(wire_of(s))
        assert info.value.kind == error_type(s, "parse")


@pytest.mark.parametrize("s", scenarios("authorization", "format"))
def test_vector_format(s: dict[str, Any]) -> None:
    """format(object) parses to the same credential as the vector's wire."""
    produced = format_credential(Credential.from_dict(s["object"]))
    assert produced.startswith("Payment ")
    assert parse_credential(produced) == parse_credential(wire_of(s))


@pytest.mark.parametrize("s", scenarios("authorization", "roundtrip"))
def test_vector_roundtrip(s: dict[str, Any]) -> None:
    """parse(format(object)) == object."""
    assert parse_credential(format_credential(Credential.from_dict(s["object"]))).to_dict() == s["object"]


def _token(obj: Any) -> str:
    return "Payment " + encode_b64_json(obj)


ECHO = {"id": "a", "realm": "r", "method": "tempo", "intent": "charge", "request": "e30"}


@pytest.mark.parametrize("value", [
    "Payment",
    "Payment ",
    "Payment a b",
    "Payment e30=",  # padding is not base64url-nopad
    "Payment " + b64url_encode(b"\xff\xfe"),
    "Payment " + b64url_encode(b"{"),
    _token({"challenge": ECHO}),  # no payload
    _token({"challenge": ECHO, "payload": []}),
    _token({"challenge": {**ECHO, "request": {}}, "payload": {}}),  # request must be the wire string
    _token({"challenge": {**ECHO, "request": "e30="}, "payload": {}}),
    _token({"challenge": {**ECHO, "id": ""}, "payload": {}}),
    _token({"challenge": "x", "payload": {}}),
    _token({"challenge": ECHO, "payload": {}, "source": 5}),
    "Payment " + b64url_encode(b'{"challenge": {}, "challenge": {}}'),  # duplicate key
])
def test_malformed(value: str) -> None:
    """Each is a MalformedCredential."""
    with pytest.raises(MalformedCredential):
        parse_credential(value)


def test_scheme_case_and_whitespace() -> None:
    """The scheme is case-insensitive; surrounding whitespace is tolerated; unknown keys ignored."""
    cred = parse_credential("  payment  " + encode_b64_json({"challenge": ECHO, "payload": {"x": 1},
                                                           "future": True}) + " ")
    assert cred.challenge.id == "a" and cred.payload == {"x": 1} and cred.source is None


def test_echo_is_byte_exact() -> None:
    """The echoed request string is kept as is, and written back unchanged."""
    loose = "eyJiIjogMSwgImEiOiAyfQ"
    cred = parse_credential(_token({"challenge": {**ECHO, "request": loose}, "payload": {}}))
    assert cred.challenge.request == loose
    assert parse_credential(format_credential(cred)).challenge.request == loose


def test_payload_is_copied() -> None:
    """The frozen credential keeps its own copy of the payload."""
    payload = {"type": "hash", "hash": "0x1"}
    cred = Credential(challenge=Challenge.from_dict(ECHO), payload=payload, source="did:x")
    payload["hash"] = "0x2"
    assert cred.payload["hash"] == "0x1"
    nested: dict[str, Any] = {"type": "x", "proof": {"parts": ["a"]}}  # copied deeply
    cred = Credential(challenge=Challenge.from_dict(ECHO), payload=nested)
    nested["proof"]["parts"].append("b")
    assert cred.payload["proof"] == {"parts": ["a"]}


def test_format_error_on_unencodable_payload() -> None:
    """A payload JSON cannot carry → FormatError."""
    cred = Credential(challenge=Challenge.from_dict(ECHO), payload={"x": float("nan")})
    with pytest.raises(FormatError):
        format_credential(cred)


def test_length_cap() -> None:
    """Values over MAX_CREDENTIAL_LENGTH are refused before any decoding; 4 KB+ is accepted."""
    big = {"challenge": ECHO, "payload": {"pad": "x" * 8000}}
    assert parse_credential(_token(big)).payload["pad"] == "x" * 8000
    with pytest.raises(MalformedCredential, match="at most"):
        parse_credential("Payment " + "A" * (MAX_CREDENTIAL_LENGTH + 1))


@settings(max_examples=200, deadline=None)
@given(challenges, st.dictionaries(text, text, max_size=4), st.one_of(st.none(), text))
def test_format_payment_matches_format_credential(challenge: Challenge, payload: dict[str, str],
                                                   source: str | None) -> None:
    """The payer's shortcut writes the same bytes as format_credential(Credential(...))."""
    expected = format_credential(Credential(challenge=challenge, payload=payload, source=source))
    assert format_payment(challenge, payload, source) == expected


def test_format_payment_falls_back_for_other_payloads() -> None:
    challenge = Challenge.from_dict(ECHO)
    payload: Any = {"n": 1, "nested": {"b": [True, None]}}
    expected = format_credential(Credential(challenge=challenge, payload=payload, source=None))
    assert format_payment(challenge, payload, None) == expected
    with pytest.raises(FormatError):
        format_payment(challenge, {"type": "\ud800"}, None)


@settings(max_examples=400)
@given(st.text(alphabet=" \t\r\nPaymentAYMENT:;,=+/-_.~aZz09\x00\u00e9\u0660", max_size=24))
def test_split_authorization_is_the_full_expression(value: str) -> None:
    """The head-then-alphabet split finds exactly what ``_AUTHORIZATION.fullmatch`` finds."""
    from mpp_claude.protocol.credential import _AUTHORIZATION, _split_authorization

    m = _AUTHORIZATION.fullmatch(value)
    assert _split_authorization(value) == (None if m is None else (m.group(1), m.group(2)))
    assert _split_authorization(f" Payment  {value}\t") == (
        None if (m := _AUTHORIZATION.fullmatch(f" Payment  {value}\t")) is None else (m.group(1), m.group(2)))
