"""Conformance operations of the Tempo charge method (shared/conformance/README.md).

* ``tempo.fee_payer.cosign``: sign the vector's transaction as the payer (fee-payer
  placeholder, ``0x78`` hand-off envelope), then run the server's sponsored pull path
  (sponsor policy, payment calls, co-signature) and describe the co-signed ``0x76``.
* ``tempo.receipt.verify`` / ``tempo.transaction.verify``: check a receipt fixture
  against the echoed challenge (challenge-bound memo, token, recipient, amount).
* ``tempo.proof.typed_data``: the EIP-712 typed data of a zero-amount proof.  The vector
  pins domain version 2; version 3 (current mppx) is returned when ``account`` is given.

The adapter is an I/O edge: "now" (for ``"now+N"`` vector values) is read here.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from mpp_claude.conformance.registry import AdapterError, operation
from mpp_claude.tempo import charge, settle
from mpp_claude.tempo import tx as txmod
from mpp_claude.tempo.proof import typed_data
from mpp_claude.tempo.signer import LocalSigner
from mpp_claude.tempo.tip20 import PATH_USD
from mpp_claude.tempo.verify import ChargeContext, SponsorPolicy, check_receipt

__all__: list[str] = []

#: The cosign vectors accept ``validBefore = now+60``: they assume T11's 300 s window for
#: expiring nonces (the sponsor policy's own 900 s limit still refuses now+1800).
VECTOR_EXPIRING_WINDOW = 300


def _mapping(inp: Any, name: str) -> Mapping[str, Any]:
    value = inp.get(name) if isinstance(inp, Mapping) else None
    if not isinstance(value, Mapping):
        raise AdapterError("verification_error", f"input needs an object {name!r}")
    return value


def _number(value: Any, now: int) -> int:
    """A vector number: an int, ``"max"`` (2**256-1) or ``"now+N"``."""
    if isinstance(value, bool):
        raise AdapterError("verification_error", f"not a number: {value!r}")
    if isinstance(value, int):
        return value
    if value == "max":
        return txmod.EXPIRING_NONCE_KEY
    if isinstance(value, str) and value.startswith("now+") and value[4:].isdigit():
        return now + int(value[4:])
    if isinstance(value, str) and value.startswith("0x"):
        return int(value, 16)
    raise AdapterError("verification_error", f"not a number: {value!r}")


def _hex(value: Any) -> bytes:
    if not isinstance(value, str) or not value.startswith("0x"):
        raise AdapterError("verification_error", f"not 0x-hex: {value!r}")
    return bytes.fromhex(value[2:])


def _vector_transaction(spec: Mapping[str, Any], now: int) -> txmod.TempoTransaction:
    calls = tuple(txmod.Call(_hex(c["to"]), _hex(c.get("data", "0x")), _number(c.get("value", 0), now))
                  for c in spec["calls"])
    access = tuple(txmod.AccessListEntry(_hex(addr), tuple(_hex(k) for k in keys))
                   for addr, keys in spec.get("accessList", []))
    fee_token = spec.get("feeToken")
    valid_before = spec.get("validBefore")
    return txmod.TempoTransaction(
        chain_id=_number(spec["chainId"], now),
        max_priority_fee_per_gas=_number(spec["maxPriorityFeePerGas"], now),
        max_fee_per_gas=_number(spec["maxFeePerGas"], now),
        gas_limit=_number(spec["gasLimit"], now),
        calls=calls, access_list=access,
        nonce_key=_number(spec["nonceKey"], now), nonce=_number(spec["nonce"], now),
        valid_before=None if valid_before is None else _number(valid_before, now),
        fee_token=None if fee_token is None else _hex(fee_token),
        sponsored=True,
    )


@operation("tempo.fee_payer.cosign", error_type="verification_error")
def fee_payer_cosign(inp: Any) -> dict[str, Any]:
    now = int(time.time())
    challenge = inp.get("challenge") if isinstance(inp, Mapping) else None
    # Without a challenge there is nothing the memo could be bound to: an empty id/realm
    # makes every attribution memo a mismatch, so such envelopes are never co-signed.
    ctx = ChargeContext.from_values(str(challenge.get("id", "")) if isinstance(challenge, Mapping) else "",
                                    str(challenge.get("realm", "")) if isinstance(challenge, Mapping) else "",
                                    _mapping(inp, "request"))
    try:
        tx = _vector_transaction(_mapping(inp, "transaction"), now)
    except (KeyError, TypeError, ValueError) as exc:
        raise AdapterError("verification_error", f"bad transaction input: {exc}") from None
    payer = LocalSigner(str(inp["payerPrivateKey"]))
    sponsor = LocalSigner(str(inp["feePayerPrivateKey"]))
    signed = charge.sign_charge(tx, payer)
    prep = settle.prepare_pull("0x" + signed.raw.hex(), ctx, now=now, fee_payer=sponsor,
                               fee_token=str(inp.get("feeToken") or PATH_USD),
                               policy=SponsorPolicy(), expiring_window=VECTOR_EXPIRING_WINDOW)
    out = txmod.decode(prep.raw)
    return {
        "type": f"0x{out.envelope:02x}",
        "feeToken": "0x" + (out.tx.fee_token or b"").hex(),
        "feePayerSignaturePresent": out.tx.fee_payer_signature is not None,
        "accessListLength": len(out.tx.access_list),
        "callCount": len(out.tx.calls),
    }


def _receipt_op(inp: Any, *, use_payload_hash: bool) -> dict[str, Any]:
    credential = _mapping(inp, "credential")
    challenge = _mapping(credential, "challenge")
    payload = _mapping(credential, "payload")
    receipt = _mapping(inp, "receipt")
    ctx = ChargeContext.from_values(str(challenge.get("id", "")), str(challenge.get("realm", "")),
                                    _mapping(challenge, "request"))
    tx_hash = payload.get("hash") if use_payload_hash else None
    if use_payload_hash and not isinstance(tx_hash, str):
        raise AdapterError("verification_error", "payload.hash must be a string")
    match = check_receipt(receipt, ctx, tx_hash=tx_hash)
    return {"status": "success", "reference": tx_hash if use_payload_hash else match.tx_hash}


@operation("tempo.receipt.verify", error_type="verification_error")
def receipt_verify(inp: Any) -> dict[str, Any]:
    return _receipt_op(inp, use_payload_hash=True)


@operation("tempo.transaction.verify", error_type="verification_error")
def transaction_verify(inp: Any) -> dict[str, Any]:
    # The staged vector's payload is not a real transaction; only the receipt is checked.
    return _receipt_op(inp, use_payload_hash=False)


@operation("tempo.proof.typed_data", error_type="verification_error")
def proof_typed_data(inp: Any) -> dict[str, Any]:
    if not isinstance(inp, Mapping):
        raise AdapterError("verification_error", "input must be an object")
    account = inp.get("account")
    try:
        return typed_data(3 if account else 2, chain_id=int(inp["chainId"]),
                          challenge_id=str(inp["challengeId"]), realm=str(inp["realm"]),
                          account=str(account) if account else None)
    except (KeyError, TypeError, ValueError) as exc:
        raise AdapterError("verification_error", f"bad proof input: {exc}") from None
