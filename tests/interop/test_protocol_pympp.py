"""pympp as a peer for the wire format: each side parses what the other formats, and the
HMAC challenge ids agree (pympp is test-only; mpp_claude never imports it)."""

from __future__ import annotations

from datetime import datetime, timezone

import mpp
import pytest
from mpp import _parsing as pympp_parsing

from mpp_claude.protocol import (
    Challenge,
    Credential,
    encode_b64_json,
    format_challenge,
    format_credential,
    format_receipt,
    new_challenge,
    parse_challenge,
    parse_credential,
    parse_receipt,
    verify_challenge_id,
)
from mpp_claude.protocol import Receipt as OurReceipt

SECRET = "interop-secret-that-is-at-least-32-bytes"
REQUEST = {"amount": "1000", "currency": "0x20c0000000000000000000000000000000000000",
           "recipient": "0x1234567890abcdef1234567890abcdef12345678", "methodDetails": {"chainId": 42431}}
DESCRIPTIONS = ["plain", 'with "quotes" and \\ backslash', "café ☕ 😀 — Payment"]


@pytest.mark.parametrize("description", DESCRIPTIONS)
def test_pympp_parses_our_challenge(description: str) -> None:
    """Our formatted challenge parses in pympp with the same fields, and pympp verifies our id."""
    ours = new_challenge(SECRET, realm="api.example.com", method="tempo", intent="charge", request=REQUEST,
                         expires="2026-01-29T12:05:00Z", digest="sha-256=:abc=:", description=description,
                         opaque={"route": "/v1/chat"}, header="Payment-Authorization")
    theirs = pympp_parsing.parse_www_authenticate(format_challenge(ours))
    assert (theirs.id, theirs.realm, theirs.method, theirs.intent) == (ours.id, ours.realm, "tempo", "charge")
    assert theirs.request == REQUEST and theirs.request_b64 == ours.request
    assert (theirs.expires, theirs.digest, theirs.description) == (ours.expires, ours.digest, description)
    assert theirs.opaque == {"route": "/v1/chat"} and theirs.header == "Payment-Authorization"
    assert theirs.verify(SECRET, "api.example.com")


@pytest.mark.parametrize("description", DESCRIPTIONS)
def test_we_parse_pympp_challenge(description: str) -> None:
    """pympp's formatted challenge parses here with the same fields, and our HMAC check accepts it."""
    theirs = mpp.Challenge.create(secret_key=SECRET, realm="api.example.com", method="tempo", intent="charge",
                                  request=REQUEST, expires="2026-01-29T12:05:00Z", description=description,
                                  meta={"nonce": "n1"}, header="Payment-Authorization")
    ours = parse_challenge(theirs.to_www_authenticate("api.example.com"))
    assert ours.id == theirs.id and ours.request_data == REQUEST and ours.description == description
    assert ours.opaque == encode_b64_json({"nonce": "n1"}) and ours.header == "Payment-Authorization"
    assert verify_challenge_id(SECRET, ours)


def test_credentials_both_ways() -> None:
    """Credentials formatted on either side parse on the other with the echo byte-exact."""
    ch = new_challenge(SECRET, realm="api.example.com", method="tempo", intent="charge", request=REQUEST,
                       expires="2026-01-29T12:05:00Z", opaque={"k": "v"})
    ours = Credential(challenge=ch, payload={"type": "hash", "hash": "0xab"},
                      source="did:pkh:eip155:42431:0x1234567890abcdef1234567890abcdef12345678")
    theirs = pympp_parsing.parse_authorization(format_credential(ours))
    assert theirs.challenge.id == ch.id and theirs.challenge.request == ch.request
    assert theirs.challenge.opaque == ch.opaque and theirs.payload == ours.payload
    assert theirs.source == ours.source
    assert parse_credential(pympp_parsing.format_authorization(theirs)) == ours


def test_receipts_both_ways() -> None:
    """Receipts formatted on either side parse on the other."""
    theirs = mpp.Receipt.success("0xdead", timestamp=datetime(2026, 1, 29, 12, tzinfo=timezone.utc),
                                 external_id="order-1")
    ours = parse_receipt(pympp_parsing.format_payment_receipt(theirs))
    assert (ours.status, ours.reference, ours.method, ours.external_id) == ("success", "0xdead", "tempo",
                                                                           "order-1")
    assert ours.timestamp_at == datetime(2026, 1, 29, 12, tzinfo=timezone.utc)
    back = pympp_parsing.parse_payment_receipt(format_receipt(OurReceipt(
        status="success", timestamp="2026-01-29T12:00:00Z", reference="0xbeef", method="tempo",
        external_id="o-2")))
    assert (back.reference, back.external_id) == ("0xbeef", "o-2")


def test_pympp_escape_convention_matches() -> None:
    """pympp writes characters above U+00FF as \\uXXXX; we read and write the same form."""
    assert pympp_parsing._escape_quoted("☕😀") == format_challenge(Challenge(
        id="a", realm="r", method="tempo", intent="charge", request="e30", description="☕😀")
    ).split('description="')[1].rstrip('"')
