"""Field codecs of the Tempo transaction layout (private to ``tx.py``), and its small value types.

Each codec turns one field into an RLP item or back, naming the field in any ``RlpError``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ._rlp import Item, RlpError, bytes_to_uint
from .signer import Signature, SignatureError

U64, U128, U256 = 64, 128, 256


@dataclass(frozen=True, slots=True)
class Call:
    """One call of a batch: ``to`` is 20 bytes (``b""`` = CREATE), ``value`` must be 0 on Tempo."""

    to: bytes
    data: bytes = b""
    value: int = 0


@dataclass(frozen=True, slots=True)
class AccessListEntry:
    """An EIP-2930 entry: a 20-byte address and 32-byte storage keys."""

    address: bytes
    storage_keys: tuple[bytes, ...] = ()


# --- field codecs (decoding; ``tx._head`` encodes, with the access-list item built here) -------------


def enc_access_list(entries: tuple[AccessListEntry, ...]) -> Item:
    return [[e.address, list(e.storage_keys)] for e in entries]


def as_bytes(item: Item, name: str) -> bytes:
    if not isinstance(item, bytes):
        raise RlpError(f"{name}: expected a byte string, got a list")
    return item


def as_list(item: Item, name: str) -> list[Item]:
    if not isinstance(item, list):
        raise RlpError(f"{name}: expected a list, got a byte string")
    return item


def uint_decoder(bits: int) -> Callable[[Item, str], Any]:
    def dec(item: Item, name: str) -> int:
        return bytes_to_uint(as_bytes(item, name), max_bits=bits)
    return dec


def dec_opt_u64(item: Item, name: str) -> int | None:
    value = bytes_to_uint(as_bytes(item, name), max_bits=U64)
    return value or None


def check_address(raw: bytes, name: str, *, optional: bool) -> bytes | None:
    if not raw and optional:
        return None
    if len(raw) != 20:
        raise RlpError(f"{name}: expected a 20-byte address, got {len(raw)} bytes")
    return raw


def dec_opt_addr(item: Item, name: str) -> bytes | None:
    return check_address(as_bytes(item, name), name, optional=True)


def dec_calls(item: Item, name: str) -> tuple[Call, ...]:
    calls = []
    for i, entry in enumerate(as_list(item, name)):
        fields = as_list(entry, f"{name}[{i}]")
        if len(fields) != 3:
            raise RlpError(f"{name}[{i}]: expected [to, value, input]")
        to = as_bytes(fields[0], f"{name}[{i}].to")
        if to:
            check_address(to, f"{name}[{i}].to", optional=False)
        value = bytes_to_uint(as_bytes(fields[1], f"{name}[{i}].value"))
        calls.append(Call(to=to, data=as_bytes(fields[2], f"{name}[{i}].input"), value=value))
    if not calls:
        raise RlpError(f"{name}: a Tempo transaction needs at least one call")
    return tuple(calls)


def dec_access_list(item: Item, name: str) -> tuple[AccessListEntry, ...]:
    out = []
    for i, entry in enumerate(as_list(item, name)):
        fields = as_list(entry, f"{name}[{i}]")
        if len(fields) != 2:
            raise RlpError(f"{name}[{i}]: expected [address, storage_keys]")
        addr = check_address(as_bytes(fields[0], name), f"{name}[{i}].address", optional=False)
        keys = tuple(as_bytes(k, name) for k in as_list(fields[1], f"{name}[{i}].storage_keys"))
        if any(len(k) != 32 for k in keys):
            raise RlpError(f"{name}[{i}]: storage keys are 32 bytes")
        out.append(AccessListEntry(addr or b"", keys))
    return tuple(out)


def dec_raw_list(item: Item, name: str) -> tuple[Item, ...]:
    return tuple(as_list(item, name))


#: The signed 0x76 envelope, slots 0..12, as (field name, encoder, decoder).  Slot 11 (the
#: fee-payer slot), the optional key authorization and the sender signature are special-cased.
def dec_fee_payer_sig(fields: list[Item]) -> Signature:
    if len(fields) != 3:
        raise RlpError("fee_payer_signature: expected [v, r, s]")
    v, r, s = (bytes_to_uint(as_bytes(f, "fee_payer_signature")) for f in fields)
    try:
        return Signature(r, s, v)
    except SignatureError as exc:
        raise RlpError(f"fee_payer_signature: {exc}") from None


def addr_bytes(address: str | bytes) -> bytes:
    if isinstance(address, bytes):
        raw = address
    else:
        try:
            raw = bytes.fromhex(address[2:] if address[:2] in ("0x", "0X") else address)
        except ValueError:
            raise ValueError(f"not a hex address: {address!r}") from None
    if len(raw) != 20:
        raise ValueError(f"an address is 20 bytes, got {len(raw)}")
    return raw
