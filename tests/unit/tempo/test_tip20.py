"""TIP-20 decoding: payment calldata and Transfer / TransferWithMemo logs."""

from __future__ import annotations

from mpp_claude.tempo import tip20

PAYEE = "0x742d35cc6634c0532925a3b844bc9e7595f8fe00"
MEMO = b"\x07" * 32


def _log(topic0: str, *topics: str, data: int = 1000, address: str = tip20.PATH_USD) -> dict[str, object]:
    return {"address": address, "topics": [topic0, *topics], "data": "0x" + data.to_bytes(32, "big").hex(),
            "logIndex": "0x2"}


def _word(addr: str) -> str:
    return "0x" + "00" * 12 + addr[2:]


def test_decode_transfer_calls() -> None:
    """transfer / transferWithMemo calldata decode; anything else (or non-canonical) is None."""
    assert tip20.decode_transfer_call(tip20.encode_transfer(PAYEE, 5)) == tip20.TransferCall(PAYEE, 5, None)
    data = tip20.encode_transfer_with_memo(PAYEE, 7, MEMO)
    assert tip20.decode_transfer_call(data) == tip20.TransferCall(PAYEE, 7, MEMO)
    assert tip20.decode_transfer_call(data + b"\x00") is None
    assert tip20.decode_transfer_call(tip20.encode_balance_of(PAYEE)) is None
    dirty = bytearray(tip20.encode_transfer(PAYEE, 5))
    dirty[4] = 1  # address padding must be zero
    assert tip20.decode_transfer_call(bytes(dirty)) is None


def test_decode_logs() -> None:
    """Both event kinds decode; malformed logs give None; fees are the Transfers to the FeeManager."""
    payer = "0x" + "ab" * 20
    with_memo = _log(tip20.TOPIC_TRANSFER_WITH_MEMO, _word(payer), _word(PAYEE), "0x" + MEMO.hex())
    plain = _log(tip20.TOPIC_TRANSFER, _word(payer), _word(PAYEE))
    fee = _log(tip20.TOPIC_TRANSFER, _word(payer), _word(tip20.FEE_MANAGER), data=42)
    token = tip20.PATH_USD
    assert tip20.decode_transfer_log(with_memo) == tip20.TransferLog(token, payer, PAYEE, 1000, MEMO, 2)
    assert tip20.decode_transfer_log(plain) == tip20.TransferLog(token, payer, PAYEE, 1000, None, 2)
    assert tip20.decode_transfer_log({**plain, "data": "0x01"}) is None
    assert tip20.decode_transfer_log({**plain, "topics": plain["topics"][:2]}) is None  # type: ignore[index]
    assert tip20.decode_transfer_log({**plain, "topics": ["0x" + "00" * 32]}) is None
    bad_topic = [tip20.TOPIC_TRANSFER, "0xzz", _word(PAYEE)]
    assert tip20.decode_transfer_log({**plain, "topics": bad_topic}) is None
    assert tip20.decode_transfer_log({"topics": 5}) is None
    receipt = {"logs": [plain, with_memo, fee, "junk"]}
    assert len(tip20.transfer_logs(receipt)) == 3
    assert [f.amount for f in tip20.fees_paid(receipt)] == [42]
    assert tip20.transfer_logs({"logs": None}) == []


def test_uint_result() -> None:
    """eth_call uint256 results decode; other lengths are refused."""
    assert tip20.decode_uint_result("0x" + (5).to_bytes(32, "big").hex()) == 5
    try:
        tip20.decode_uint_result("0x05")
    except ValueError as exc:
        assert "32-byte" in str(exc)
    else:
        raise AssertionError("short result accepted")
