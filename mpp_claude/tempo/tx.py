"""Tempo transactions (EIP-2718 type ``0x76``) and the fee-payer domain ``0x78``, pure.

Wire layout (shared/docs/tempo-chain.md §3; the Rust node is the reference)::

    0x76 || rlp([chain_id, max_priority_fee_per_gas, max_fee_per_gas, gas_limit,
                 calls,                 # [[to, value, input], ...], at least one
                 access_list,           # EIP-2930 [[address, [slot, ...]], ...]
                 nonce_key, nonce,      # nonce_key 2**256-1 = expiring nonce (TIP-1009)
                 valid_before, valid_after,   # u64 seconds, 0x80 = none
                 fee_token,             # 20 bytes, 0x80 = none
                 fee_payer_slot,        # 0x80 none | 0x00 awaiting a sponsor | [v, r, s]
                 aa_authorization_list,
                 key_authorization?,    # present only when set
                 sender_signature])     # 65-byte secp256k1 r||s||v, or a typed envelope

``LAYOUT`` below declares slots 0..10 as data for the decoder; ``_head`` encodes slots 0..9
straight to RLP bytes (every preimage and envelope shares them).
The two signing preimages are documented on ``signing_hash`` and
``fee_payer_signing_hash``.  The transaction hash is ``keccak(raw)``.

Sponsored transactions travel from payer to server in one of two forms, both
decoded here: the relay form (``0x76`` with the ``0x00`` placeholder in slot 11)
and the pympp/mppx envelope ``0x78 || rlp([f0..f10, sender_address,
aa_authorization_list, key_authorization?, sender_signature])``, which cannot be
broadcast.  ``encode`` of a sponsored transaction without a fee-payer signature
writes the relay form.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any, Literal

from ..errors import MalformedTransaction
from . import _rlp
from ._keccak import keccak
from ._rlp import Item, RlpError, uint_to_bytes
from ._txfields import (
    U64,
    U128,
    U256,
    AccessListEntry,
    Call,
    addr_bytes,
    as_bytes,
    as_list,
    check_address,
    dec_access_list,
    dec_calls,
    dec_fee_payer_sig,
    dec_opt_addr,
    dec_opt_u64,
    dec_raw_list,
    enc_access_list,
    uint_decoder,
)
from .signer import Signature, SignatureError, Signer, recover_address

TX_TYPE = 0x76
FEE_PAYER_TYPE = 0x78
EXPIRING_NONCE_KEY = 2**256 - 1
FEE_PAYER_PLACEHOLDER = b"\x00"
KEYCHAIN_V2 = 0x04

__all__ = [
    "EXPIRING_NONCE_KEY", "FEE_PAYER_TYPE", "LAYOUT", "TX_TYPE", "AccessListEntry", "Call", "Decoded",
    "TempoTransaction", "address_bytes", "canonical_signature", "cosign", "decode", "encode",
    "encode_fee_payer_envelope", "fee_payer_signing_hash", "recover_fee_payer", "recover_sender", "sign",
    "sign_encoded", "signing_hash", "signing_preimage", "tx_hash",
]


@dataclass(frozen=True, slots=True)
class TempoTransaction:
    """An immutable Tempo transaction.  ``replace()`` (dataclasses) derives variants.

    ``sponsored`` means a fee payer pays the fee: the sender then signs the
    placeholder instead of ``fee_token``, and the fee payer chooses the token.
    ``aa_authorization_list`` and ``key_authorization`` are kept as opaque RLP
    items and re-emitted byte for byte.  ``sender_signature`` is the signature
    envelope exactly as on the wire (65 bytes for secp256k1).
    """

    chain_id: int
    max_priority_fee_per_gas: int
    max_fee_per_gas: int
    gas_limit: int
    calls: tuple[Call, ...]
    access_list: tuple[AccessListEntry, ...] = ()
    nonce_key: int = 0
    nonce: int = 0
    valid_before: int | None = None
    valid_after: int | None = None
    fee_token: bytes | None = None
    sponsored: bool = False
    fee_payer_signature: Signature | None = None
    aa_authorization_list: tuple[Item, ...] = ()
    key_authorization: Item | None = None
    sender_signature: bytes | None = None

    @property
    def is_expiring_nonce(self) -> bool:
        return self.nonce_key == EXPIRING_NONCE_KEY


LAYOUT: tuple[tuple[str, Callable[[Item, str], Any]], ...] = (
    ("chain_id", uint_decoder(U64)),
    ("max_priority_fee_per_gas", uint_decoder(U128)),
    ("max_fee_per_gas", uint_decoder(U128)),
    ("gas_limit", uint_decoder(U64)),
    ("calls", dec_calls),
    ("access_list", dec_access_list),
    ("nonce_key", uint_decoder(U256)),
    ("nonce", uint_decoder(U64)),
    ("valid_before", dec_opt_u64),
    ("valid_after", dec_opt_u64),
    ("fee_token", dec_opt_addr),
)
_EMPTY = _rlp.encode(b"")  # 0x80: an absent optional field (0 and None alike, as on the node)
_PLACEHOLDER = _rlp.encode(FEE_PAYER_PLACEHOLDER)
_EMPTY_LIST = _rlp.encode([])


def _head(tx: TempoTransaction) -> list[bytes]:
    """Slots 0..9 as RLP bytes (identical in every preimage and envelope)."""
    u, b, join = _rlp.encode_uint, _rlp.encode_bytes, _rlp.encode_list
    return [u(tx.chain_id), u(tx.max_priority_fee_per_gas), u(tx.max_fee_per_gas), u(tx.gas_limit),
            join([join([b(c.to), u(c.value), b(c.data)]) for c in tx.calls]),
            _rlp.encode(enc_access_list(tx.access_list)) if tx.access_list else _EMPTY_LIST,
            u(tx.nonce_key), u(tx.nonce),
            u(tx.valid_before) if tx.valid_before else _EMPTY,
            u(tx.valid_after) if tx.valid_after else _EMPTY]


def _tail(tx: TempoTransaction) -> list[bytes]:
    """``aa_authorization_list`` and, when set, ``key_authorization``, as RLP bytes."""
    first = _rlp.encode(list(tx.aa_authorization_list)) if tx.aa_authorization_list else _EMPTY_LIST
    if tx.key_authorization is None:
        return [first]
    return [first, _rlp.encode(tx.key_authorization)]


def _token(tx: TempoTransaction) -> bytes:
    return _rlp.encode_bytes(tx.fee_token) if tx.fee_token else _EMPTY


def _check_buildable(tx: TempoTransaction) -> None:
    if not tx.calls:
        raise ValueError("a Tempo transaction needs at least one call")
    if tx.valid_before and tx.valid_after and tx.valid_after >= tx.valid_before:
        raise ValueError("valid_after must be before valid_before")


# --- signing preimages ------------------------------------------------------------------------------


def signing_preimage(tx: TempoTransaction) -> bytes:
    """The bytes the sender signs (``signing_hash`` is their keccak); see ``signing_hash``."""
    _check_buildable(tx)
    if tx.sponsored:
        fields = [*_head(tx), _EMPTY, _PLACEHOLDER, *_tail(tx)]
    else:
        fields = [*_head(tx), _token(tx), _EMPTY, *_tail(tx)]
    return bytes((TX_TYPE,)) + _rlp.encode_list(fields)


def signing_hash(tx: TempoTransaction) -> bytes:
    """The sender's signing hash.

    ``keccak(0x76 || rlp([f0..f9, fee_token', fee_payer', aa_authorization_list,
    key_authorization?]))`` where, for a self-paid transaction, ``fee_token'`` is the
    fee token (``0x80`` if none) and ``fee_payer'`` is ``0x80``; for a sponsored one,
    ``fee_token'`` is ``0x80`` (the sender does not commit to the token) and
    ``fee_payer'`` is the single byte ``0x00``.  No signature is included.
    """
    return keccak(signing_preimage(tx))


def fee_payer_signing_hash(tx: TempoTransaction, sender: str | bytes) -> bytes:
    """The fee payer's signing hash, committing to the fee token and the sender.

    ``keccak(0x78 || rlp([f0..f9, fee_token (0x80 if none), sender_address (20 bytes),
    aa_authorization_list, key_authorization?]))``.
    """
    _check_buildable(tx)
    fields = [*_head(tx), _token(tx), _rlp.encode_bytes(addr_bytes(sender)), *_tail(tx)]
    return keccak(bytes((FEE_PAYER_TYPE,)) + _rlp.encode_list(fields))


# --- signing -------------------------------------------------------------------------------------------


def sign(tx: TempoTransaction, signer: Signer) -> TempoTransaction:
    """Return ``tx`` carrying the sender's secp256k1 signature over ``signing_hash(tx)``."""
    sig = signer.unsafe_sign_hash(signing_hash(tx))
    return replace(tx, sender_signature=sig.to_bytes65())


