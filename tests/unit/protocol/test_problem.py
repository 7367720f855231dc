"""RFC 9457 problem details with the paymentauth types."""

from __future__ import annotations

import json

import pytest

from mpp_claude.errors import InvalidChallenge, ParseError
from mpp_claude.protocol import PROBLEM_BASE, PROBLEM_TYPES, Problem, problem_type


def test_of_uses_standard_status_and_title() -> None:
    """Problem.of fills type URI, status and title; extensions are top-level members."""
    p = Problem.of("invalid-challenge", "id unknown", challengeId="abc")
    assert p.to_dict() == {"type": "https://paymentauth.org/problems/invalid-challenge",
                           "title": "Invalid Challenge", "status": 402, "detail": "id unknown",
                           "challengeId": "abc"}
    assert p.suffix == "invalid-challenge"
    assert Problem.from_json(p.to_json()) == p


def test_statuses() -> None:
    """Method unsupported is 400, channel gone is 410, the rest 402."""
    assert PROBLEM_TYPES["method-unsupported"][0] == 400
    assert PROBLEM_TYPES["session/channel-finalized"][0] == 410
    assert Problem.of("payment-required").status == 402
    assert problem_type("session/delta-too-small") == PROBLEM_BASE + "session/delta-too-small"


def test_unknown_type_refused() -> None:
    """Only defined paymentauth suffixes are accepted by Problem.of."""
    with pytest.raises(ValueError):
        Problem.of("no-such-problem")


def test_from_error() -> None:
    """A VerificationError renders as its problem."""
    p = Problem.from_error(InvalidChallenge("expired id", challengeId="x"))
    assert (p.suffix, p.status, p.detail, p.extensions) == ("invalid-challenge", 402, "expired id",
                                                             {"challengeId": "x"})


def test_lenient_reading() -> None:
    """Members of the wrong type are ignored (RFC 9457 §3.1); a missing type is about:blank."""
    p = Problem.from_dict({"status": "402", "title": 5, "detail": "d", "x": 1})
    assert (p.type, p.status, p.title, p.detail, p.extensions) == ("about:blank", None, None, "d", {"x": 1})


@pytest.mark.parametrize("body", [b"[]", b"nope", b'"x"'])
def test_not_an_object(body: bytes) -> None:
    """A body that is not a JSON object → ParseError."""
    with pytest.raises(ParseError):
        Problem.from_json(body)


def test_constructor_validation() -> None:
    """Bad status or a shadowing extension is a caller error."""
    with pytest.raises(ValueError):
        Problem(status=99)
    with pytest.raises(ValueError):
        Problem(extensions={"status": 1})


def test_json_is_canonical() -> None:
    """to_json is compact, key-sorted JSON."""
    body = Problem.of("payment-expired").to_json()
    assert json.loads(body)["title"] == "Payment Expired"
    assert body.startswith(b'{"status":402,')
