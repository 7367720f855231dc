"""The sans-I/O PaymentFlow driven by hand (the same flows run through real clients in
test_clients.py and on the devnet in tests/integration/test_client_devnet.py)."""

from __future__ import annotations

import time

import pytest
from _shop import PAYEE, Shop

from mpp_claude.client._flow import Deliver, Pay, PaymentFlow, Resend, header_values, problem_of
from mpp_claude.client.policy import Policy, Target
from mpp_claude.client.receipts import read_receipt
from mpp_claude.errors import (
    BudgetExceeded,
    OriginNotAllowed,
    PaymentOutcomeUnknown,
    PaymentRejected,
    PolicyDenied,
)
from mpp_claude.protocol.challenge import format_challenge
from mpp_claude.protocol.problem import Problem
from mpp_claude.protocol.receipt import Receipt, format_receipt

TARGET = Target("https", "shop.test", None, "/v1/chat/completions")
POLICY = Policy(["https://shop.test"], chain_id=31337)


def _402(shop: Shop) -> list[tuple[str, str]]:
    return [("WWW-Authenticate", format_challenge(shop.challenge()))]


def now() -> int:
    return int(time.time())


class TestOnResponse:
    def test_non_402_unpaid_is_delivered_without_receipt(self) -> None:
        """A 200 before any payment is handed back untouched."""
        flow = PaymentFlow(POLICY, TARGET)
        assert flow.on_response(200, [], now=now()) == Deliver(200, False)

    def test_402_becomes_pay_with_the_parsed_offer(self) -> None:
        """A payable 402 asks for a credential for its challenge."""
        flow = PaymentFlow(POLICY, TARGET)
        action = flow.on_response(402, _402(Shop(price=1234)), now=now())
        assert isinstance(action, Pay)
        assert action.offer.amount == 1234 and action.offer.recipient == PAYEE
        assert action.charge.chain_id == 31337

    def test_cheapest_acceptable_offer_wins(self) -> None:
        """Among several challenges, the cheapest one the policy accepts is chosen."""
        flow = PaymentFlow(POLICY, TARGET)
        headers = [*_402(Shop(price=900)), *_402(Shop(price=300)), *_402(Shop(price=2_000_000))]
        action = flow.on_response(402, headers, now=now())
        assert isinstance(action, Pay) and action.offer.amount == 300

    def test_paid_2xx_carries_the_receipt(self) -> None:
        """After the credential, a 2xx is delivered with its Payment-Receipt (parsed when needed)."""
        flow = PaymentFlow(POLICY, TARGET)
        flow.on_response(402, _402(Shop()), now=now())
        assert flow.on_credential("Authorization", "Payment abc") == Resend("Authorization", "Payment abc")
        receipt = Receipt(status="success", timestamp="2026-11-25T12:00:00Z", reference="0xab")
        action = flow.on_response(200, [("Payment-Receipt", format_receipt(receipt))], now=now())
        assert action == Deliver(200, True, format_receipt(receipt))
        assert read_receipt(format_receipt(receipt)) == (receipt, None)
        unpaid = PaymentFlow(POLICY, TARGET).on_response(200, [("payment-receipt", "x")], now=now())
        assert unpaid == Deliver(200, False)  # a receipt without a payment is nothing of ours

    def test_paid_2xx_with_garbage_receipt_is_still_delivered(self) -> None:
        """A malformed receipt never loses the paid response; the error is kept."""
        flow = PaymentFlow(POLICY, TARGET, credential=Resend("Authorization", "Payment x"))
        action = flow.on_response(200, [("payment-receipt", "!!!")], now=now())
        assert action == Deliver(200, True, "!!!")
        got, why = read_receipt("!!!")
        assert got is None and why and "Payment-Receipt" in why
        assert read_receipt(None) == (None, "missing")
        assert flow.on_response(200, [], now=now()) == Deliver(200, True, None)

    def test_402_after_credential_is_a_rejection_with_problem(self) -> None:
        """Never a second payment: a 402 answering our credential raises PaymentRejected."""
        flow = PaymentFlow(POLICY, TARGET, credential=Resend("Authorization", "Payment x"))
        body = Problem.of("verification-failed", "memo mismatch").to_json()
        with pytest.raises(PaymentRejected) as info:
            flow.on_response(402, _402(Shop()), body, now=now())
        assert info.value.problem["detail"] == "memo mismatch"
        assert "memo mismatch" in str(info.value)

    def test_malformed_challenge_is_a_typed_refusal(self) -> None:
        """Garbage in WWW-Authenticate is PolicyDenied(rule=malformed_challenge), not a crash."""
        flow = PaymentFlow(POLICY, TARGET)
        with pytest.raises(PolicyDenied) as info:
            flow.on_response(402, [("www-authenticate", "Payment id=")], now=now())
        assert info.value.rule == "malformed_challenge"

    def test_policy_refusals_surface(self) -> None:
        """The policy's typed errors come straight out of on_response."""
        with pytest.raises(OriginNotAllowed):
            PaymentFlow(Policy(chain_id=31337), TARGET).on_response(402, _402(Shop()), now=now())
        with pytest.raises(BudgetExceeded):
            PaymentFlow(POLICY, TARGET).on_response(402, _402(Shop(price=1_000_001)), now=now())


