"""Session credential payloads: parsing with format checks, building, SSE and receipt fields."""

from __future__ import annotations

from typing import Any

import pytest

from mpp_claude.errors import MalformedCredentialProblem, ParseError
from mpp_claude.tempo.session import ChannelAccount, VoucherDomain, sign_voucher
from mpp_claude.tempo.session.payloads import (
    ClosePayload,
    NeedVoucher,
    OpenPayload,
    TopUpPayload,
    VoucherPayload,
    close_payload,
    need_voucher_event,
    open_payload,
    parse_need_voucher_event,
    parse_session_payload,
    session_receipt_fields,
    top_up_payload,
    voucher_payload,
)
from mpp_claude.tempo.signer import LocalSigner

SIGNER = LocalSigner(b"\x05" * 32)
DOMAIN = VoucherDomain(4217, "0x" + "e4" * 20)
CID = "0x" + "5d" * 32
VOUCHER = sign_voucher(SIGNER, DOMAIN, CID, 250_000)
RAW = bytes.fromhex("76f9") + b"\x01" * 40


def test_round_trips() -> None:
    """Each builder's output parses back to the same typed payload."""
    assert parse_session_payload(voucher_payload(VOUCHER)) == VoucherPayload(VOUCHER)
    assert parse_session_payload(close_payload(VOUCHER)) == ClosePayload(VOUCHER)
    opened = parse_session_payload(open_payload(RAW, VOUCHER, authorized_signer="0x" + "AB" * 20))
    assert opened == OpenPayload(CID, RAW, VOUCHER, "0x" + "ab" * 20)
    assert parse_session_payload(top_up_payload(CID, RAW, 5_000_000)) == TopUpPayload(CID, RAW, 5_000_000)


def test_mixed_case_hex_is_normalised_and_unknown_fields_ignored() -> None:
    """Upper-case hex is accepted and normalised; unknown fields are ignored."""
    payload = {**voucher_payload(VOUCHER), "channelId": CID.upper().replace("0X", "0x"), "future": 1}
    parsed = parse_session_payload(payload)
    assert isinstance(parsed, VoucherPayload) and parsed.voucher.channel_id == CID


def _bad(**over: Any) -> dict[str, Any]:
    return {**voucher_payload(VOUCHER), **over}


@pytest.mark.parametrize("payload", [
    None, [], "voucher",
    _bad(action="refund"), _bad(action=None),
    _bad(cumulativeAmount=250000), _bad(cumulativeAmount="-1"), _bad(cumulativeAmount="01"),
    _bad(cumulativeAmount=" 1"), _bad(cumulativeAmount="1e6"), _bad(cumulativeAmount=str(2**128)),
    _bad(channelId="0x1234"), _bad(channelId="5d" * 32), _bad(channelId="0x" + "zz" * 32),
    _bad(signature="0x" + "11" * 63), _bad(signature=None),
    {**open_payload(RAW, VOUCHER), "type": "hash"},
    {**open_payload(RAW, VOUCHER), "transaction": "0x"},
    {**open_payload(RAW, VOUCHER), "transaction": "0x" + "00" * 20_000},
    {**open_payload(RAW, VOUCHER), "authorizedSigner": "0x12"},
    {**top_up_payload(CID, RAW, 1), "additionalDeposit": 1},
], ids=lambda p: str(p)[:40])
def test_malformed_payloads_are_refused(payload: Any) -> None:
    """Unknown actions, non-string or non-decimal amounts, bad hex lengths: malformed-credential."""
    with pytest.raises(MalformedCredentialProblem):
        parse_session_payload(payload)


def test_need_voucher_event_and_receipt_fields() -> None:
    """SSE need-voucher data and receipt fields carry decimal strings and the channel id."""
    account = ChannelAccount(CID, accepted_cumulative=250_000, spent=237_500)
    assert need_voucher_event(account, required_cumulative=250_025, deposit=500_000) == {
        "channelId": CID, "requiredCumulative": "250025", "acceptedCumulative": "250000", "deposit": "500000"}
    fields = session_receipt_fields(account, challenge_id="c_1", units=500)
    assert fields == {"method": "tempo", "intent": "session", "reference": CID, "challengeId": "c_1",
                      "channelId": CID, "acceptedCumulative": "250000", "spent": "237500", "units": 500}
    assert session_receipt_fields(account, challenge_id="c", tx_hash="0xab")["txHash"] == "0xab"


def test_need_voucher_round_trip_and_refusals() -> None:
    """The client parses what the server emits; malformed event data is a ParseError."""
    import json

    account = ChannelAccount(CID, accepted_cumulative=10, spent=10)
    data = json.dumps(need_voucher_event(account, required_cumulative=35, deposit=100))
    got = parse_need_voucher_event(data)
    assert got == NeedVoucher(CID, 35, 10, 100)
    assert parse_need_voucher_event(data.encode()) == got
    for bad in ("{", "[]", json.dumps({"channelId": CID}), json.dumps({**json.loads(data), "deposit": 5})):
        with pytest.raises(ParseError):
            parse_need_voucher_event(bad)
