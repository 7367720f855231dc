"""``Accept-Payment``: the client's method/intent preferences (digest §1.11).

Example: ``Accept-Payment: tempo/charge, tempo/session;q=0, stripe/charge;q=0.5, */session;q=0.3``.

Each range is ``method/intent`` with ``*`` wildcards and an optional ``q`` weight
(default 1, ``q=0`` = not acceptable).  The server SHOULD drop challenges whose best
range has q=0 and order the rest by q, ties keeping server order; the most specific
matching range decides a challenge's q.  An absent header accepts everything; a
malformed header or one matching nothing MAY be ignored, and here it is (the challenge
stays authoritative, so the server offers everything rather than nothing).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TypeVar

from mpp_claude.errors import FormatError, ParseError
from mpp_claude.protocol.challenge import Challenge

__all__ = ["AcceptRange", "format_accept_payment", "parse_accept_payment", "select_challenges"]

_PART = r"(?:\*|[a-z0-9][a-z0-9-]*)"
_RANGE = re.compile(rf"({_PART})/({_PART})")
_QVALUE = re.compile(r"(?:0(?:\.[0-9]{0,3})?|1(?:\.0{0,3})?)")
_PARAM = re.compile(r"([!#$%&'*+\-.^_`|~0-9A-Za-z]+)[ \t]*=[ \t]*([^;, \t]*)")

C = TypeVar("C", bound=Challenge)


@dataclass(frozen=True, slots=True)
class AcceptRange:
    """One ``method/intent;q=…`` range (``*`` is a wildcard; ``q`` in [0, 1])."""

    method: str
    intent: str
    q: float = 1.0

    def __post_init__(self) -> None:
        if _RANGE.fullmatch(f"{self.method}/{self.intent}") is None:
            raise ValueError(f"invalid Accept-Payment range {self.method}/{self.intent!r}")
        if not 0.0 <= self.q <= 1.0:
            raise ValueError(f"Accept-Payment q must be within [0, 1], got {self.q!r}")

    @property
    def specificity(self) -> int:
        """2 for a concrete method, +1 for a concrete intent (a concrete method outranks an intent)."""
        return (2 if self.method != "*" else 0) + (1 if self.intent != "*" else 0)

    def matches(self, method: str, intent: str) -> bool:
        """Whether this range covers ``method``/``intent`` (compared case-insensitively)."""
        return (self.method in ("*", method.lower())) and (self.intent in ("*", intent.lower()))


def parse_accept_payment(values: str | Sequence[str]) -> list[AcceptRange]:
    """Parse ``Accept-Payment`` value(s).

    Args:
        values: one header value or all of them (they are joined with commas).
    Returns:
        The ranges in order (names lower-cased; parameters other than ``q`` ignored).
    Raises:
        ParseError: a range is not ``method/intent`` or a ``q`` is not an RFC 9110 qvalue.
    """
    text = values if isinstance(values, str) else ",".join(values)
    ranges: list[AcceptRange] = []
    for element in text.split(","):
        element = element.strip(" \t")
        if not element:
            continue
        head, *params = element.split(";")
        m = _RANGE.fullmatch(head.strip(" \t").lower())
        if m is None:
            raise ParseError(f"Accept-Payment: {head.strip()!r} is not a method/intent range")
        q = 1.0
        for param in params:
            pm = _PARAM.fullmatch(param.strip(" \t"))
            if pm is None:
                raise ParseError(f"Accept-Payment: malformed parameter {param.strip()!r}")
            if pm.group(1).lower() == "q":
                if _QVALUE.fullmatch(pm.group(2)) is None:
                    raise ParseError(f"Accept-Payment: q must be a qvalue in [0, 1], got {pm.group(2)!r}")
                q = float(pm.group(2))
        ranges.append(AcceptRange(m.group(1), m.group(2), q))
    return ranges


def format_accept_payment(ranges: Sequence[AcceptRange]) -> str:
    """Write ranges as an ``Accept-Payment`` value (``q`` omitted when 1).

    Raises:
        FormatError: no ranges given.
    """
    if not ranges:
        raise FormatError("Accept-Payment needs at least one range")
    parts = []
    for r in ranges:
        text = f"{r.method}/{r.intent}"
        if r.q != 1.0:
            text += ";q=" + (f"{r.q:.3f}".rstrip("0").rstrip(".") or "0")
        parts.append(text)
    return ", ".join(parts)


def select_challenges(challenges: Sequence[C], accept: str | Sequence[str] | None) -> list[C]:
    """Filter and order the server's challenges by the client's ``Accept-Payment``.

    Args:
        challenges: the challenges the server would offer, in its order of preference.
        accept: the ``Accept-Payment`` header value(s), or ``None`` when absent.
    Returns:
        Challenges whose most specific matching range has q > 0, by descending q (stable).
        All challenges, unchanged, when the header is absent, malformed or leaves none.
    """
    if accept is None:
        return list(challenges)
    try:
        ranges = parse_accept_payment(accept)
    except ParseError:
        return list(challenges)
    scored: list[tuple[float, int, C]] = []
    for index, ch in enumerate(challenges):
        best: AcceptRange | None = None
        for r in ranges:
            if r.matches(ch.method, ch.intent) and (best is None or r.specificity > best.specificity):
                best = r
        if best is not None and best.q > 0:
            scored.append((-best.q, index, ch))
    if not scored:
        return list(challenges)
    scored.sort(key=lambda item: (item[0], item[1]))
    return [ch for _, _, ch in scored]
