"""Property tests: format → parse round trips and the parser contract (typed errors only)."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from mpp_claude.errors import (
    EncodingError,
    FormatError,
    MalformedChallenge,
    MalformedCredential,
    MalformedReceipt,
)
from mpp_claude.protocol import (
    Challenge,
    Credential,
    Receipt,
    b64url_decode,
    b64url_encode,
    canonical_json,
    decode_b64_json,
    decode_json,
    encode_b64_json,
    format_challenge,
    format_credential,
    format_receipt,
    parse_challenges,
    parse_credential,
    parse_receipt,
)

from .strategies import challenges, credentials, garbage_headers, json_values, receipts

FIELDS = ("id", "realm", "expires", "digest", "description", "opaque", "header")


def _has_ctl(value: str | None) -> bool:
    return value is not None and any((c < " " and c != "\t") or c == "\x7f" for c in value)


@given(challenges)
def test_challenge_round_trip(ch: Challenge) -> None:
    """parse(format(ch)) == ch, unless a value holds a control character (then FormatError)."""
    if any(_has_ctl(getattr(ch, name)) for name in FIELDS):
        try:
            format_challenge(ch)
        except FormatError:
            return
        raise AssertionError("a control character was written into a header")
    assert parse_challenges(format_challenge(ch)) == [ch]


@given(st.lists(challenges, min_size=1, max_size=3))
def test_joined_challenges_round_trip(chs: list[Challenge]) -> None:
    """Several formatted challenges comma-joined in one value parse back in order."""
    if any(_has_ctl(getattr(ch, name)) for ch in chs for name in FIELDS):
        return
    assert parse_challenges(", ".join(format_challenge(ch) for ch in chs)) == chs


@given(credentials)
def test_credential_round_trip(cred: Credential) -> None:
    """parse(format(cred)) == cred (any Unicode anywhere: it is base64url on the wire)."""
    assert parse_credential(format_credential(cred)) == cred


@given(receipts)
def test_receipt_round_trip(receipt: Receipt) -> None:
    """parse(format(r)) == r, and the canonical dict form round-trips too."""
    assert parse_receipt(format_receipt(receipt)) == receipt
    assert Receipt.from_dict(receipt.to_dict()) == receipt


@given(st.binary())
def test_base64url_round_trip(data: bytes) -> None:
    """decode(encode(b)) == b."""
    assert b64url_decode(b64url_encode(data)) == data


@given(json_values)
def test_jcs_idempotent(value: Any) -> None:
    """Canonicalising the parse of canonical JSON gives the same bytes."""
    once = canonical_json(value)
    assert canonical_json(decode_json(once)) == once


@settings(max_examples=300)
@given(garbage_headers)
def test_challenge_parser_contract(value: str) -> None:
    """Garbage → a list of challenges or MalformedChallenge, nothing else."""
    try:
        parse_challenges(value)
    except MalformedChallenge:
        pass


@settings(max_examples=300)
@given(garbage_headers)
def test_credential_and_receipt_parser_contract(value: str) -> None:
    """Garbage → a value or the typed parse error, nothing else."""
    try:
        parse_credential(value)
    except MalformedCredential:
        pass
    try:
        parse_receipt(value)
    except MalformedReceipt:
        pass
    try:
        decode_b64_json(value)
    except EncodingError:
        pass


@settings(max_examples=300)
@given(json_values)
def test_structured_garbage_contract(value: Any) -> None:
    """Arbitrary JSON inside a well-encoded credential or receipt → value or typed error."""
    try:
        parse_credential("Payment " + encode_b64_json(value))
    except MalformedCredential:
        pass
    try:
        parse_receipt(encode_b64_json(value))
    except MalformedReceipt:
        pass
    shaped = {"challenge": value, "payload": value}
    try:
        parse_credential("Payment " + encode_b64_json(shaped))
    except MalformedCredential:
        pass
