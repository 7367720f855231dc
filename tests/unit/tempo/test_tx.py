"""0x76 / 0x78 transactions: round trips, signing, and a typed error for every malformed input."""

from __future__ import annotations

from dataclasses import fields, replace

import pytest
from eth_hash.auto import keccak
from hypothesis import given, settings
from hypothesis import strategies as st

from mpp_claude.errors import MalformedTransaction
from mpp_claude.tempo import _rlp
from mpp_claude.tempo import tx as txmod
from mpp_claude.tempo.signer import LocalSigner, Signature

PAYER = LocalSigner("0x" + "11" * 32)
SPONSOR = LocalSigner("0x" + "22" * 32)
TOKEN = bytes.fromhex("20c0" + "00" * 18)
BASE = txmod.TempoTransaction(
    chain_id=42431, max_priority_fee_per_gas=0, max_fee_per_gas=4 * 10**10, gas_limit=400_000,
    calls=(txmod.Call(TOKEN, b"\x95\x77\x7d\x59" + b"\x01" * 96),), nonce_key=txmod.EXPIRING_NONCE_KEY,
    valid_before=1_900_000_025, fee_token=TOKEN)


def _fields(raw: bytes) -> list[_rlp.Item]:
    item = _rlp.decode(raw[1:])
    assert isinstance(item, list)
    return item


def _reencode(raw: bytes, fields: list[_rlp.Item]) -> bytes:
    return raw[:1] + _rlp.encode(fields)


def test_sign_encode_decode_round_trip() -> None:
    """A signed self-paid transaction decodes to itself and recovers its sender; hash = keccak(raw)."""
    signed = txmod.sign(BASE, PAYER)
    raw = txmod.encode(signed)
    decoded = txmod.decode(raw)
    assert decoded.tx == signed and decoded.envelope == 0x76 and decoded.declared_sender is None
    assert txmod.recover_sender(decoded.tx) == PAYER.address
    assert txmod.tx_hash(raw) == "0x" + keccak(raw).hex()
    assert len(_fields(raw)) == 14


def test_signing_hash_formula() -> None:
    """Self-paid: fee token in slot 10, 0x80 in slot 11; sponsored: 0x80 and the 0x00 placeholder."""
    pre = txmod.signing_preimage(BASE)
    fields = _fields(pre)
    assert pre[0] == 0x76 and fields[10] == TOKEN and fields[11] == b"" and len(fields) == 13
    sponsored = replace(BASE, sponsored=True)
    fields = _fields(txmod.signing_preimage(sponsored))
    assert fields[10] == b"" and fields[11] == b"\x00"
    # the sponsored sender does not commit to the fee token
    assert txmod.signing_hash(sponsored) == txmod.signing_hash(replace(sponsored, fee_token=None))
    assert txmod.signing_hash(BASE) == keccak(pre)


def test_sponsored_flow_and_envelopes() -> None:
    """Relay form (0x00) and 0x78 envelope decode to the same transaction; co-signing binds token+sender."""
    signed = txmod.sign(replace(BASE, fee_token=None, sponsored=True), PAYER)
    relay = txmod.decode(txmod.encode(signed))
    assert relay.tx == signed and _fields(txmod.encode(signed))[11] == b"\x00"
    env = txmod.decode(txmod.encode_fee_payer_envelope(signed, PAYER.address))
    assert env.envelope == 0x78 and env.declared_sender == PAYER.address and env.tx == signed
    cosigned = txmod.cosign(signed, SPONSOR, fee_token=TOKEN, sender=PAYER.address)
    final = txmod.decode(txmod.encode(cosigned)).tx
    assert final.fee_token == TOKEN
    assert txmod.recover_sender(final) == PAYER.address
    assert txmod.recover_fee_payer(final, PAYER.address) == SPONSOR.address
    assert txmod.recover_fee_payer(final, SPONSOR.address) != SPONSOR.address  # bound to the sender
    with pytest.raises(ValueError, match="only a sponsored"):
        txmod.cosign(txmod.sign(BASE, PAYER), SPONSOR, fee_token=TOKEN, sender=PAYER.address)
    with pytest.raises(ValueError, match="sender must sign"):
        txmod.cosign(replace(BASE, sponsored=True), SPONSOR, fee_token=TOKEN, sender=PAYER.address)
    with pytest.raises(MalformedTransaction, match="no fee-payer signature"):
        txmod.recover_fee_payer(signed, PAYER.address)


