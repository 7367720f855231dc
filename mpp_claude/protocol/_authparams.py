"""A linear scanner for ``WWW-Authenticate`` values (RFC 9110 §11.2, §11.6.1).

Strategy.  One left-to-right pass over the text with an index; every regular expression
used is a single character class anchored at the current index, so nothing ever
backtracks and the cost is O(len(text)).  (A header of 12 000 backslashes inside an
unterminated quoted string is a conformance vector: backtracking regexes take seconds.)

Grammar handled::

    WWW-Authenticate = #challenge                      ; several per value, comma-separated
    challenge  = auth-scheme [ 1*SP ( token68 / #auth-param ) ]
    auth-param = token BWS "=" BWS ( token / quoted-string )

Each element after a comma is either an auth-param (a token followed by ``=`` and a
value) or the scheme of a new challenge (a token that is not).  Because quoted strings
are consumed whole, a ``Payment`` inside ``realm="contact Payment support"`` is data.

Leniency, each pinned by a conformance vector or by robustness against real servers:

* Text after a closing quote and before the next comma is skipped (the value before it is
  kept): ``description="Payment for "Premium" service"`` gives ``Payment for ``.
* A quoted string that never closes yields a parameter flagged ``complete=False``; the
  caller decides (the challenge layer ignores incomplete *unknown* parameters and refuses
  incomplete known ones).
* ``\\uXXXX`` inside a quoted string is read as a UTF-16 code unit (surrogate pairs
  combined, a lone surrogate becomes U+FFFD).  RFC 9110 would read it as ``uXXXX``, but
  the reference SDKs write every character above U+00FF that way (mppx; pympp reads and
  writes it too), and no RFC-only writer needs to escape a ``u``.  :func:`quote` writes
  the same escapes, so a formatted header is always Latin-1, as HTTP stacks require.

This module knows nothing about MPP: it returns scheme names and raw parameter lists,
and the only exception it raises is :class:`AuthParamError`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import NamedTuple

__all__ = ["AuthParamError", "RawChallenge", "RawParam", "quote", "scan_challenges"]

# RFC 9110 tchar.  Each pattern is one character class: matching it is linear.
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_TOKEN68 = re.compile(r"[A-Za-z0-9\-._~+/]+=*")
_WS = re.compile(r"[ \t]*")
# quoted-string body: qdtext or quoted-pair, CTLs other than HTAB excluded.  The two
# alternatives start with disjoint characters, so the greedy star never backtracks.
_QUOTED_BODY = re.compile(r'(?:[^"\\\x00-\x08\x0a-\x1f\x7f]|\\[^\x00-\x08\x0a-\x1f\x7f])*')
_SKIP = re.compile(r'[^,"]*')
_QUOTED_PAIR = re.compile(r"\\(u[0-9A-Fa-f]{4}|.)", re.DOTALL)
_CTL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
# The common element in one match: ``name = "escape-free value"`` or ``name = token`` ending at a
# comma or the end.  Every part is one character class followed by a character outside it, so
# a failing match costs at most the element's length (then the general path takes over).
_SIMPLE_PARAM = re.compile(r'([!#$%&\'*+\-.^_`|~0-9A-Za-z]+)[ \t]*=[ \t]*'
                           r'(?:"([^"\\\x00-\x08\x0a-\x1f\x7f]*)"|([!#$%&\'*+\-.^_`|~0-9A-Za-z]+))'
                           r'[ \t]*(?=,|\Z)')

# The usual whole value in one match: ``Scheme name="escape-free value"`` followed by more such
# params separated by a comma and optional blanks (what every MPP server writes).  Linear for the
# same reason as ``_SIMPLE_PARAM``; anything else (several challenges, tokens, escapes) takes the
# general path, which gives the same result for these values.
_QPARAM = r'[!#$%&\'*+\-.^_`|~0-9A-Za-z]+="[^"\\\x00-\x08\x0a-\x1f\x7f]*"'
_SIMPLE_VALUE = re.compile(rf'([!#$%&\'*+\-.^_`|~0-9A-Za-z]+) ({_QPARAM}(?:,[ \t]*{_QPARAM})*)')
_QPARAM_PARTS = re.compile(r'([!#$%&\'*+\-.^_`|~0-9A-Za-z]+)="([^"]*)"')


class AuthParamError(ValueError):
    """The header value is not a syntactically valid list of challenges."""


class RawParam(NamedTuple):
    """One ``name=value`` pair as written (``name`` lower-cased, escapes resolved).  A named
    tuple: a challenge has ~8 of them and a frozen dataclass costs ~2 us each to build."""

    name: str
    value: str
    quoted: bool
    complete: bool = True  # False: an unterminated quoted string ran to the end


@dataclass(slots=True)
class RawChallenge:
    """One challenge: its scheme as written, and either a token68 or its params."""

    scheme: str
    params: list[RawParam] = field(default_factory=list)
    token68: str | None = None


class _Scanner:
    """Index-based cursor over one header value."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0
        self.end = len(text)

    def error(self, what: str) -> AuthParamError:
        near = self.text[self.pos : self.pos + 20]
        return AuthParamError(f"{what} at offset {self.pos} (near {near!r})")

    def peek(self) -> str:
        return self.text[self.pos] if self.pos < self.end else ""

    def skip_ws(self) -> None:
        m = _WS.match(self.text, self.pos)
        assert m is not None  # [ \t]* always matches
        self.pos = m.end()

    def skip_separators(self) -> None:
        while self.pos < self.end and self.text[self.pos] in " \t,":
            self.pos += 1

    def token(self) -> str:
        m = _TOKEN.match(self.text, self.pos)
        if m is None:
            return ""
        self.pos = m.end()
        return m.group()

    def quoted_string(self) -> tuple[str, bool]:
        """Read from the opening quote; returns (value with escapes resolved, closed)."""
        m = _QUOTED_BODY.match(self.text, self.pos + 1)
        assert m is not None  # a starred group always matches
        value = _unescape(m.group())
        self.pos = m.end()
        if self.pos >= self.end:
            return value, False
        ch = self.text[self.pos]
        if ch == '"':
            self.pos += 1
            return value, True
        if ch == "\\" and self.pos + 1 >= self.end:  # a lone backslash at the very end
            self.pos = self.end
            return value, False
        raise self.error("control character in quoted-string")

    def skip_garbage(self) -> None:
        """Skip to the next comma outside a quoted string (or to the end)."""
        while self.pos < self.end:
            m = _SKIP.match(self.text, self.pos)
            assert m is not None
            self.pos = m.end()
            if self.pos >= self.end or self.text[self.pos] == ",":
                return
            self.quoted_string()  # an opening quote: consume the quoted string whole

    def at_param(self) -> bool:
        """True when the cursor is at ``token BWS "=" BWS value`` (not a token68's padding)."""
        m = _TOKEN.match(self.text, self.pos)
        if m is None:
            return False
        i = _WS.match(self.text, m.end()).end()  # type: ignore[union-attr]
        if i >= self.end or self.text[i] != "=":
            return False
        j = _WS.match(self.text, i + 1).end()  # type: ignore[union-attr]
        # "abc=" / "abc==" followed by "," or the end is a token68 with padding, not a
        # parameter (a parameter needs a value; "id=," is rejected by the caller anyway).
        return j < self.end and self.text[j] not in "=,"

    def try_token68(self) -> str | None:
        """A token68 right after a scheme: a run of token68 chars then OWS and "," or end."""
        m = _TOKEN68.match(self.text, self.pos)
        if m is None:
            return None
        after = _WS.match(self.text, m.end()).end()  # type: ignore[union-attr]
        if after < self.end and self.text[after] != ",":
            return None
        self.pos = after
        return m.group()


