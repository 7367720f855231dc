"""The linear WWW-Authenticate scanner (private module; behaviour relied on by challenge.py)."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mpp_claude.protocol import _authparams
from mpp_claude.protocol._authparams import AuthParamError, RawChallenge, RawParam, quote, scan_challenges


def test_schemes_params_and_token68() -> None:
    """Challenges split on scheme tokens; token68 with padding; names lower-cased."""
    out = scan_challenges('Basic dXNlcg==, Payment ID="a" , realm=b, Negotiate, Bearer x/y+z=')
    assert [(c.scheme, c.token68) for c in out] == [("Basic", "dXNlcg=="), ("Payment", None),
                                                   ("Negotiate", None), ("Bearer", "x/y+z=")]
    assert out[1].params == [RawParam("id", "a", quoted=True), RawParam("realm", "b", quoted=False)]


def test_quoted_payment_is_data() -> None:
    """A quoted ', Payment x=' does not start a challenge."""
    out = scan_challenges('Payment realm="a, Payment id=\\"b\\"", id=c')
    assert len(out) == 1
    assert out[0].params[0].value == 'a, Payment id="b"'


def test_escapes() -> None:
    """Backslash escapes any character; a trailing lone backslash leaves the string unterminated."""
    assert scan_challenges(r'X a="\a\\\"b"')[0].params[0].value == 'a\\"b'
    param = scan_challenges('X a="abc\\')[0].params[0]
    assert (param.value, param.complete) == ("abc", False)


@pytest.mark.parametrize("value", ['a="b"', "Payment a=, b=c", "Payment =x", 'Payment a="b" "c"=d, =x',
                                   "Payment @", "P\x00"])
def test_errors(value: str) -> None:
    """Params before a scheme or after a token68, stray characters, control characters."""
    with pytest.raises(AuthParamError):
        scan_challenges(value)


def test_quote() -> None:
    """quote escapes \\ and \" and refuses control characters other than HTAB."""
    assert quote('a"b\\c\td') == '"a\\"b\\\\c\td"'
    with pytest.raises(ValueError):
        quote("a\rb")


def test_utf16_escapes() -> None:
    """\\uXXXX is a UTF-16 unit (mppx/pympp convention): pairs combine, lone surrogates → U+FFFD,
    an escaped backslash before 'u' stays literal."""
    value = scan_challenges(r'X a="caf\u00e9 \u2615 \ud83d\ude00 \ud800x \\u0041 \q"')[0].params[0].value
    assert value == "café ☕ \U0001f600 \ufffdx \\u0041 q"


def test_quote_keeps_headers_latin1() -> None:
    """Characters above U+00FF are written as \\uXXXX escapes; Latin-1 stays raw; round trip holds."""
    text = "é ÿ Ā ☕ \U0001f600 \\u0041"
    quoted = quote(text)
    quoted.encode("latin-1")
    assert quoted == '"é ÿ \\u0100 \\u2615 \\ud83d\\ude00 \\\\u0041"'
    assert scan_challenges("X a=" + quoted)[0].params[0].value == text
    with pytest.raises(ValueError):
        quote("\ud800")


_PIECES = ["Payment", "Bearer", " ", "\t", ",", "=", '"', "\\", "a", "id", "Realm", "x/y", "==", "é", "\x01"]


def _scans_alike(text: str) -> None:
    """The one-regex paths (a simple param; a whole simple value) give exactly what the general
    scanner gives."""
    def scan(fast: bool) -> list[RawChallenge] | str:
        with pytest.MonkeyPatch.context() as mp:
            if not fast:
                mp.setattr(_authparams, "_SIMPLE_PARAM", re.compile(r"(?!)"))
                mp.setattr(_authparams, "_SIMPLE_VALUE", re.compile(r"(?!)"))
            try:
                return scan_challenges(text)
            except AuthParamError as exc:
                return str(exc)
    assert scan(True) == scan(False)


@settings(max_examples=400, deadline=None)
@given(st.lists(st.sampled_from(_PIECES), max_size=24).map("".join))
def test_fast_path_matches_the_general_scanner(text: str) -> None:
    _scans_alike(text)


_VALUE_TEXT = st.lists(st.sampled_from(["a", "Z", " ", "\t", ",", "=", "\\", '"', "é", "\x01", "\x7f",
                                        "Payment"]), max_size=6).map("".join)
_PARAM = st.tuples(st.sampled_from(["id", "Realm", "x", "a=b", ""]), _VALUE_TEXT).map(
    lambda p: f'{p[0]}="{p[1]}"')
_SEPARATOR = st.sampled_from([", ", ",", ",\t ", " ,", ",,", " "])


@settings(max_examples=400, deadline=None)
@given(st.sampled_from(["Payment ", "Payment  ", "Payment\t", "X ", ""]),
       st.lists(st.tuples(_PARAM, _SEPARATOR), min_size=1, max_size=5))
def test_whole_value_fast_path_matches_the_general_scanner(scheme: str,
                                                           params: list[tuple[str, str]]) -> None:
    """Values shaped like a server's challenge (almost all of them the whole-value fast path takes)
    scan exactly as the general scanner does."""
    text = scheme + "".join(p + sep for p, sep in params[:-1]) + params[-1][0]
    _scans_alike(text)


def test_whole_value_fast_path_is_taken() -> None:
    text = 'Payment id="a b", realm="r,=x",method="tempo"'
    assert _authparams._SIMPLE_VALUE.fullmatch(text) is not None
    got = scan_challenges(text)
    assert [(c.scheme, [(p.name, p.value, p.quoted) for p in c.params]) for c in got] == [
        ("Payment", [("id", "a b", True), ("realm", "r,=x", True), ("method", "tempo", True)])]
