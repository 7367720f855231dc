"""ChargeRequest: base units, lower-case addresses, and a precise error for each bad field."""

from __future__ import annotations

from typing import Any

import pytest

from mpp_claude.errors import MalformedChallenge
from mpp_claude.tempo.request import DEFAULT_CHAIN_ID, ChargeRequest, Split, Transfer

PAYEE = "0x742d35Cc6634c0532925a3b844bC9e7595F8fE00"
TOKEN = "0x20c0000000000000000000000000000000000000"
BASE: dict[str, Any] = {"amount": "1000000", "currency": TOKEN, "recipient": PAYEE}


def test_minimal_request() -> None:
    """Defaults: chain 42431, self-paid, both modes, no memo or splits."""
    req = ChargeRequest.from_request(BASE)
    assert req.amount == 1_000_000 and req.recipient == PAYEE.lower() and req.chain_id == DEFAULT_CHAIN_ID
    assert req.allows("pull") and req.allows("push") and not req.fee_payer
    memo = b"\x01" * 32
    assert req.transfers(memo) == [Transfer(PAYEE.lower(), 1_000_000, memo)]


def test_full_request() -> None:
    """methodDetails: chain, sponsor, memo, splits (primary gets the rest), modes; unknown keys ignored."""
    splits = [{"amount": "100", "recipient": TOKEN.replace("20c0", "aaaa"), "memo": "0x" + "11" * 32},
              {"amount": "50", "recipient": TOKEN.replace("20c0", "bbbb")}]
    req = ChargeRequest.from_request({**BASE, "unknown": 1, "methodDetails": {
        "chainId": 4217, "feePayer": True, "memo": "0x" + "22" * 32, "splits": splits,
        "supportedModes": ["pull"], "future": True}})
    assert req.chain_id == 4217 and req.fee_payer and req.memo == b"\x22" * 32
    assert req.splits[1] == Split(TOKEN.replace("20c0", "bbbb"), 50, None)
    assert req.primary_amount == 1_000_000 - 150
    assert not req.allows("push") and req.allows("pull")
    assert [t.amount for t in req.transfers(req.memo)] == [999_850, 100, 50]


def test_sponsored_charge_never_allows_push() -> None:
    """feePayer: true forbids hash credentials even when supportedModes lists push."""
    req = ChargeRequest.from_request({**BASE, "methodDetails": {"feePayer": True}})
    assert not req.allows("push")


@pytest.mark.parametrize(("patch", "message"), [
    ({"amount": 1000}, "amount must be a string"),
    ({"amount": "1.5"}, "amount must be a string"),
    ({"amount": "-1"}, "amount must be a string"),
    ({"amount": "01"}, "amount must be a string"),
    ({"currency": "pathUSD"}, "currency must be"),
    ({"recipient": "0x1234"}, "recipient must be"),
    ({"methodDetails": []}, "methodDetails must be a JSON object"),
    ({"methodDetails": {"chainId": "4217"}}, "chainId must be a positive integer"),
    ({"methodDetails": {"chainId": True}}, "chainId must be a positive integer"),
    ({"methodDetails": {"feePayer": "yes"}}, "feePayer must be a boolean"),
    ({"methodDetails": {"memo": "0x1234"}}, "memo must be"),
    ({"methodDetails": {"splits": []}}, "splits must be a list"),
    ({"methodDetails": {"splits": [{"amount": "0", "recipient": PAYEE}]}}, "amount must be positive"),
    ({"methodDetails": {"splits": [{"amount": "1000000", "recipient": PAYEE}]}}, "add up to the whole"),
    ({"methodDetails": {"splits": ["x"]}}, r"splits\[0\] must be a JSON object"),
    ({"methodDetails": {"supportedModes": ["teleport"]}}, "supportedModes"),
])
def test_bad_fields(patch: dict[str, Any], message: str) -> None:
    """Each malformed field raises MalformedChallenge naming it."""
    with pytest.raises(MalformedChallenge, match=message):
        ChargeRequest.from_request({**BASE, **patch})


def test_not_an_object() -> None:
    """A non-object request is refused."""
    with pytest.raises(MalformedChallenge, match="JSON object"):
        ChargeRequest.from_request(["amount"])  # type: ignore[arg-type]
