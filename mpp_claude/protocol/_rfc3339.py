"""RFC 3339 ``date-time`` parsing and formatting (the ``expires`` and ``timestamp`` fields)."""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone
from functools import lru_cache

__all__ = ["format_rfc3339", "format_second", "parse_kept", "parse_rfc3339"]

# RFC 3339 §5.6 date-time; "T"/"Z" case-insensitive as §5.6 NOTE allows.  No nested
# quantifiers, so matching is linear.
_DATE_TIME = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(\.\d{1,9})?([Zz]|[+-]\d{2}:\d{2})"
)


def parse_rfc3339(text: str) -> datetime:
    """Parse an RFC 3339 date-time into an aware ``datetime`` in UTC.

    Args:
        text: e.g. ``2026-01-29T12:05:00Z`` or ``2026-01-29T13:05:00.5+01:00``.
    Returns:
        The instant, converted to UTC (sub-microsecond digits are truncated; a leap
        second ``:60`` is read as ``:59``).
    Raises:
        ValueError: not an RFC 3339 date-time, or an impossible date.
    """
    m = _DATE_TIME.fullmatch(text) if isinstance(text, str) else None
    if m is None:
        raise ValueError(f"not an RFC 3339 date-time: {text!r}")
    year, month, day, hour, minute, second = (int(g) for g in m.groups()[:6])
    frac, zone = m.group(7), m.group(8)
    micro = int((frac[1:] + "000000")[:6]) if frac else 0
    if zone in ("Z", "z"):
        tz = timezone.utc
    else:
        sign = 1 if zone[0] == "+" else -1
        hh, mm = int(zone[1:3]), int(zone[4:6])
        if hh > 23 or mm > 59:
            raise ValueError(f"not an RFC 3339 date-time (offset out of range): {text!r}")
        tz = timezone(sign * timedelta(hours=hh, minutes=mm))
    try:
        dt = datetime(year, month, day, hour, minute, min(second, 59), micro, tzinfo=tz)
    except ValueError as exc:
        raise ValueError(f"not an RFC 3339 date-time ({exc}): {text!r}") from exc
    if second > 60:
        raise ValueError(f"not an RFC 3339 date-time (second out of range): {text!r}")
    return dt.astimezone(timezone.utc)


def format_rfc3339(when: datetime) -> str:
    """Format an aware ``datetime`` as ``YYYY-MM-DDTHH:MM:SS[.ffffff]Z`` in UTC.

    Raises:
        ValueError: ``when`` is naive (its zone would be a guess).
    """
    if when.tzinfo is None or when.utcoffset() is None:
        raise ValueError("refusing to format a naive datetime: pass an aware one (UTC)")
    utc = when.astimezone(timezone.utc)
    text = (f"{utc.year:04d}-{utc.month:02d}-{utc.day:02d}"
            f"T{utc.hour:02d}:{utc.minute:02d}:{utc.second:02d}")
    if utc.microsecond:
        text += f".{utc.microsecond:06d}".rstrip("0")
    return text + "Z"


#: ``format_rfc3339`` with its last results kept: challenge expiries and receipt timestamps move
#: one second at a time, so the texts of one second are formatted once (pure, so nothing is lost).
format_second = lru_cache(maxsize=16)(format_rfc3339)

#: ``parse_rfc3339`` with its last results kept, for the same reason (a refused text raises each
#: time: exceptions are not kept).
parse_kept = lru_cache(maxsize=128)(parse_rfc3339)