def _param(sc: _Scanner, name: str) -> RawParam:
    """Parse the ``BWS "=" BWS value`` that follows a parameter name."""
    sc.skip_ws()
    sc.pos += 1  # "="
    sc.skip_ws()
    if sc.peek() == '"':
        value, closed = sc.quoted_string()
        param = RawParam(name.lower(), value, quoted=True, complete=closed)
    else:
        value = sc.token()
        if not value:
            raise sc.error(f"parameter {name!r} has no value")
        param = RawParam(name.lower(), value, quoted=False)
    sc.skip_ws()
    if sc.pos < sc.end and sc.peek() != ",":
        sc.skip_garbage()  # permissive: keep the value, drop the rest of the element
    return param


def scan_challenges(text: str) -> list[RawChallenge]:
    """Split one header value into challenges and their raw parameters.

    Args:
        text: one ``WWW-Authenticate`` field value (may hold several challenges).
    Returns:
        The challenges in order; parameter names are lower-cased, duplicates are kept
        (the caller rejects them), quoted-string escapes are resolved.
    Raises:
        AuthParamError: the value does not follow the grammar (a parameter before any
            scheme, a parameter without a value, a stray character, a control character
            inside a quoted string).
    """
    whole = _SIMPLE_VALUE.fullmatch(text)
    if whole is not None:  # fast path: one challenge of simple quoted params (no CTL can match)
        return [RawChallenge(whole.group(1), [RawParam(name.lower(), value, quoted=True)
                                              for name, value in _QPARAM_PARTS.findall(whole.group(2))])]
    bad = _CTL.search(text)
    if bad is not None:  # a field value never holds CR/LF/NUL (RFC 9110 §5.5), quoted or not
        raise AuthParamError(f"control character {bad.group()!r} at offset {bad.start()}")
    sc = _Scanner(text)
    out: list[RawChallenge] = []
    current: RawChallenge | None = None
    while True:
        sc.skip_separators()
        if sc.pos >= sc.end:
            return out
        simple = None if current is None or current.token68 is not None else _SIMPLE_PARAM.match(text, sc.pos)
        if simple is not None:  # fast path; the same result as at_param() + _param() below
            assert current is not None
            name, quoted, plain = simple.groups()
            current.params.append(RawParam(name.lower(), plain if quoted is None else quoted,
                                           quoted=quoted is not None))
            sc.pos = simple.end()
            continue
        if sc.at_param():
            if current is None:
                raise sc.error("auth-param before any auth-scheme")
            if current.token68 is not None:
                raise sc.error("auth-param after a token68")
            name = sc.token()
            current.params.append(_param(sc, name))
            continue
        scheme = sc.token()
        if not scheme:
            raise sc.error(f"unexpected character {sc.peek()!r}")
        current = RawChallenge(scheme)
        out.append(current)
        if sc.peek() in (" ", "\t"):
            sc.skip_ws()
            if sc.pos < sc.end and sc.peek() != "," and not sc.at_param():
                tok68 = sc.try_token68()
                if tok68 is None:
                    raise sc.error(f"unexpected text after auth-scheme {scheme!r}")
                current.token68 = tok68
        elif sc.pos < sc.end and sc.peek() != ",":
            raise sc.error(f"unexpected character after auth-scheme {scheme!r}")