class TestCredentialAndLoss:
    def test_only_one_credential(self) -> None:
        """A second credential for one logical request is a programming error."""
        flow = PaymentFlow(POLICY, TARGET)
        flow.on_credential("Authorization", "Payment a")
        with pytest.raises(RuntimeError):
            flow.on_credential("Authorization", "Payment b")

    def test_loss_before_paying_lets_the_error_through(self) -> None:
        assert PaymentFlow(POLICY, TARGET).on_lost() is None

    def test_loss_after_paying_resends_once_then_unknown(self) -> None:
        """Same credential once more; the second loss is PaymentOutcomeUnknown."""
        flow = PaymentFlow(POLICY, TARGET, credential=Resend("Authorization", "Payment a"))
        assert flow.on_lost() == Resend("Authorization", "Payment a")
        with pytest.raises(PaymentOutcomeUnknown):
            flow.on_lost()


def test_header_values_is_case_insensitive() -> None:
    assert header_values([("A", "1"), ("b", "2"), ("a", "3")], "a") == ["1", "3"]


def test_problem_of_non_json_is_none() -> None:
    assert problem_of(b"<html>") is None
    assert problem_of(b"[]") is None


def test_non_mpp_402_is_passed_through() -> None:
    """A 402 without any Payment challenge (another API's 'out of credits') is not ours to pay."""
    flow = PaymentFlow(POLICY, TARGET)
    assert flow.on_response(402, [("www-authenticate", 'Bearer realm="x"')], now=now()) == Deliver(402, False)
    assert flow.on_response(402, [], now=now()) == Deliver(402, False)


def test_rejection_text_is_sanitised() -> None:
    """Server text in our errors carries no escape sequences and is bounded."""
    flow = PaymentFlow(POLICY, TARGET, credential=Resend("Authorization", "Payment x"))
    body = Problem.of("verification-failed", "\x1b[31mred\x1b[0m" + "x" * 1000).to_json()
    with pytest.raises(PaymentRejected) as info:
        flow.on_response(402, [], body, now=now())
    assert "\x1b" not in str(info.value) and len(str(info.value)) < 400


def test_the_charge_request_is_remembered_per_request_text() -> None:
    """Two challenges with the same ``request`` text give the same (immutable) ChargeRequest;
    a malformed one is refused every time."""
    from mpp_claude.client._flow import to_offer
    from mpp_claude.errors import MalformedChallenge
    from mpp_claude.protocol.challenge import Challenge
    from mpp_claude.protocol.encoding import encode_b64_json

    good = encode_b64_json({"amount": "5", "currency": "0x" + "20c0".ljust(40, "0"), "recipient": PAYEE,
                            "methodDetails": {"chainId": 31337}})
    one = to_offer(Challenge(id="a", realm="r", method="tempo", intent="charge", request=good))
    two = to_offer(Challenge(id="b", realm="r", method="tempo", intent="charge", request=good))
    assert one[1] is two[1] and one[1] is not None and one[1].amount == 5
    assert (one[0].challenge_id, two[0].challenge_id) == ("a", "b")
    bad = encode_b64_json({"amount": "x", "currency": "0x" + "20c0".ljust(40, "0"), "recipient": PAYEE})
    for _ in range(2):
        with pytest.raises(MalformedChallenge, match="amount"):
            to_offer(Challenge(id="c", realm="r", method="tempo", intent="charge", request=bad))
