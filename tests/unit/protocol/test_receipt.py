"""Payment-Receipt parse/format (no receipt vectors were available; see the vectors README)."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

import pytest

from mpp_claude.errors import FormatError, MalformedReceipt
from mpp_claude.protocol import Receipt, b64url_encode, encode_b64_json, format_receipt, parse_receipt

WIRE = {"status": "success", "method": "tempo", "timestamp": "2026-01-29T12:00:00Z",
        "reference": "0xabc", "externalId": "order-1", "channelId": "0x01", "acceptedCumulative": "5"}


def test_parse_wire_object() -> None:
    """Known fields become attributes; method extras go to `extra`."""
    r = parse_receipt(encode_b64_json(WIRE))
    assert (r.status, r.method, r.reference, r.external_id) == ("success", "tempo", "0xabc", "order-1")
    assert r.extra == {"channelId": "0x01", "acceptedCumulative": "5"}
    assert r.timestamp_at == datetime(2026, 1, 29, 12, tzinfo=timezone.utc)
    assert r.to_dict() == {"status": "success", "method": "tempo", "timestamp": "2026-01-29T12:00:00Z",
                           "reference": "0xabc", "externalId": "order-1",
                           "extra": {"channelId": "0x01", "acceptedCumulative": "5"}}


def test_round_trip_keeps_extras_flat() -> None:
    """format writes extras back at the top level; parse(format(r)) == r."""
    r = parse_receipt(encode_b64_json(WIRE))
    assert parse_receipt(format_receipt(r)) == r
    assert parse_receipt(format_receipt(r)).to_wire_dict() == WIRE


def test_canonical_dict_round_trip() -> None:
    """from_dict(to_dict()) is the identity; unknown canonical keys are refused."""
    r = Receipt(status="success", timestamp="2026-01-29T12:00:00Z", reference="ref")
    assert r.to_dict() == {"status": "success", "timestamp": "2026-01-29T12:00:00Z", "reference": "ref"}
    assert Receipt.from_dict(r.to_dict()) == r
    with pytest.raises(MalformedReceipt, match="unknown"):
        Receipt.from_dict({**r.to_dict(), "channelId": "x"})


@pytest.mark.parametrize("obj", [
    [],
    {"status": "success", "timestamp": "2026-01-29T12:00:00Z"},
    {"status": "", "timestamp": "2026-01-29T12:00:00Z", "reference": "r"},
    {"status": "success", "timestamp": "yesterday", "reference": "r"},
    {"status": "success", "timestamp": "2026-02-30T12:00:00Z", "reference": "r"},
    {"status": "success", "timestamp": "2026-01-29T12:00:00Z", "reference": 7},
    {"status": "success", "timestamp": "2026-01-29T12:00:00Z", "reference": "r", "method": 1},
    {"status": "success", "timestamp": "2026-01-29T12:00:00Z", "reference": "r", "externalId": 5},
])
def test_malformed_objects(obj: Any) -> None:
    """Missing, empty or mistyped fields → MalformedReceipt."""
    with pytest.raises(MalformedReceipt):
        parse_receipt(encode_b64_json(obj))


@pytest.mark.parametrize("value", ["", "not base64!", b64url_encode(b"\xff"), "Payment e30"])
def test_malformed_text(value: str) -> None:
    """Undecodable values → MalformedReceipt."""
    with pytest.raises(MalformedReceipt):
        parse_receipt(value)


def test_extra_cannot_shadow_fields() -> None:
    """`extra` may not repeat a named field (it would be ambiguous on the wire)."""
    with pytest.raises(MalformedReceipt, match="reference"):
        Receipt(status="success", timestamp="2026-01-29T12:00:00Z", reference="r", extra={"reference": "x"})


def test_format_error() -> None:
    """An extra JSON cannot carry → FormatError."""
    r = Receipt(status="success", timestamp="2026-01-29T12:00:00Z", reference="r", extra={"x": float("inf")})
    with pytest.raises(FormatError):
        format_receipt(r)


def test_timestamp_is_checked_on_every_receipt_and_wire_dicts_are_fresh() -> None:
    """A refused timestamp is refused every time (the kept parses keep no failure), and each wire
    dict is a new object: changing one changes neither the receipt nor the next dict."""
    for _ in range(2):
        with pytest.raises(MalformedReceipt):
            Receipt(status="success", timestamp="2026-02-30T00:00:00Z", reference="0x1")
    plain = Receipt(status="success", timestamp="2026-01-29T12:00:00Z", reference="0x1", method="tempo")
    plain.to_wire_dict()["status"] = "changed"
    assert plain.to_wire_dict() == {"status": "success", "timestamp": "2026-01-29T12:00:00Z",
                                    "reference": "0x1", "method": "tempo"}
    rich = Receipt(status="success", timestamp="2026-01-29T12:00:00Z", reference="0x1", extra={"a": {"b": 1}})
    rich.to_wire_dict()["a"]["b"] = 2
    assert rich.to_wire_dict()["a"] == {"b": 1}