def test_keychain_v2_sender_is_the_root() -> None:
    """A Keychain V2 signature (0x04 || root || inner over keccak(0x04||hash||root)) names the root."""
    root = bytes.fromhex("ab" * 20)
    access_key = LocalSigner("0x" + "33" * 32)
    inner = access_key.unsafe_sign_hash(keccak(b"\x04" + txmod.signing_hash(BASE) + root))
    tx = replace(BASE, sender_signature=b"\x04" + root + inner.to_bytes65())
    assert txmod.recover_sender(txmod.decode(txmod.encode(tx)).tx) == "0x" + root.hex()


def test_key_authorization_and_auth_list_round_trip() -> None:
    """Opaque key authorization and authorization-list items are re-emitted byte for byte."""
    tx = txmod.sign(replace(BASE, key_authorization=[b"\x01", b"\x02", [b"x"]], aa_authorization_list=(
        [b"\x05"],)), PAYER)
    raw = txmod.encode(tx)
    assert len(_fields(raw)) == 15
    assert txmod.decode(raw).tx == tx and txmod.recover_sender(tx) == PAYER.address


@settings(max_examples=60, deadline=None)
@given(st.booleans(), st.one_of(st.none(), st.just(TOKEN)), st.integers(0, 2**64 - 1),
       st.lists(st.binary(max_size=80), min_size=1, max_size=3), st.booleans())
def test_sign_encoded_is_sign_then_encode(sponsored: bool, token: bytes | None, fee: int, datas: list[bytes],
                                          key_auth: bool) -> None:
    """The one-pass signer gives the same signed transaction and bytes as sign() + encode()."""
    tx = replace(BASE, sponsored=sponsored, fee_token=token, max_fee_per_gas=fee,
                 calls=tuple(txmod.Call(TOKEN, d) for d in datas),
                 key_authorization=[b"\x01", [b"x" * 60]] if key_auth else None)
    signed, raw = txmod.sign_encoded(tx, PAYER)
    assert signed == txmod.sign(tx, PAYER) and raw == txmod.encode(signed)


def test_unsigned_and_invalid_transactions_do_not_encode() -> None:
    """Encoding an unsigned or call-less transaction, or a bad window, raises ValueError."""
    with pytest.raises(ValueError, match="unsigned"):
        txmod.encode(BASE)
    with pytest.raises(ValueError, match="unsigned"):
        txmod.encode_fee_payer_envelope(BASE, PAYER.address)
    with pytest.raises(ValueError, match="at least one call"):
        txmod.signing_hash(replace(BASE, calls=()))
    with pytest.raises(ValueError, match="valid_after"):
        txmod.signing_hash(replace(BASE, valid_after=BASE.valid_before))
    with pytest.raises(ValueError, match="20 bytes"):
        txmod.address_bytes("0x1234")
    with pytest.raises(ValueError, match="hex"):
        txmod.address_bytes("0xzz")


RAW = txmod.encode(txmod.sign(BASE, PAYER))


def _mutated(index: int, value: _rlp.Item) -> bytes:
    fields = _fields(RAW)
    fields[index] = value
    return _reencode(RAW, fields)


@pytest.mark.parametrize(("raw", "message"), [
    (b"", "empty"),
    (b"\x02" + RAW[1:], "type byte 0x02"),
    (RAW[:-1], "malformed Tempo transaction"),
    (RAW + b"\x00", "trailing bytes"),
    (b"\x76" + _rlp.encode([b"\x01"] * 13), "expected 14 or 15 fields"),
    (_mutated(0, [b"\x01"]), "chain_id: expected a byte string"),
    (_mutated(0, b"\x00\x01"), "leading zero"),
    (_mutated(0, b"\x01" * 9), "wider than 64 bits"),
    (_mutated(4, []), "at least one call"),
    (_mutated(4, [[b"\x01" * 19, b"", b""]]), r"calls\[0\].to: expected a 20-byte address"),
    (_mutated(4, [[TOKEN, b""]]), r"calls\[0\]: expected \[to, value, input\]"),
    (_mutated(5, [[TOKEN, [b"\x01"]]]), "storage keys are 32 bytes"),
    (_mutated(10, b"\x01" * 5), "fee_token: expected a 20-byte address"),
    (_mutated(11, b"\x05"), "expected 0x80, 0x00 or"),
    (_mutated(11, [b"\x01", b"\x01"]), r"expected \[v, r, s\]"),
    (_mutated(11, [b"", b"\x01", (2**255).to_bytes(32, "big")]), "not low-s"),
    (_mutated(13, b""), "sender_signature: missing"),
    (_mutated(9, (2_000_000_000).to_bytes(4, "big")), "valid_after must be before valid_before"),
])
def test_malformed_transactions(raw: bytes, message: str) -> None:
    """Each malformed envelope raises MalformedTransaction naming the problem."""
    with pytest.raises(MalformedTransaction, match=message):
        txmod.decode(raw)


