"""Hypothesis strategies for the wire-format values (arbitrary Unicode, quoting hazards)."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from hypothesis import strategies as st

from mpp_claude.protocol import Challenge, Credential, Receipt, encode_b64_json
from mpp_claude.protocol._rfc3339 import format_rfc3339

# Text biased towards the characters that matter to a quoted-string: quotes, backslashes,
# commas, '=', whitespace, controls, non-ASCII, the word Payment, plus any other character.
_ALPHABET = st.one_of(st.sampled_from('"\\,= \té—\U0001f600\x7f\r\n'), st.characters(codec="utf-8"))
_plain = st.text(_ALPHABET, max_size=10)
text = st.one_of(_plain, st.tuples(_plain, st.just("Payment"), _plain).map("".join))
nonempty_text = text.filter(bool)

json_scalars = st.one_of(st.none(), st.booleans(), st.integers(-(2**70), 2**70),
                         # JSON numbers are untyped: a float with an integral value beyond 2**53 is
                         # written as digits and read back as a Python int, so leave those out.
                         st.floats(allow_nan=False, allow_infinity=False)
                         .filter(lambda f: not (f.is_integer() and abs(f) >= 2**53)), text)


def _containers(inner: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    # named, not a multi-line lambda (hypothesis reads extend's source back to check it recurses)
    return st.one_of(st.lists(inner, max_size=4), st.dictionaries(text, inner, max_size=4))


json_values = st.recursive(json_scalars, _containers, max_leaves=8)
json_objects = st.dictionaries(text, json_values, max_size=5)

timestamps = st.datetimes(min_value=datetime(1970, 1, 1), max_value=datetime(9999, 12, 31),
                          timezones=st.just(timezone.utc)).map(format_rfc3339)


def _maybe(strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.one_of(st.none(), strategy)


challenges = st.builds(
    Challenge,
    id=nonempty_text, realm=nonempty_text,
    method=st.from_regex(r"[a-z]{1,8}", fullmatch=True),
    intent=st.from_regex(r"[A-Za-z0-9-]{1,10}", fullmatch=True),
    request=json_objects.map(encode_b64_json),
    expires=_maybe(timestamps), digest=_maybe(text), description=_maybe(text), opaque=_maybe(text),
    header=_maybe(nonempty_text),
)

credentials = st.builds(Credential, challenge=challenges, payload=json_objects,
                        source=st.one_of(st.none(), text, json_objects))

_NAMED = {"status", "method", "timestamp", "reference", "externalId"}
receipts = st.builds(
    Receipt, status=nonempty_text, timestamp=timestamps, reference=nonempty_text,
    method=_maybe(text), external_id=_maybe(text),
    extra=st.dictionaries(text.filter(lambda k: k not in _NAMED), json_values, max_size=4),
)

# Header-ish garbage: fragments of the grammar glued together at random.
FRAGMENTS = st.sampled_from(["Payment", "payment", "Bearer", " ", "\t", ",", "=", '"', "\\", "id", "realm",
                             "method", "intent", "request", "e30", "tempo", "charge", "==", "é", "\x00"])
garbage_headers = st.one_of(st.text(), st.lists(FRAGMENTS, max_size=40).map("".join))
