"""Byte-level encodings of the MPP wire format: base64url and canonical JSON.

* base64url is RFC 4648 §5 *without* padding (draft-httpauth-payment §1.3).  Decoding is
  strict: only ``A-Za-z0-9-_``, no ``=``, no whitespace, a length that is not ``1 mod 4``
  and zero trailing bits, so every byte string has exactly one accepted encoding.
* Canonical JSON is JCS (RFC 8785): object keys sorted by UTF-16 code units, no
  whitespace, strings escaped minimally (only ``"``, ``\\`` and C0 controls), non-ASCII
  emitted as raw UTF-8, numbers in ECMAScript ``Number.prototype.toString`` form.  The
  conformance vectors pin exactly this (``<``, ``>``, ``&`` unescaped, upper-case keys
  sort before lower-case ones).
* Decoding JSON from a peer is strict as well: no ``NaN``/``Infinity``, no duplicate
  object keys, no lone surrogates, and a nesting-depth bomb is an error, not a crash.

Every failure is an :class:`~mpp_claude.errors.EncodingError`.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import re
from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import Any

from mpp_claude.errors import EncodingError

__all__ = [
    "b64url_decode",
    "b64url_decode_text",
    "b64url_encode",
    "b64url_encode_text",
    "canonical_json",
    "decode_b64_json",
    "decode_json",
    "encode_b64_json",
    "is_b64url",
]

_B64URL_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
_B64URL_BYTES = _B64URL_ALPHABET.encode("ascii")
# Value of each base64url character, used to check that unused trailing bits are zero.
_B64_VALUE = {c: i for i, c in enumerate(_B64URL_ALPHABET)}


def is_b64url(text: str) -> bool:
    """Whether every character of ``text`` is in the base64url alphabet ``A-Za-z0-9-_`` (``""`` is).

    One C pass (``bytes.translate`` deleting the alphabet leaves nothing): a 2 KB credential
    token is checked in ~1 us, where the regular expression ``[A-Za-z0-9_-]*`` takes ~7 us.
    """
    return text.isascii() and not text.encode("ascii").translate(None, _B64URL_BYTES)


def b64url_encode(data: bytes) -> str:
    """Encode bytes as unpadded base64url (RFC 4648 §5).

    Args:
        data: the bytes to encode.
    Returns:
        ASCII text over ``A-Za-z0-9-_``, without ``=`` padding (``b""`` gives ``""``).
    """
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(text: str) -> bytes:
    """Decode unpadded base64url text strictly.

    Args:
        text: the encoded text; padding, whitespace and the ``+/`` alphabet are refused.
    Returns:
        The decoded bytes.
    Raises:
        EncodingError: a character outside ``A-Za-z0-9-_``, an impossible length
            (``len % 4 == 1``) or non-zero unused trailing bits.
    """
    if not isinstance(text, str):
        raise EncodingError(f"base64url: expected text, got {type(text).__name__}")
    if not is_b64url(text):
        bad = next(c for c in text if c not in _B64_VALUE)
        raise EncodingError(f"base64url: character {bad!r} is outside the alphabet A-Za-z0-9-_")
    rem = len(text) % 4
    if rem == 1:
        raise EncodingError(f"base64url: impossible length {len(text)} (1 mod 4)")
    if rem:
        # 2 chars carry 1 byte (4 spare bits), 3 chars carry 2 bytes (2 spare bits).
        spare_mask = 0b1111 if rem == 2 else 0b11
        if _B64_VALUE[text[-1]] & spare_mask:
            raise EncodingError("base64url: non-zero trailing bits (non-canonical encoding)")
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError) as exc:  # pragma: no cover - excluded by the checks above
        raise EncodingError(f"base64url: {exc}") from exc


def b64url_encode_text(text: str) -> str:
    """Encode text as UTF-8, then as unpadded base64url.

    Raises:
        EncodingError: ``text`` holds a lone surrogate (not encodable as UTF-8).
    """
    try:
        raw = text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise EncodingError(f"text is not valid Unicode: {exc.reason}") from exc
    return b64url_encode(raw)


def b64url_decode_text(text: str) -> str:
    """Decode unpadded base64url, then strict UTF-8.

    Raises:
        EncodingError: invalid base64url (see :func:`b64url_decode`) or bytes that are
            not valid UTF-8 (no U+FFFD replacement).
    """
    raw = b64url_decode(text)
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise EncodingError(f"base64url: decoded bytes are not valid UTF-8 ({exc.reason})") from exc


# --- canonical JSON (RFC 8785) -----------------------------------------------------------------


def _number(value: int | float) -> str:
    """ECMAScript Number::toString of a finite number, as RFC 8785 §3.2.2.3 requires."""
    if isinstance(value, int):
        # Integers are emitted exactly.  RFC 8785 would round integers beyond 2**53 to a
        # double; MPP carries amounts as strings, so exact digits are the safer choice.
        return str(value)
    if not math.isfinite(value):
        raise EncodingError(f"canonical JSON: {value!r} is not a JSON number")
    if value == 0:
        return "0"
    sign = "-" if value < 0 else ""
    # repr() gives the shortest round-tripping digits, as ECMAScript does.
    tup = Decimal(repr(abs(value))).normalize().as_tuple()
    digits = "".join(map(str, tup.digits))
    k = len(digits)
    n = int(tup.exponent) + k  # value = 0.d1..dk * 10**n
    if k <= n <= 21:
        body = digits + "0" * (n - k)
    elif 0 < n <= 21:
        body = digits[:n] + "." + digits[n:]
    elif -6 < n <= 0:
        body = "0." + "0" * (-n) + digits
    else:
        exp = n - 1
        mantissa = digits[0] + ("." + digits[1:] if k > 1 else "")
        body = f"{mantissa}e{'+' if exp >= 0 else '-'}{abs(exp)}"
    return sign + body


def _string(value: str) -> str:
    # json.dumps with ensure_ascii=False escapes exactly ", \ and U+0000..U+001F, using the
    # short forms \b \t \n \f \r and lower-case \u00XX otherwise: the JCS rules.
    return json.dumps(value, ensure_ascii=False)


def _write(value: Any, out: list[str]) -> None:
    if value is None:
        out.append("null")
    elif value is True:
        out.append("true")
    elif value is False:
        out.append("false")
    elif isinstance(value, str):
        out.append(_string(value))
    elif isinstance(value, (int, float)):
        out.append(_number(value))
    elif isinstance(value, Mapping):
        keys = list(value.keys())
        if not all(isinstance(k, str) for k in keys):
            raise EncodingError("canonical JSON: object keys must be strings")
        try:
            keys.sort(key=lambda k: k.encode("utf-16-be"))  # UTF-16 code-unit order
        except UnicodeEncodeError as exc:
            raise EncodingError("canonical JSON: key holds a lone surrogate") from exc
        out.append("{")
        for i, key in enumerate(keys):
            if i:
                out.append(",")
            out.append(_string(key))
            out.append(":")
            _write(value[key], out)
        out.append("}")
    elif isinstance(value, Sequence) and not isinstance(value, (bytes, bytearray)):
        out.append("[")
        for i, item in enumerate(value):
            if i:
                out.append(",")
            _write(item, out)
        out.append("]")
    else:
        raise EncodingError(f"canonical JSON: cannot encode a {type(value).__name__}")


def _plain(value: Any, depth: int) -> bool:
    """Whether ``json.dumps(sort_keys=True, ensure_ascii=False)`` writes ``value`` exactly as JCS:
    only ``dict`` (ASCII ``str`` keys: code-point order is UTF-16 order), ``list``/``tuple``,
    ``str``, ``int``, ``bool`` and ``None`` (floats print differently), at most 64 deep."""
    kind = type(value)
    if kind is str or kind is int or kind is bool or value is None:
        return True
    if depth >= MAX_JSON_DEPTH:
        return False
    if kind is dict:
        for key in value:
            if type(key) is not str or not key.isascii():
                return False
        items = value.values()
    elif kind is list or kind is tuple:
        items = value
    else:
        return False
    for item in items:  # leaves inline: a recursive call per string costs more than the check
        leaf = type(item)
        if not (leaf is str or leaf is int or leaf is bool or item is None or _plain(item, depth + 1)):
            return False
    return True


def canonical_json(value: Any) -> bytes:
    """Serialise a JSON value with JCS (RFC 8785).

    Args:
        value: ``None``, ``bool``, ``int``, finite ``float``, ``str``, a ``Mapping`` with
            ``str`` keys or a sequence (not bytes) of such values.
    Returns:
        The canonical UTF-8 bytes.
    Raises:
        EncodingError: a value JSON cannot carry (NaN, bytes, non-string key, lone
            surrogate, nesting too deep).
    """
    out: list[str] = []
    try:
        if _plain(value, 0):  # MPP objects (all strings): one C-encoder call, ~10x faster
            return _jcs_plain(value).encode("utf-8")
        _write(value, out)
        return "".join(out).encode("utf-8")
    except RecursionError as exc:
        raise EncodingError("canonical JSON: nesting too deep") from exc
    except UnicodeEncodeError as exc:
        raise EncodingError("canonical JSON: string holds a lone surrogate") from exc


#: ``json.dumps(value, ensure_ascii=False, sort_keys=True, separators=(",", ":"))`` without building
#: an encoder per call.
_jcs_plain = json.JSONEncoder(ensure_ascii=False, sort_keys=True, separators=(",", ":")).encode


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj: dict[str, Any] = {}
    for key, val in pairs:
        if key in obj:
            raise EncodingError(f"JSON: duplicate object key {key!r}")
        obj[key] = val
    return obj


def _no_constant(name: str) -> Any:
    raise EncodingError(f"JSON: {name} is not a JSON number")


#: Deepest JSON nesting accepted from a peer (MPP objects nest about 4 deep).
MAX_JSON_DEPTH = 64
# A JSON string, or one bracket.  The string's two alternatives start with disjoint
# characters, so matching is linear.
_STRING_OR_BRACKET = re.compile(r'"(?:[^"\\]|\\.)*"|[\[\]{}]', re.DOTALL)


def _check_depth(text: str) -> None:
    """Refuse nesting deeper than MAX_JSON_DEPTH *before* json.loads sees it.

    json's C scanner recurses on the C stack, and eth-account's dependency py_ecc raises
    the interpreter's recursion limit to 100 000 on import, so a few kilobytes of ``[``
    would crash the process (SIGSEGV) instead of raising RecursionError.
    """
    if text.count("[") + text.count("{") <= MAX_JSON_DEPTH:
        return  # cannot be deeper than the number of openers
    depth = 0
    for m in _STRING_OR_BRACKET.finditer(text):
        token = m.group()
        if token in "[{":
            depth += 1
            if depth > MAX_JSON_DEPTH:
                raise EncodingError(f"JSON: nesting deeper than {MAX_JSON_DEPTH}")
        elif token in "]}":
            depth -= 1


def loads_bounded(text: str | bytes) -> Any:
    """``json.loads`` for untrusted text, refusing nesting deeper than :data:`MAX_JSON_DEPTH`.

    Unlike :func:`decode_json` it accepts duplicate keys and ``NaN`` as ``json.loads`` does;
    use it wherever bytes from a peer (request bodies, tool arguments, upstream events) are
    parsed, so no input can crash the process (see ``_check_depth``).

    Raises:
        ValueError: invalid JSON (``json.JSONDecodeError``) or nesting too deep (``EncodingError``).
    """
    if isinstance(text, (bytes, bytearray)):
        text = text.decode("utf-8")
    _check_depth(text)
    return json.loads(text)


#: ``json.loads(text, object_pairs_hook=_no_duplicates, parse_constant=_no_constant)``, one decoder
#: for every call (``json.loads`` builds one per call when given options).
_STRICT = json.JSONDecoder(object_pairs_hook=_no_duplicates, parse_constant=_no_constant)


def decode_json(raw: bytes | str) -> Any:
    """Parse JSON from a peer strictly.

    Args:
        raw: UTF-8 bytes or text.
    Returns:
        The parsed value (``dict``/``list``/``str``/``int``/``float``/``bool``/``None``).
    Raises:
        EncodingError: invalid UTF-8 or JSON, ``NaN``/``Infinity``, a duplicate key, or
            nesting deeper than :data:`MAX_JSON_DEPTH`.
    """
    try:
        text = raw.decode("utf-8") if isinstance(raw, (bytes, bytearray)) else raw
        _check_depth(text)
        if text.startswith("\ufeff"):  # what json.loads refuses before decoding
            raise json.JSONDecodeError("Unexpected UTF-8 BOM (decode using utf-8-sig)", text, 0)
        return _STRICT.decode(text)
    except UnicodeDecodeError as exc:
        raise EncodingError(f"JSON: not valid UTF-8 ({exc.reason})") from exc
    except json.JSONDecodeError as exc:
        raise EncodingError(f"JSON: {exc.msg} at position {exc.pos}") from exc
    except RecursionError as exc:
        raise EncodingError("JSON: nesting too deep") from exc


def encode_b64_json(value: Any) -> str:
    """``base64url(JCS(value))``: the encoding of ``request``, ``opaque``, credentials, receipts.

    Raises:
        EncodingError: ``value`` cannot be serialised (see :func:`canonical_json`).
    """
    return b64url_encode(canonical_json(value))


def decode_b64_json(text: str) -> Any:
    """Inverse of :func:`encode_b64_json` (any key order or whitespace is accepted).

    Raises:
        EncodingError: invalid base64url, UTF-8 or JSON (see :func:`decode_json`).
    """
    return decode_json(b64url_decode(text))
