"""Client-side building: the payment transaction, its window, gas, fee token and credential payloads."""

from __future__ import annotations

from typing import Any

import pytest
from eth_utils.address import to_checksum_address

from mpp_claude.errors import PaymentDeclined
from mpp_claude.tempo import charge, tip20
from mpp_claude.tempo import tx as txmod
from mpp_claude.tempo.memo import attribution_memo
from mpp_claude.tempo.request import ChargeRequest
from mpp_claude.tempo.signer import LocalSigner

NOW = 1_900_000_000
PAYEE = "0x742d35cc6634c0532925a3b844bc9e7595f8fe00"
REQ: dict[str, Any] = {"amount": "5000", "currency": tip20.PATH_USD, "recipient": PAYEE,
                       "methodDetails": {"chainId": 42431}}
PAYER = LocalSigner("0x" + "11" * 32)


def _build(req: dict[str, Any] = REQ, **kw: Any) -> txmod.TempoTransaction:
    args: dict[str, Any] = dict(challenge_id="ch", realm="api.example.com", now=NOW, expires=NOW + 300,
                                max_fee_per_gas=4 * 10**10)
    args.update(kw)
    return charge.build_charge_transaction(ChargeRequest.from_request(req), **args)


def test_transaction_shape() -> None:
    """Expiring nonce, valid_before now+25, one transferWithMemo with the attribution memo, fee token."""
    tx = _build()
    assert (tx.nonce_key, tx.nonce, tx.valid_before) == (txmod.EXPIRING_NONCE_KEY, 0, NOW + 25)
    assert tx.chain_id == 42431
    assert tx.calls == (txmod.Call(txmod.address_bytes(tip20.PATH_USD), tip20.encode_transfer_with_memo(
        PAYEE, 5000, attribution_memo("ch", "api.example.com"))),)
    assert tx.fee_token == txmod.address_bytes(tip20.PATH_USD) and not tx.sponsored
    assert tx.gas_limit == charge.charge_gas_limit(1) == charge.MIN_GAS == 1_000_000
    assert _build(fee_token=tip20.ALPHA_USD).fee_token == txmod.address_bytes(tip20.ALPHA_USD)
    assert _build(gas_limit=123_456).gas_limit == 123_456


def test_valid_before_is_capped_by_expiry() -> None:
    """valid_before = min(now + 25, expires); an expired challenge is declined, never signed."""
    assert charge.expiring_valid_before(NOW, None) == NOW + 25
    assert charge.expiring_valid_before(NOW, NOW + 10) == NOW + 10
    with pytest.raises(PaymentDeclined, match="expired"):
        charge.expiring_valid_before(NOW, NOW)
    with pytest.raises(PaymentDeclined, match="expired"):
        _build(expires=NOW - 1)


def test_zero_amount_needs_a_proof() -> None:
    """A zero-amount charge is not paid with a transaction."""
    with pytest.raises(PaymentDeclined, match="proof"):
        _build({**REQ, "amount": "0"})


def test_server_memo_and_splits() -> None:
    """A server memo replaces the attribution memo; splits add transfer/transferWithMemo calls."""
    split_memo = "0x" + "33" * 32
    tx = _build({**REQ, "methodDetails": {"memo": "0x" + "22" * 32, "splits": [
        {"amount": "100", "recipient": "0x" + "aa" * 20},
        {"amount": "50", "recipient": "0x" + "bb" * 20, "memo": split_memo}]}})
    decoded = [tip20.decode_transfer_call(c.data) for c in tx.calls]
    assert decoded == [tip20.TransferCall(PAYEE, 4850, b"\x22" * 32),
                       tip20.TransferCall("0x" + "aa" * 20, 100, None),
                       tip20.TransferCall("0x" + "bb" * 20, 50, b"\x33" * 32)]
    assert tx.gas_limit == charge.charge_gas_limit(3) == 1_000_000
    assert charge.charge_gas_limit(4) == 1_300_000  # above the floor: 100k + 300k per transfer
    assert charge.charge_gas_limit(11) == charge.MAX_GAS


def test_signed_payloads() -> None:
    """Self-paid: 0x76 bytes with a known hash; sponsored: a 0x78 envelope and no hash yet."""
    signed = charge.sign_charge(_build(), PAYER)
    assert signed.raw[0] == 0x76 and signed.tx_hash == txmod.tx_hash(signed.raw)
    assert signed.payload() == {"type": "transaction", "signature": "0x" + signed.raw.hex()}
    assert signed.payload("hash") == {"type": "hash", "hash": signed.tx_hash}
    assert signed.source == f"did:pkh:eip155:42431:{to_checksum_address(PAYER.address)}"
    sponsored = charge.sign_charge(_build({**REQ, "methodDetails": {"chainId": 42431, "feePayer": True}}),
                                   PAYER)
    assert sponsored.raw[0] == 0x78 and sponsored.tx_hash is None and sponsored.tx.fee_token is None
    decoded = txmod.decode(sponsored.raw)
    assert decoded.declared_sender == PAYER.address and txmod.recover_sender(decoded.tx) == PAYER.address
    with pytest.raises(ValueError, match="sponsored"):
        sponsored.payload("hash")
