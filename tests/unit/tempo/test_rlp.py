"""Strict RLP: round trips, and every non-canonical form refused with RlpError."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mpp_claude.tempo import _rlp
from mpp_claude.tempo._rlp import RlpError

items = st.recursive(st.binary(max_size=80), lambda inner: st.lists(inner, max_size=5), max_leaves=20)


@given(items)
def test_round_trip(item: _rlp.Item) -> None:
    """decode(encode(x)) == x for any nesting of byte strings and lists."""
    assert _rlp.decode(_rlp.encode(item)) == item


@settings(max_examples=300)
@given(st.binary(max_size=200))
def test_decoder_contract(data: bytes) -> None:
    """Arbitrary bytes either decode to an item that re-encodes identically, or raise RlpError."""
    try:
        item = _rlp.decode(data)
    except RlpError:
        return
    assert _rlp.encode(item) == data


def test_known_encodings() -> None:
    """Yellow-paper examples: 'dog', the empty list, 0, 15, 1024, the set-theoretic three."""
    assert _rlp.encode(b"dog") == b"\x83dog"
    assert _rlp.encode([]) == b"\xc0"
    assert _rlp.encode(_rlp.uint_to_bytes(0)) == b"\x80"
    assert _rlp.encode(_rlp.uint_to_bytes(15)) == b"\x0f"
    assert _rlp.encode(_rlp.uint_to_bytes(1024)) == b"\x82\x04\x00"
    assert _rlp.encode([[], [[]], [[], [[]]]]) == bytes.fromhex("c7c0c1c0c3c0c1c0")
    assert _rlp.encode(b"a" * 56) == b"\xb8\x38" + b"a" * 56


@pytest.mark.parametrize(("data", "reason"), [
    (b"\x81\x05", "single byte below 0x80"),
    (b"\xb8\x05hello", "long form used for a length below 56"),
    (b"\xb9\x00\x38" + b"a" * 56, "leading zero"),
    (b"\x83do", "runs past the end"),
    (b"\x83dogX", "trailing bytes"),
    (b"\xc3\x83do", "runs past the end"),
    (b"", "unexpected end"),
    (b"\xc0" * 1 + b"\x00", "trailing bytes"),
])
def test_non_canonical_is_refused(data: bytes, reason: str) -> None:
    """Each non-canonical or truncated form is an RlpError naming the problem."""
    with pytest.raises(RlpError, match=reason):
        _rlp.decode(data)


def test_nesting_limit() -> None:
    """Deeply nested lists are refused instead of recursing without bound."""
    item: _rlp.Item = []
    for _ in range(40):
        item = [item]
    with pytest.raises(RlpError, match="nesting too deep"):
        _rlp.decode(_rlp.encode(item))


def test_integers() -> None:
    """Integers: minimal encoding; leading zeros and over-wide values are refused."""
    assert _rlp.bytes_to_uint(b"") == 0
    assert _rlp.bytes_to_uint(b"\x01\x00") == 256
    with pytest.raises(RlpError, match="leading zero"):
        _rlp.bytes_to_uint(b"\x00\x01")
    with pytest.raises(RlpError, match="wider than 64 bits"):
        _rlp.bytes_to_uint(b"\x01" * 9, max_bits=64)
    with pytest.raises(ValueError):
        _rlp.uint_to_bytes(-1)
    with pytest.raises(TypeError):
        _rlp.encode(5)  # type: ignore[arg-type]