def sign_encoded(tx: TempoTransaction, signer: Signer) -> tuple[TempoTransaction, bytes]:
    """``sign(tx, signer)`` and ``encode`` of the result in one pass: the fields both RLP lists
    share are encoded once (the payer's hot path; same bytes as the two calls)."""
    _check_buildable(tx)
    head, tail, token = _head(tx), _tail(tx), _token(tx)
    slots = [_EMPTY, _PLACEHOLDER] if tx.sponsored else [token, _EMPTY]
    digest = keccak(bytes((TX_TYPE,)) + _rlp.encode_list([*head, *slots, *tail]))
    fast = getattr(signer, "sign_hash65", None)  # LocalSigner: the 65 bytes straight from libsecp256k1
    sig = fast(digest) if fast is not None else signer.unsafe_sign_hash(digest).to_bytes65()
    signed = _with_signature(tx, sig)
    fields = [*head, token, _rlp.encode(_fee_payer_slot(signed)), *tail, _rlp.encode_bytes(sig)]
    return signed, bytes((TX_TYPE,)) + _rlp.encode_list(fields)


def _with_signature(tx: TempoTransaction, sender_signature: bytes) -> TempoTransaction:
    """``replace(tx, sender_signature=...)`` without ``dataclasses.replace``'s field walk."""
    return TempoTransaction(tx.chain_id, tx.max_priority_fee_per_gas, tx.max_fee_per_gas, tx.gas_limit,
                            tx.calls, tx.access_list, tx.nonce_key, tx.nonce, tx.valid_before, tx.valid_after,
                            tx.fee_token, tx.sponsored, tx.fee_payer_signature, tx.aa_authorization_list,
                            tx.key_authorization, sender_signature)


