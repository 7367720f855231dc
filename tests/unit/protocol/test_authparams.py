"""The linear WWW-Authenticate scanner (private module; behaviour relied on by challenge.py)."""

from __future__ import annotations

import pytest

from mpp_claude.protocol._authparams import AuthParamError, RawParam, quote, scan_challenges


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
