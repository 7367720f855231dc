"""base64url (vectors + strictness) and canonical JSON (JCS)."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mpp_claude.errors import EncodingError
from mpp_claude.protocol import (
    b64url_decode,
    b64url_decode_text,
    b64url_encode,
    b64url_encode_text,
    canonical_json,
    decode_b64_json,
    decode_json,
    encode_b64_json,
    encoding,
)
from mpp_claude.protocol.encoding import MAX_JSON_DEPTH, is_b64url

from .vectors import error_type, expects_success, scenarios


@pytest.mark.parametrize("s", scenarios("base64url", "parse"))
def test_vector_decode(s: dict[str, Any]) -> None:
    """decode(encoded) == decoded, or an encoding_error."""
    if expects_success(s, "parse"):
        assert b64url_decode_text(s["encoded"]) == s["decoded"]
    else:
        with pytest.raises(EncodingError) as info:
            b64url_decode_text(s["encoded"])
        assert info.value.kind == error_type(s, "parse")


@pytest.mark.parametrize("s", scenarios("base64url", "format"))
def test_vector_encode(s: dict[str, Any]) -> None:
    """encode(decoded) == encoded exactly."""
    assert b64url_encode_text(s["decoded"]) == s["encoded"]


@pytest.mark.parametrize("s", scenarios("base64url", "roundtrip"))
def test_vector_roundtrip(s: dict[str, Any]) -> None:
    """decode(encode(x)) == x."""
    assert b64url_decode_text(b64url_encode_text(s["decoded"])) == s["decoded"]


@pytest.mark.parametrize("text", ["YQ==", "YQ=", "Y", "YR", "YWJ", "Pj4+", "Pj4/", "YW J", " YQ", "YQ\n",
                                  "ü"])
def test_strict_decoding(text: str) -> None:
    """Padding, impossible lengths, non-zero spare bits, the +/ alphabet and whitespace are refused."""
    with pytest.raises(EncodingError):
        b64url_decode(text)


def test_lone_surrogate_cannot_be_encoded() -> None:
    """Text that is not valid Unicode → EncodingError."""
    with pytest.raises(EncodingError):
        b64url_encode_text("\ud800")


def test_bytes_roundtrip_all_lengths() -> None:
    """Every length 0..64 round-trips and never carries '='."""
    for n in range(65):
        data = bytes(range(n))
        assert "=" not in b64url_encode(data)
        assert b64url_decode(b64url_encode(data)) == data


@pytest.mark.parametrize(("value", "expected"), [
    ({"b": 1, "a": [True, False, None]}, '{"a":[true,false,null],"b":1}'),
    ({"a": "1", "Z": "2", "_": "3", "é": "4"}, '{"Z":"2","_":"3","a":"1","é":"4"}'),
    ({"\U0001f600": 1, "\uffff": 2}, '{"\U0001f600":1,"\uffff":2}'),  # UTF-16 order: surrogates < U+FFFF
    ({"s": "<>&'\"\\/\n\t\x01é€"}, '{"s":"<>&\'\\"\\\\/\\n\\t\\u0001é€"}'),
    ([1.0, -0.0, 0.5, 1e21, 1e-7, 123e-9, 1.5e300, 100.0, 2**60],
     '[1,0,0.5,1e+21,1e-7,1.23e-7,1.5e+300,100,1152921504606846976]'),
    ([0.000001, 1e20, 12.5], '[0.000001,100000000000000000000,12.5]'),
])
def test_canonical_json(value: Any, expected: str) -> None:
    """Keys by UTF-16 code units, minimal escapes, raw UTF-8, ECMAScript numbers."""
    assert canonical_json(value) == expected.encode("utf-8")


@pytest.mark.parametrize("value", [float("nan"), float("inf"), {1: "x"}, b"x", {"a": object()}, "\ud800"])
def test_canonical_json_refuses(value: Any) -> None:
    """Values JSON cannot carry → EncodingError."""
    with pytest.raises(EncodingError):
        canonical_json(value)


def test_empty_request_is_e30() -> None:
    """`{}` encodes to `e30` (mpp-protocol §1.3)."""
    assert encode_b64_json({}) == "e30"
    assert decode_b64_json("e30") == {}


@pytest.mark.parametrize("raw", [b"NaN", b"[Infinity]", b'{"a":1,"a":2}', b"\xff", b"{", b"[" * 100_000, b""])
def test_decode_json_strict(raw: bytes) -> None:
    """No NaN/Infinity, duplicate keys, bad UTF-8, broken or absurdly deep JSON."""
    with pytest.raises(EncodingError):
        decode_json(raw)


def test_decode_json_accepts_any_layout() -> None:
    """Whitespace and key order are not significant when reading."""
    assert decode_json(' { "b" : [ 1 , 2 ] , "a" : null } ') == json.loads('{"a":null,"b":[1,2]}')


def test_nesting_limit_before_the_c_parser() -> None:
    """Depth 64 parses, 65 is refused up front (json's C parser can overflow the C stack once
    py_ecc has raised the recursion limit); brackets inside strings do not count."""
    assert decode_json("[" * MAX_JSON_DEPTH + "]" * MAX_JSON_DEPTH) is not None
    with pytest.raises(EncodingError, match="deeper"):
        decode_json("[" * (MAX_JSON_DEPTH + 1) + "]" * (MAX_JSON_DEPTH + 1))
    assert decode_json(json.dumps({"s": "[{" * 500, "t": ["\\\"[" * 100]})) == {"s": "[{" * 500,
                                                                                "t": ["\\\"[" * 100]}


_JSON_TEXT = st.text(st.sampled_from(list('aZ_"\\\n\x00\x1f\x7fé\u2028\U0001f600<&')), max_size=6)


def _json_containers(inner: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    # a named function, not a multi-line lambda: hypothesis reads extend's source to check that it
    # uses its argument, and a lambda spread over lines is not always read back whole
    return (st.lists(inner, max_size=3) | st.dictionaries(_JSON_TEXT, inner, max_size=3)
            | st.tuples(inner, inner))


_JSON_VALUES = st.recursive(st.none() | st.booleans() | st.integers(-(2**70), 2**70) | _JSON_TEXT,
                            _json_containers, max_leaves=12)


@settings(max_examples=300, deadline=None)
@given(_JSON_VALUES)
def test_canonical_json_fast_path_matches_the_writer(value: Any) -> None:
    """The one-call path for float-free values with ASCII keys writes what the JCS writer writes."""
    out: list[str] = []
    encoding._write(value, out)
    try:
        expected = "".join(out).encode("utf-8")
    except UnicodeEncodeError:
        with pytest.raises(EncodingError):
            canonical_json(value)
        return
    assert canonical_json(value) == expected


def test_decode_json_refuses_a_bom_as_json_loads_does() -> None:
    """The shared strict decoder keeps json.loads' refusal of a leading byte-order mark."""
    with pytest.raises(json.JSONDecodeError) as plain:
        json.loads('\ufeff{"a":1}')
    with pytest.raises(EncodingError, match=re.escape(f"JSON: {plain.value.msg} at position 0")):
        decode_json('\ufeff{"a":1}')
    with pytest.raises(EncodingError, match="duplicate object key 'a'"):
        decode_json('{"a":1,"a":2}')


@settings(max_examples=400)
@given(st.text(alphabet="AZaz09-_+/= \t\x00\x7f\u00e9\u0660\U0001f600", max_size=20))
def test_is_b64url_is_the_alphabet_expression(text: str) -> None:
    """``is_b64url`` accepts exactly what ``[A-Za-z0-9_-]*`` fully matches (non-ASCII digits too)."""
    assert is_b64url(text) == (re.fullmatch(r"[A-Za-z0-9_-]*", text) is not None)
    assert is_b64url(text) == all(c in "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
                                  for c in text)
