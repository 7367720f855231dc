"""Pure verification: payment calls, transaction limits, sponsor policy and receipt logs."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from mpp_claude.errors import PaymentExpired, PaymentInsufficient, VerificationFailed
from mpp_claude.tempo import charge, tip20
from mpp_claude.tempo import tx as txmod
from mpp_claude.tempo.memo import attribution_memo
from mpp_claude.tempo.signer import Signature
from mpp_claude.tempo.verify import (
    ChargeContext,
    SponsorPolicy,
    check_payment_calls,
    check_receipt,
    check_sponsor_policy,
    check_transaction_limits,
    claimed_source,
    intrinsic_gas_floor,
    source_address,
)

NOW = 1_900_000_000
PAYEE = "0x742d35cc6634c0532925a3b844bc9e7595f8fe00"
OTHER = "0x" + "0b" * 20
PAYER = "0x" + "ab" * 20
TOKEN = tip20.PATH_USD
REQ: dict[str, Any] = {"amount": "1000", "currency": TOKEN, "recipient": PAYEE,
                       "methodDetails": {"chainId": 31337}}
CTX = ChargeContext.from_values("ch-1", "api.example.com", REQ, NOW + 300)
MEMO = attribution_memo("ch-1", "api.example.com")


def _tx(*calls: txmod.Call, **kw: Any) -> txmod.TempoTransaction:
    base = dict(chain_id=31337, max_priority_fee_per_gas=0, max_fee_per_gas=10**10, gas_limit=400_000,
                calls=calls, nonce_key=txmod.EXPIRING_NONCE_KEY, valid_before=NOW + 25)
    base.update(kw)
    return txmod.TempoTransaction(**base)  # type: ignore[arg-type]


def _pay(to: str = PAYEE, amount: int = 1000, memo: bytes | None = MEMO, token: str = TOKEN) -> txmod.Call:
    if memo is None:
        data = tip20.encode_transfer(to, amount)
    else:
        data = tip20.encode_transfer_with_memo(to, amount, memo)
    return txmod.Call(txmod.address_bytes(token), data)


def test_exact_payment_passes() -> None:
    """One transferWithMemo of the amount, to the recipient, in the currency, with the bound memo."""
    check_payment_calls(_tx(_pay()), CTX)
    check_transaction_limits(_tx(_pay()), CTX, now=NOW)


@pytest.mark.parametrize(("calls", "error", "message"), [
    ((_pay(), _pay(OTHER, 1)), VerificationFailed, "unauthorized extra calls: 2 calls"),
    ((txmod.Call(txmod.address_bytes(TOKEN), tip20.encode_balance_of(PAYEE)),), VerificationFailed,
     "not a TIP-20 transfer"),
    ((_pay(memo=None),), VerificationFailed, "plain transfer without memo"),
    ((_pay(memo=attribution_memo("ch-2", "api.example.com")),), VerificationFailed, "another challenge"),
    ((_pay(memo=attribution_memo("ch-1", "evil.example")),), VerificationFailed, "another realm"),
    ((_pay(memo=b"\x01" * 32),), VerificationFailed, "not an MPP attribution memo"),
    ((_pay(amount=999),), PaymentInsufficient, "pays 999 base units, the challenge asks 1000"),
    ((_pay(amount=1001),), VerificationFailed, "asks exactly 1000"),
    ((_pay(to=OTHER),), VerificationFailed, f"goes to {OTHER}"),
    ((_pay(token=tip20.ALPHA_USD),), VerificationFailed, f"in token {tip20.ALPHA_USD}"),
    ((replace(_pay(), value=1),), VerificationFailed, "native value"),
])
def test_payment_call_refusals(calls: tuple[txmod.Call, ...], error: type[Exception], message: str) -> None:
    """Each wrong payment is refused with the precise reason."""
    with pytest.raises(error, match=message):
        check_payment_calls(_tx(*calls), CTX)


def test_explicit_memo_and_splits() -> None:
    """A server memo must be used verbatim; splits are matched in any order."""
    memo = b"\x42" * 32
    split_to = "0x" + "5a" * 20
    ctx = ChargeContext.from_values("ch-1", "r", {**REQ, "methodDetails": {
        "chainId": 31337, "memo": "0x" + memo.hex(), "splits": [{"amount": "100", "recipient": split_to}]}})
    good = (_pay(split_to, 100, None), _pay(PAYEE, 900, memo))
    check_payment_calls(_tx(*good), ctx)
    with pytest.raises(VerificationFailed, match="differs from the required"):
        check_payment_calls(_tx(_pay(PAYEE, 900, MEMO), _pay(split_to, 100, None)), ctx)
    with pytest.raises(VerificationFailed, match="memo was attached"):
        check_payment_calls(_tx(_pay(PAYEE, 900, memo), _pay(split_to, 100, memo)), ctx)
    with pytest.raises(VerificationFailed, match="no TIP-20 transfer"):
        check_payment_calls(_tx(_pay(PAYEE, 900, memo)), ctx)


@pytest.mark.parametrize(("changes", "error", "message"), [
    ({"chain_id": 4217}, VerificationFailed, "chain id 4217, the challenge requires 31337"),
    ({"gas_limit": 2_000_001}, VerificationFailed, "exceeds the maximum"),
    ({"gas_limit": 20_000}, VerificationFailed, "below the intrinsic"),
    ({"gas_limit": 270_000, "nonce_key": 0, "nonce": 0}, VerificationFailed, "intrinsic gas of at least 27"),
    ({"valid_before": NOW}, PaymentExpired, "is not after now"),
    ({"valid_before": NOW + 301}, PaymentExpired, "later than the challenge expiry"),
    ({"valid_before": NOW + 60}, VerificationFailed, "more than 30s ahead"),
    ({"valid_before": None}, VerificationFailed, "needs validBefore"),
    ({"nonce": 1}, VerificationFailed, "must have nonce 0"),
    ({"valid_after": NOW + 10, "valid_before": NOW + 20}, VerificationFailed, "validAfter"),
])
def test_limit_refusals(changes: dict[str, Any], error: type[Exception], message: str) -> None:
    """Doomed or mis-targeted transactions are refused before broadcast."""
    with pytest.raises(error, match=message):
        check_transaction_limits(_tx(_pay(), **changes), CTX, now=NOW)


def test_intrinsic_gas_floor() -> None:
    """Base + calldata (16/4 per byte) + expiring-nonce or first-nonce surcharge."""
    call = txmod.Call(b"\x01" * 20, b"\x01\x00\x00")
    assert intrinsic_gas_floor(_tx(call)) == 21_000 + 16 + 8 + 13_000
    assert intrinsic_gas_floor(_tx(call, nonce_key=0, nonce=0)) == 21_000 + 24 + 250_000
    assert intrinsic_gas_floor(_tx(call, nonce_key=5, nonce=3)) == 21_000 + 24


def test_limits_allow_ordinary_nonces_and_wider_windows() -> None:
    """A protocol-nonce transaction needs no validBefore; the expiring window is a parameter."""
    check_transaction_limits(_tx(_pay(), nonce_key=0, nonce=7, valid_before=None), CTX, now=NOW)
    check_transaction_limits(_tx(_pay(), valid_before=NOW + 60), CTX, now=NOW, expiring_window=300)


def test_sponsor_policy() -> None:
    """The sponsor co-signs only placeholder transactions within its policy."""
    ok = _tx(_pay(), sponsored=True)
    check_sponsor_policy(ok, SponsorPolicy(), now=NOW)
    cases = [
        (replace(ok, sponsored=False), "not a fee-payer transaction"),
        (replace(ok, fee_payer_signature=Signature(1, 1, 0)), "already co-signed"),
        (replace(ok, fee_token=b"\x99" * 20), "must not include fee_token"),
        (replace(ok, nonce_key=0), "must use expiring nonce key"),
        (replace(ok, gas_limit=2_000_001), "gas limit exceeds sponsor policy"),
        (replace(ok, valid_before=NOW + 1800), "validity window exceeds sponsor policy"),
        (replace(ok, access_list=(txmod.AccessListEntry(b"\x01" * 20),)), "access list is not allowed"),
        (replace(ok, key_authorization=[b"\x01"]), "not sponsored"),
    ]
    for tx, message in cases:
        with pytest.raises(VerificationFailed, match=message):
            check_sponsor_policy(tx, SponsorPolicy(), now=NOW)
    with pytest.raises(VerificationFailed, match="max fee per gas"):
        check_sponsor_policy(ok, SponsorPolicy(max_fee_per_gas=1), now=NOW)
    with pytest.raises(VerificationFailed, match="max priority fee"):
        check_sponsor_policy(replace(ok, max_priority_fee_per_gas=5),
                             SponsorPolicy(max_priority_fee_per_gas=1), now=NOW)


def _word(addr: str) -> str:
    return "0x" + "00" * 12 + addr[2:]


def _log(to: str = PAYEE, amount: int = 1000, memo: bytes | None = MEMO, token: str = TOKEN,
         sender: str = PAYER) -> dict[str, Any]:
    topics = [tip20.TOPIC_TRANSFER_WITH_MEMO if memo else tip20.TOPIC_TRANSFER, _word(sender), _word(to)]
    if memo:
        topics.append("0x" + memo.hex())
    return {"address": token, "topics": topics, "data": "0x" + amount.to_bytes(32, "big").hex()}


def _receipt(*logs: dict[str, Any], status: str = "0x1") -> dict[str, Any]:
    return {"transactionHash": "0x" + "11" * 32, "status": status, "blockNumber": "0x10", "logs": list(logs)}


def test_receipt_with_fee_and_duplicate_logs() -> None:
    """A real-shaped receipt: Transfer + TransferWithMemo + fee Transfer in the same token."""
    fee = _log(tip20.FEE_MANAGER, 300, None)
    match = check_receipt(_receipt(_log(memo=None), _log(), fee), CTX, tx_hash="0x" + "11" * 32)
    assert (match.payer, match.block_number, match.tx_hash) == (PAYER, 16, "0x" + "11" * 32)


@pytest.mark.parametrize(("receipt", "error", "message"), [
    (_receipt(_log(), status="0x0"), VerificationFailed, "reverted"),
    (_receipt(_log(memo=None)), VerificationFailed, "plain transfer without memo"),
    (_receipt(_log(amount=10)), PaymentInsufficient, "pays 10 base units"),
    (_receipt(_log(token=tip20.ALPHA_USD)), VerificationFailed, "in token"),
    (_receipt(_log(to=OTHER)), VerificationFailed, "goes to"),
    (_receipt(_log(memo=attribution_memo("x", "api.example.com"))), VerificationFailed, "another challenge"),
    (_receipt(), VerificationFailed, "no TIP-20 transfer"),
    (_receipt(_log(tip20.FEE_MANAGER, 1000, None)), VerificationFailed, "no TIP-20 transfer"),
    (_receipt(_log(), _log(tip20.RECEIVE_POLICY_GUARD, 1000, None)), VerificationFailed, "receive policy"),
])
def test_receipt_refusals(receipt: dict[str, Any], error: type[Exception], message: str) -> None:
    """A receipt that does not pay the charge is refused with the precise reason."""
    with pytest.raises(error, match=message):
        check_receipt(receipt, CTX)


def test_receipt_hash_and_sender_consistency() -> None:
    """The receipt must be for the expected hash, and split logs must come from the payer."""
    with pytest.raises(VerificationFailed, match="receipt is for transaction"):
        check_receipt(_receipt(_log()), CTX, tx_hash="0x" + "22" * 32)
    split_to = "0x" + "5a" * 20
    ctx = ChargeContext.from_values("ch-1", "api.example.com", {**REQ, "methodDetails": {
        "chainId": 31337, "splits": [{"amount": "100", "recipient": split_to}]}})
    good = _receipt(_log(amount=900), _log(split_to, 100, None))
    assert check_receipt(good, ctx).payer == PAYER
    with pytest.raises(VerificationFailed, match="different senders"):
        check_receipt(_receipt(_log(amount=900), _log(split_to, 100, None, sender=OTHER)), ctx)


def test_source_address() -> None:
    """did:pkh sources parse on the right chain only."""
    did = charge.did_pkh(31337, PAYEE)
    assert source_address(did, 31337) == PAYEE
    with pytest.raises(VerificationFailed, match="on chain 31337, the charge on 4217"):
        source_address(did, 4217)
    for bad in (None, "did:pkh:eip155:1:0x12", "did:web:example.com", 5):
        with pytest.raises(VerificationFailed, match="source must be"):
            source_address(bad, 31337)


def test_claimed_source_never_raises() -> None:
    """The address a did:pkh source claims on the charge's chain (lower-case), else None."""
    did = charge.did_pkh(31337, PAYEE)
    assert did != did.lower() and claimed_source(did, 31337) == PAYEE
    assert claimed_source(did, 4217) is None
    for bad in (None, "", "did:pkh:eip155:31337:0x12", "did:web:example.com", 5, did + " ", ["x"]):
        assert claimed_source(bad, 31337) is None