def cosign(tx: TempoTransaction, fee_payer: Signer, *, fee_token: str | bytes, sender: str | bytes
           ) -> TempoTransaction:
    """Return the sponsored ``tx`` with ``fee_token`` set and the fee payer's signature.

    Warning: this commits ``fee_payer`` to pay this transaction's fee; run the
    sponsor policy (``verify.check_sponsor_policy``) first.

    Raises:
        ValueError: ``tx`` is not sponsored or not signed by its sender.
    """
    if not tx.sponsored:
        raise ValueError("only a sponsored transaction can be co-signed")
    if tx.sender_signature is None:
        raise ValueError("the sender must sign before the fee payer co-signs")
    with_token = replace(tx, fee_token=addr_bytes(fee_token))
    sig = fee_payer.unsafe_sign_hash(fee_payer_signing_hash(with_token, sender))
    return replace(with_token, fee_payer_signature=sig)


def recover_sender(tx: TempoTransaction) -> str:
    """The sender's lower-case address, recovered from ``sender_signature``.

    secp256k1 (65 bytes) and Keychain V2 (``0x04 || root || inner``; the sender is the root
    account, whose authorization of the key the chain checks) are supported.

    Raises:
        MalformedTransaction: no signature, an unsupported signature type, or one that
            does not recover.
    """
    sig = tx.sender_signature
    if not sig:
        raise MalformedTransaction("transaction has no sender signature")
    digest = signing_hash(tx)
    try:
        if len(sig) == 65:
            return recover_address(digest, Signature.from_bytes65(sig))
        if sig[0] == KEYCHAIN_V2 and len(sig) == 86:
            root = sig[1:21]
            recover_address(keccak(bytes((KEYCHAIN_V2,)) + digest + root), Signature.from_bytes65(sig[21:]))
            return "0x" + root.hex()
    except SignatureError as exc:
        raise MalformedTransaction(f"sender signature is invalid: {exc}") from None
    raise MalformedTransaction(f"unsupported sender signature type (0x{sig[:1].hex()}, {len(sig)} bytes)")


def canonical_signature(tx: TempoTransaction) -> TempoTransaction:
    """``tx`` with its secp256k1 sender signature re-encoded as ``r || s || (27 + y)``.

    The node accepts ``v`` as 0/1 or 27/28, so one signed transaction has two encodings
    and two hashes.  Settling only the canonical form makes the hash a stable replay key.
    """
    sig = tx.sender_signature
    try:
        if sig and len(sig) == 65:
            canonical = Signature.from_bytes65(sig).to_bytes65()
        elif sig and len(sig) == 86 and sig[0] == KEYCHAIN_V2:
            canonical = sig[:21] + Signature.from_bytes65(sig[21:]).to_bytes65()
        else:
            return tx
        return tx if canonical == sig else replace(tx, sender_signature=canonical)
    except SignatureError as exc:
        raise MalformedTransaction(f"sender signature is invalid: {exc}") from None


def recover_fee_payer(tx: TempoTransaction, sender: str) -> str:
    """The fee payer's address recovered from ``fee_payer_signature``.

    Raises:
        MalformedTransaction: the transaction carries no valid fee-payer signature.
    """
    if tx.fee_payer_signature is None:
        raise MalformedTransaction("transaction has no fee-payer signature")
    try:
        return recover_address(fee_payer_signing_hash(tx, sender), tx.fee_payer_signature)
    except SignatureError as exc:
        raise MalformedTransaction(f"fee-payer signature is invalid: {exc}") from None


# --- wire encoding ---------------------------------------------------------------------------------------


