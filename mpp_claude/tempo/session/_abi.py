"""Static ABI words shared by the session modules (addresses, uints, bytes32), pure."""

from __future__ import annotations


def address_word(address: str, name: str = "address") -> bytes:
    """The 32-byte ABI word of a ``0x``-prefixed 20-byte hex address (any case).

    Raises:
        ValueError: not ``0x`` + 40 hex digits (the message names ``name``).
    """
    text = address[2:] if isinstance(address, str) and address[:2] in ("0x", "0X") else ""
    try:
        raw = bytes.fromhex(text)
    except ValueError:
        raw = b""
    if len(raw) != 20:
        raise ValueError(f"{name}: expected a 0x-prefixed 20-byte hex address, got {address!r}")
    return raw.rjust(32, b"\0")


def uint_word(value: int, bits: int, name: str) -> bytes:
    """The 32-byte ABI word of an unsigned integer that must fit ``uint<bits>``.

    Raises:
        ValueError: not an int (bools refused) or out of range.
    """
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < 2**bits:
        raise ValueError(f"{name} must be an integer in [0, 2^{bits}), got {value!r}")
    return value.to_bytes(32, "big")


def channel_id_bytes(channel_id: str | bytes) -> bytes:
    """32 raw bytes of a channel id given as ``0x`` hex (any case) or bytes.

    Raises:
        ValueError: not 32 bytes.
    """
    if isinstance(channel_id, bytes):
        raw = channel_id
    else:
        text = channel_id[2:] if isinstance(channel_id, str) and channel_id[:2] in ("0x", "0X") else ""
        try:
            raw = bytes.fromhex(text)
        except ValueError:
            raw = b""
    if len(raw) != 32:
        raise ValueError(f"a channel id is 0x + 32 bytes of hex, got {channel_id!r}")
    return raw


def normalize_channel_id(channel_id: str | bytes) -> str:
    """Lower-case ``0x`` hex of a channel id.  Raises ``ValueError`` if malformed."""
    return "0x" + channel_id_bytes(channel_id).hex()


def normalize_address(address: str) -> str:
    """Lower-case ``0x`` form of an address (any case in).  Raises ``ValueError`` if malformed."""
    return "0x" + address_word(address)[12:].hex()
