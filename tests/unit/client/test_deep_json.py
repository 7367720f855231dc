"""A hostile server's deeply nested 402 body is ignored, never a crash of the paying process."""

from __future__ import annotations

import eth_account  # noqa: F401  (raises the recursion limit, as in every paying process)

from mpp_claude.client._flow import problem_of


def test_deep_problem_body_is_not_a_problem() -> None:
    """300 000 nested brackets in a 402 body give ``None``, not a segfault or RecursionError."""
    assert problem_of(b"[" * 300_000) is None


def test_regular_problem_body_still_parses() -> None:
    """A normal problem+json body is still read."""
    problem = problem_of(b'{"type":"https://paymentauth.org/problems/payment-expired","status":402}')
    assert problem is not None and problem.status == 402
