"""Accept-Payment parsing, formatting and the server's filter/order (digest §1.11)."""

from __future__ import annotations

import pytest

from mpp_claude.errors import FormatError, ParseError
from mpp_claude.protocol import (
    AcceptRange,
    Challenge,
    format_accept_payment,
    parse_accept_payment,
    select_challenges,
)

SPEC_EXAMPLE = "tempo/charge, tempo/session;q=0, stripe/charge;q=0.5, */session;q=0.3"


def _ch(method: str, intent: str) -> Challenge:
    return Challenge(id=f"{method}-{intent}", realm="r", method=method, intent=intent, request="e30")


OFFERS = [_ch("stripe", "charge"), _ch("tempo", "session"), _ch("tempo", "charge"),
          _ch("lightning", "session")]


def test_parse_spec_example() -> None:
    """The spec's example parses to four ranges with their weights."""
    assert parse_accept_payment(SPEC_EXAMPLE) == [
        AcceptRange("tempo", "charge", 1.0), AcceptRange("tempo", "session", 0.0),
        AcceptRange("stripe", "charge", 0.5), AcceptRange("*", "session", 0.3)]


def test_format_round_trip() -> None:
    """format → parse is the identity; q=1 is omitted."""
    ranges = parse_accept_payment(SPEC_EXAMPLE)
    assert format_accept_payment(ranges) == SPEC_EXAMPLE
    assert parse_accept_payment(format_accept_payment(ranges)) == ranges
    with pytest.raises(FormatError):
        format_accept_payment([])


@pytest.mark.parametrize("value", ["tempo", "tempo/charge;q=2", "tempo/charge;q=0.1234", "tempo/charge;q",
                                   "/charge", "tempo/charge/x"])
def test_malformed(value: str) -> None:
    """Ranges without a slash, bad qvalues or bad parameters → ParseError."""
    with pytest.raises(ParseError):
        parse_accept_payment(value)


def test_select_filters_and_orders() -> None:
    """q=0 removes tempo/session (the most specific range wins over */session); order by q, stable."""
    chosen = select_challenges(OFFERS, SPEC_EXAMPLE)
    assert [c.id for c in chosen] == ["tempo-charge", "stripe-charge", "lightning-session"]


def test_select_ties_keep_server_order() -> None:
    """Equal q keeps the server's order."""
    chosen = select_challenges(OFFERS, "*/*")
    assert chosen == OFFERS


def test_select_absent_malformed_or_empty_result_offers_everything() -> None:
    """No header, a malformed header, or one that matches nothing: every challenge, in server order."""
    assert select_challenges(OFFERS, None) == OFFERS
    assert select_challenges(OFFERS, "garbage") == OFFERS
    assert select_challenges(OFFERS, "card/charge") == OFFERS
    assert select_challenges(OFFERS, ["*/*;q=0"]) == OFFERS


def test_multiple_header_values() -> None:
    """Several Accept-Payment lines are one list."""
    assert [c.id for c in select_challenges(OFFERS, ["tempo/*;q=0.2", "stripe/*"])] == [
        "stripe-charge", "tempo-session", "tempo-charge"]