def test_bad_signatures() -> None:
    """Missing, unknown-type or unrecoverable sender signatures are MalformedTransaction."""
    with pytest.raises(MalformedTransaction, match="no sender signature"):
        txmod.recover_sender(BASE)
    with pytest.raises(MalformedTransaction, match="unsupported sender signature type"):
        txmod.recover_sender(replace(BASE, sender_signature=b"\x01" * 130))
    bogus = Signature(1, 1, 0).to_bytes65()
    tx = replace(BASE, sender_signature=bogus)
    try:
        sender = txmod.recover_sender(tx)
    except MalformedTransaction:
        return
    assert sender != PAYER.address


@settings(max_examples=300)
@given(st.binary(max_size=300))
def test_decoder_contract(data: bytes) -> None:
    """Arbitrary bytes (after a 0x76/0x78 byte) decode or raise MalformedTransaction, nothing else."""
    for prefix in (b"\x76", b"\x78"):
        try:
            txmod.decode(prefix + data)
        except MalformedTransaction:
            pass


@settings(max_examples=200)
@given(st.integers(0, len(RAW) - 1), st.integers(0, 255))
def test_single_byte_corruption(pos: int, byte: int) -> None:
    """Corrupting one byte of a signed transaction never yields the original sender silently."""
    raw = bytearray(RAW)
    if raw[pos] == byte:
        return
    raw[pos] = byte
    try:
        decoded = txmod.decode(bytes(raw))
        sender = txmod.recover_sender(decoded.tx)
    except MalformedTransaction:
        return
    original = txmod.decode(RAW).tx
    assert sender != PAYER.address or txmod.canonical_signature(decoded.tx) == original


def test_signature_v_malleability_is_canonicalised() -> None:
    """v = 0/1 and v = 27/28 encode the same signature; canonical_signature maps both to 27/28."""
    signed = txmod.sign(BASE, PAYER)
    sig = signed.sender_signature or b""
    low_v = replace(signed, sender_signature=sig[:64] + bytes((sig[64] - 27,)))
    assert txmod.encode(low_v) != txmod.encode(signed)
    assert txmod.recover_sender(low_v) == PAYER.address
    assert txmod.canonical_signature(low_v) == signed
    root = b"\xab" * 20
    keychain = replace(signed, sender_signature=b"\x04" + root + sig[:64] + bytes((sig[64] - 27,)))
    assert txmod.canonical_signature(keychain).sender_signature == b"\x04" + root + sig
    with pytest.raises(MalformedTransaction, match="invalid"):
        txmod.canonical_signature(replace(signed, sender_signature=sig[:64] + b"\x05"))


def test_the_signed_copy_keeps_every_field() -> None:
    """``sign_encoded``'s copy (built field by field, not with ``replace``) equals ``replace`` for a
    transaction whose every field differs from its default, so a field added or reordered in
    ``TempoTransaction`` cannot be dropped or shifted silently."""
    tx = txmod.TempoTransaction(
        chain_id=7, max_priority_fee_per_gas=11, max_fee_per_gas=13, gas_limit=17,
        calls=(txmod.Call(TOKEN, b"\x01"),), access_list=(txmod.AccessListEntry(TOKEN, (b"\x02" * 32,)),),
        nonce_key=19, nonce=23, valid_before=29, valid_after=31, fee_token=TOKEN, sponsored=True,
        fee_payer_signature=Signature(37, 41, 1), aa_authorization_list=([b"\x05"],),
        key_authorization=[b"\x06"], sender_signature=b"\x07" * 65)
    defaults = txmod.TempoTransaction(chain_id=0, max_priority_fee_per_gas=0, max_fee_per_gas=0, gas_limit=0,
                                      calls=())
    assert all(getattr(tx, f.name) != getattr(defaults, f.name) for f in fields(txmod.TempoTransaction))
    assert txmod._with_signature(tx, b"\x08" * 65) == replace(tx, sender_signature=b"\x08" * 65)
