"""Our 0x76/0x78 encoder and signer against pytempo 0.6.2 (and pympp's 0x78 envelope) as oracles.

Hypothesis draws random transactions (derandomized: the same 300 + 300 every run); for each,
the signing hashes, signatures, signed bytes and transaction hash must be byte-for-byte equal,
and our decoder must read pytempo's bytes back to the same transaction.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mpp_claude.tempo import tx as txmod
from mpp_claude.tempo.signer import LocalSigner

pytempo = pytest.importorskip("pytempo")
from mpp.methods.tempo.fee_payer_envelope import encode_fee_payer_envelope  # noqa: E402
from pytempo import AccessListItem, Call, TempoTransaction  # noqa: E402

EXAMPLES = 300
_u = st.integers
addresses = st.binary(min_size=20, max_size=20).filter(lambda b: any(b))
calls = st.lists(st.tuples(addresses, _u(0, 2**256 - 1), st.binary(max_size=160)), min_size=1, max_size=4)
access = st.lists(st.tuples(addresses, st.lists(st.binary(min_size=32, max_size=32), max_size=3)), max_size=3)
nonce_keys = st.one_of(st.just(0), st.just(txmod.EXPIRING_NONCE_KEY), _u(0, 2**256 - 1))
windows = st.one_of(st.tuples(st.none(), st.none()),
                    st.tuples(_u(1, 2**64 - 1), st.none()),
                    _u(1, 2**63).flatmap(lambda a: st.tuples(_u(a + 1, 2**64 - 1), st.just(a))))
txs = st.fixed_dictionaries({
    "chain_id": _u(1, 2**64 - 1),
    "max_priority_fee_per_gas": _u(0, 2**64),
    "max_fee_per_gas": _u(2**64, 2**128 - 1),
    "gas_limit": _u(1, 2**64 - 1),
    "calls": calls,
    "access_list": access,
    "nonce_key": nonce_keys,
    "nonce": _u(0, 2**64 - 1),
    "window": windows,
    "fee_token": st.one_of(st.none(), addresses),
})
_SETTINGS = settings(max_examples=EXAMPLES, deadline=None, derandomize=True,
                     suppress_health_check=[HealthCheck.too_slow])

PAYER_KEY = "0x" + "5a" * 32
SPONSOR_KEY = "0x" + "3c" * 32


def _ours(d: dict[str, Any], *, sponsored: bool) -> txmod.TempoTransaction:
    vb, va = d["window"]
    return txmod.TempoTransaction(
        chain_id=d["chain_id"], max_priority_fee_per_gas=d["max_priority_fee_per_gas"],
        max_fee_per_gas=d["max_fee_per_gas"], gas_limit=d["gas_limit"],
        calls=tuple(txmod.Call(to, data, value) for to, value, data in d["calls"]),
        access_list=tuple(txmod.AccessListEntry(a, tuple(k)) for a, k in d["access_list"]),
        nonce_key=d["nonce_key"], nonce=d["nonce"], valid_before=vb, valid_after=va,
        fee_token=None if sponsored else d["fee_token"], sponsored=sponsored)


def _theirs(d: dict[str, Any], *, sponsored: bool, fee_token: bytes | None) -> Any:
    vb, va = d["window"]
    return TempoTransaction.create(
        chain_id=d["chain_id"], max_priority_fee_per_gas=d["max_priority_fee_per_gas"],
        max_fee_per_gas=d["max_fee_per_gas"], gas_limit=d["gas_limit"],
        calls=tuple(Call.create(to=to, value=value, data=data) for to, value, data in d["calls"]),
        access_list=tuple(AccessListItem.create(address=a, storage_keys=tuple(k))
                          for a, k in d["access_list"]),
        nonce_key=d["nonce_key"], nonce=d["nonce"], valid_before=vb, valid_after=va,
        fee_token=fee_token, awaiting_fee_payer=sponsored)


@_SETTINGS
@given(txs)
def test_self_paid_transaction_matches_pytempo(d: dict[str, Any]) -> None:
    """Self-paid: signing preimage, signature, signed bytes and hash equal pytempo's; decode round-trips."""
    signer = LocalSigner(PAYER_KEY)
    ours = _ours(d, sponsored=False)
    theirs = _theirs(d, sponsored=False, fee_token=d["fee_token"])
    assert txmod.signing_preimage(ours) == theirs.encode_for_signing()
    assert txmod.signing_hash(ours) == theirs.get_signing_hash()
    signed_theirs = theirs.sign(PAYER_KEY)
    signed_ours = txmod.sign(ours, signer)
    assert signed_ours.sender_signature == signed_theirs.sender_signature.to_bytes()
    raw = txmod.encode(signed_ours)
    assert raw == signed_theirs.encode()
    assert txmod.tx_hash(raw) == "0x" + signed_theirs.hash().hex()
    decoded = txmod.decode(signed_theirs.encode())
    assert decoded.tx == signed_ours and decoded.envelope == 0x76
    assert txmod.recover_sender(decoded.tx) == signer.address


@_SETTINGS
@given(txs, addresses)
def test_sponsored_transaction_matches_pytempo(d: dict[str, Any], fee_token: bytes) -> None:
    """Sponsored: sender and fee-payer hashes, both signatures, final bytes, hash and pympp's 0x78 agree."""
    payer, sponsor = LocalSigner(PAYER_KEY), LocalSigner(SPONSOR_KEY)
    ours = _ours(d, sponsored=True)
    theirs = _theirs(d, sponsored=True, fee_token=fee_token)
    assert txmod.signing_hash(ours) == theirs.get_signing_hash()
    signed_theirs = theirs.sign(PAYER_KEY)
    signed_ours = txmod.sign(ours, payer)
    assert signed_ours.sender_signature == signed_theirs.sender_signature.to_bytes()
    envelope = txmod.encode_fee_payer_envelope(replace_token(signed_ours, fee_token), payer.address)
    assert envelope == encode_fee_payer_envelope(signed_theirs)
    assert txmod.fee_payer_signing_hash(replace_token(signed_ours, fee_token), payer.address) == \
        signed_theirs.get_signing_hash(for_fee_payer=True)
    cosigned_theirs = signed_theirs.sign(SPONSOR_KEY, for_fee_payer=True)
    cosigned_ours = txmod.cosign(signed_ours, sponsor, fee_token=fee_token, sender=payer.address)
    raw = txmod.encode(cosigned_ours)
    assert raw == cosigned_theirs.encode()
    assert txmod.tx_hash(raw) == "0x" + cosigned_theirs.hash().hex()
    decoded = txmod.decode(raw).tx
    assert txmod.recover_sender(decoded) == payer.address
    assert txmod.recover_fee_payer(decoded, payer.address) == sponsor.address
    from_envelope = txmod.decode(encode_fee_payer_envelope(signed_theirs))
    assert from_envelope.declared_sender == payer.address and from_envelope.envelope == 0x78


def replace_token(tx: txmod.TempoTransaction, token: bytes) -> txmod.TempoTransaction:
    return replace(tx, fee_token=token)