def _fee_payer_slot(tx: TempoTransaction) -> Item:
    sig = tx.fee_payer_signature
    if sig is not None:
        return [uint_to_bytes(sig.y_parity), uint_to_bytes(sig.r), uint_to_bytes(sig.s)]
    return FEE_PAYER_PLACEHOLDER if tx.sponsored else b""


def encode(tx: TempoTransaction) -> bytes:
    """The signed ``0x76`` envelope (the relay form when a sponsor has not co-signed yet).

    Raises:
        ValueError: the transaction is not signed, or not buildable.
    """
    if not tx.sender_signature:
        raise ValueError("cannot encode an unsigned transaction; sign() it first")
    _check_buildable(tx)
    fields = [*_head(tx), _token(tx), _rlp.encode(_fee_payer_slot(tx)), *_tail(tx),
              _rlp.encode_bytes(tx.sender_signature)]
    return bytes((TX_TYPE,)) + _rlp.encode_list(fields)


def encode_fee_payer_envelope(tx: TempoTransaction, sender: str | bytes) -> bytes:
    """The ``0x78`` hand-off envelope of a sender-signed sponsored transaction (pympp/mppx form).

    Not broadcastable: the server decodes it, co-signs and broadcasts the ``0x76`` form.
    """
    if not tx.sender_signature:
        raise ValueError("cannot encode an unsigned transaction; sign() it first")
    _check_buildable(tx)
    fields = [*_head(tx), _token(tx), _rlp.encode_bytes(addr_bytes(sender)), *_tail(tx),
              _rlp.encode_bytes(tx.sender_signature)]
    return bytes((FEE_PAYER_TYPE,)) + _rlp.encode_list(fields)


def tx_hash(raw: bytes) -> str:
    """``0x``-hex ``keccak(raw)``: the hash the chain will give this exact envelope."""
    return "0x" + keccak(raw).hex()


@dataclass(frozen=True, slots=True)
class Decoded:
    """A decoded envelope: the transaction, its type byte and (``0x78`` only) the declared sender."""

    tx: TempoTransaction
    envelope: Literal[0x76, 0x78]
    declared_sender: str | None = None


def decode(raw: bytes) -> Decoded:
    """Decode a signed ``0x76`` envelope or a ``0x78`` fee-payer hand-off envelope.

    Raises:
        MalformedTransaction: wrong type byte, non-canonical RLP, wrong field count or
            field shape (the message names the field).
    """
    if not raw:
        raise MalformedTransaction("empty transaction")
    kind = raw[0]
    if kind not in (TX_TYPE, FEE_PAYER_TYPE):
        raise MalformedTransaction(f"not a Tempo transaction: type byte 0x{kind:02x}, expected 0x76 or 0x78")
    try:
        fields = as_list(_rlp.decode(raw[1:]), "transaction")
        if len(fields) not in (14, 15):
            raise RlpError(f"expected 14 or 15 fields, got {len(fields)}")
        values = {name: dec(fields[i], name) for i, (name, dec) in enumerate(LAYOUT)}
        slot11 = fields[11]
        sponsored, fp_sig, declared = False, None, None
        if kind == FEE_PAYER_TYPE:
            addr = check_address(as_bytes(slot11, "sender_address"), "sender_address", optional=False)
            declared, sponsored = "0x" + (addr or b"").hex(), True
        elif isinstance(slot11, list):
            fp_sig, sponsored = dec_fee_payer_sig(slot11), True
        elif slot11 == FEE_PAYER_PLACEHOLDER:
            sponsored = True
        elif slot11 != b"":
            raise RlpError("fee_payer_signature: expected 0x80, 0x00 or [v, r, s]")
        key_auth = fields[13] if len(fields) == 15 else None
        if key_auth is not None:
            as_list(key_auth, "key_authorization")
        sender_sig = as_bytes(fields[-1], "sender_signature")
        if not sender_sig:
            raise RlpError("sender_signature: missing")
        tx = TempoTransaction(**values, sponsored=sponsored, fee_payer_signature=fp_sig,
                              aa_authorization_list=dec_raw_list(fields[12], "aa_authorization_list"),
                              key_authorization=key_auth, sender_signature=sender_sig)
        if tx.valid_before and tx.valid_after and tx.valid_after >= tx.valid_before:
            raise RlpError("valid_after must be before valid_before")
    except RlpError as exc:
        raise MalformedTransaction(f"malformed Tempo transaction: {exc}") from None
    return Decoded(tx, 0x76 if kind == TX_TYPE else 0x78, declared)


def address_bytes(address: str | bytes) -> bytes:
    """20 raw bytes of a ``0x`` hex address (any case).  Raises ``ValueError`` otherwise."""
    return addr_bytes(address)
