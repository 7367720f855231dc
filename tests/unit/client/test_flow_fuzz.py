"""Hostile 402s: whatever a server sends, the flow answers Deliver/Pay or a typed client error.

Never a bare KeyError/IndexError/ValueError, and never a Pay for a challenge the policy did
not allow (style.md: "bad input gets a typed exception ... never a payment")."""

from __future__ import annotations

import json
import time

from _shop import Shop
from hypothesis import event, given, settings
from hypothesis import strategies as st

from mpp_claude.client._flow import Deliver, Pay, PaymentFlow, Resend
from mpp_claude.client.policy import Policy, Target
from mpp_claude.errors import ClientPaymentError
from mpp_claude.protocol.challenge import format_challenge, new_challenge
from mpp_claude.tempo import tip20

TARGET = Target("https", "shop.test", None, "/v1/x")
POLICY = Policy(["https://shop.test"], chain_id=31337)
SECRET = "fuzz-secret-that-is-at-least-32-bytes-long!!"

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=20),
    lambda kids: st.lists(kids, max_size=3) | st.dictionaries(st.text(max_size=8), kids, max_size=3),
    max_leaves=8)
# near-valid field values (two of three draws), so many examples get all the way to a Pay
def _mostly(*good: object) -> st.SearchStrategy[object]:
    return st.one_of(st.sampled_from(good), st.sampled_from(good), json_values)


FIELDS = {
    "amount": _mostly("10000", "1000000", "1000001", "0", "-1", "1e3", 10000),
    "currency": _mostly(tip20.PATH_USD, tip20.PATH_USD, tip20.ALPHA_USD, "0x" + "99" * 20, "usd"),
    "recipient": _mostly("0x" + "ab" * 20, "0x" + "ab" * 20, "0xAB", ""),
    "methodDetails": st.one_of(st.fixed_dictionaries(
        {"chainId": _mostly(31337, 31337, 4217, 0, "31337")},
        optional={"feePayer": _mostly(True, False),
                  "splits": _mostly([{"amount": "1", "recipient": "0x" + "cd" * 20}], [{"amount": "x"}],
                                    [])}),
        json_values),
}


def _challenge_with(request: object) -> str:
    return format_challenge(new_challenge(SECRET, realm="shop.test", method="tempo", intent="charge",
                                          request=request))  # type: ignore[arg-type]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.text(max_size=200), max_size=3), st.binary(max_size=200))
def test_arbitrary_headers(values: list[str], body: bytes) -> None:
    flow = PaymentFlow(POLICY, TARGET)
    headers = [("www-authenticate", v) for v in values]
    try:
        action = flow.on_response(402, headers, body, now=int(time.time()))
    except ClientPaymentError:
        return
    assert isinstance(action, Deliver) and not action.paid  # only "not MPP": passed through


@settings(max_examples=300, deadline=None)
@given(st.fixed_dictionaries(FIELDS, optional={"x": json_values}))
def test_arbitrary_request_objects(request: dict[str, object]) -> None:
    """A validly encoded challenge whose request JSON is anything."""
    try:
        header = _challenge_with(request)
    except ValueError:  # not encodable as a challenge at all
        return
    flow = PaymentFlow(POLICY, TARGET)
    try:
        action = flow.on_response(402, [("www-authenticate", header)], now=int(time.time()))
    except ClientPaymentError as exc:
        event(f"refused: {type(exc).__name__}")
        return
    event("paid")
    assert isinstance(action, Pay)
    assert action.offer.amount <= 1_000_000 and action.offer.chain_id == 31337
    assert action.offer.currency in {t.address for t in tip20.KNOWN_TOKENS[31337]}


@settings(max_examples=200, deadline=None)
@given(json_values, st.integers(min_value=100, max_value=599))
def test_any_answer_to_a_credential(body: object, status: int) -> None:
    """After paying, any status and body: Deliver, or PaymentRejected for a 402; never Pay."""
    flow = PaymentFlow(POLICY, TARGET, credential=Resend("Authorization", "Payment x"))
    headers = [("www-authenticate", format_challenge(Shop().challenge())), ("payment-receipt", "garbage")]
    try:
        action = flow.on_response(status, headers, json.dumps(body).encode(), now=int(time.time()))
    except ClientPaymentError:
        assert status == 402
        return
    assert isinstance(action, Deliver) and action.paid and status != 402
