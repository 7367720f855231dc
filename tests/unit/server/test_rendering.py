"""payment_problem: the kept body of a plain PaymentRequired is the body rendered afresh."""

from __future__ import annotations

import pytest

from mpp_claude.errors import InvalidChallenge, PaymentRequired, VerificationError
from mpp_claude.protocol.problem import Problem
from mpp_claude.server.rendering import payment_problem


@pytest.mark.parametrize("exc", [
    PaymentRequired("this request costs money: pay one of the offered challenges"),
    PaymentRequired("another text"), PaymentRequired("pay", challengeId="abc"),
    InvalidChallenge("forged", challengeId="x"),
], ids=["usual", "other-text", "extension", "refused"])
def test_body_is_the_problem_of_the_error(exc: VerificationError) -> None:
    """Every time (the first and later renderings): RFC 9457 JSON of the error, status and headers."""
    for _ in range(2):
        response = payment_problem(exc, [])
        assert response.body == Problem.from_error(exc).to_json()
        assert response.status_code == exc.status == 402
        assert (b"cache-control", b"no-store") in response.raw_headers
        assert ((b"retry-after", b"60") in response.raw_headers) is not isinstance(exc, PaymentRequired)