def _unescape(body: str) -> str:
    """Resolve the quoted-pairs (and mppx's ``\\uXXXX``) of a well-formed quoted-string body."""
    if "\\" not in body:
        return body
    if "\\u" not in body:
        # Left-to-right pairing via str.replace (fast on long runs of escapes).  NUL cannot
        # occur in the body (CTLs are refused), so it stands in for an escaped backslash.
        return body.replace("\\\\", "\x00").replace("\\", "").replace("\x00", "\\")
    units = _QUOTED_PAIR.sub(lambda m: chr(int(m.group(1)[1:], 16)) if len(m.group(1)) == 5 else m.group(1),
                             body)
    # Combine UTF-16 surrogate pairs; a lone surrogate becomes U+FFFD.
    return units.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace")


#: What ``quote`` writes as is: HTAB, printable ASCII but ``"`` and ``\\``, U+0080..U+00FF.
_VERBATIM = re.compile('[\t !#-\\[\\]-~\x80-\xff]*')


def is_verbatim(text: str) -> bool:
    """Whether ``quote`` writes ``text`` as is (between the quotes); checks several values at once
    when given their concatenation (one match instead of one per value)."""
    return _VERBATIM.fullmatch(text) is not None


def quote(value: str) -> str:
    """Write ``value`` as a quoted-string: ``"`` and ``\\`` backslash-escaped, characters
    above U+00FF as ``\\uXXXX`` UTF-16 escapes (mppx's convention; keeps the header Latin-1).

    Raises:
        ValueError: ``value`` contains a control character other than HTAB (CR/LF would
            allow header injection; nothing can escape them in a quoted-string) or a lone
            surrogate.
    """
    if _VERBATIM.fullmatch(value):  # the usual case: nothing to escape
        return f'"{value}"'
    out = ['"']
    for ch in value:
        if (ch < " " and ch != "\t") or ch == "\x7f":
            raise ValueError(f"control character {ch!r} cannot be written in a quoted-string")
        if ch in '"\\':
            out.append("\\" + ch)
        elif ch <= "\xff":
            out.append(ch)
        elif "\ud800" <= ch <= "\udfff":
            raise ValueError("a lone surrogate cannot be written in a header")
        else:
            raw = ch.encode("utf-16-be")
            out.extend(f"\\u{int.from_bytes(raw[i:i + 2], 'big'):04x}" for i in range(0, len(raw), 2))
    out.append('"')
    return "".join(out)
