"""Small shared helpers: 400 errors, id/name sanitising, data-URL parsing."""

from __future__ import annotations

import hashlib
import re
from typing import Any

from mpp_claude.errors import ConversionError

_ID_OK = re.compile(r"^[A-Za-z0-9_-]+$")
_NAME_OK = re.compile(r"^[A-Za-z0-9_-]{1,128}$")
_BAD_CHARS = re.compile(r"[^A-Za-z0-9_-]")


def bad(message: str, param: str | None, code: str = "invalid_value") -> ConversionError:
    """A 400 ``invalid_request_error`` naming the offending field."""
    return ConversionError(message, status=400, param=param, code=code)


def unsupported(message: str, param: str) -> ConversionError:
    """A 400 for a parameter value Claude has no equivalent for."""
    return ConversionError(message, status=400, param=param, code="unsupported_value")


def _suffix(original: str) -> str:
    return hashlib.sha256(original.encode("utf-8", "surrogatepass")).hexdigest()[:10]


def sanitize_id(original: str) -> str:
    """A tool-call id Anthropic accepts (``^[a-zA-Z0-9_-]+$``).

    Valid ids pass unchanged.  Others get their bad characters replaced by ``_`` plus a hash of
    the original, so two different ids never collide and both ids of a tool_use/tool_result
    pair map to the same string (§1.2, pitfall 4).
    """
    if _ID_OK.match(original):
        return original
    return f"{_BAD_CHARS.sub('_', original)[:80]}_{_suffix(original)}"


def sanitize_name(original: str) -> str:
    """A tool name Anthropic accepts (``^[a-zA-Z0-9_-]{1,128}$``), same scheme as ``sanitize_id``."""
    if _NAME_OK.match(original):
        return original
    return f"{_BAD_CHARS.sub('_', original)[:100]}_{_suffix(original)}"


def is_int(value: Any) -> bool:
    """True for an ``int`` that is not a ``bool``."""
    return isinstance(value, int) and not isinstance(value, bool)


def is_number(value: Any) -> bool:
    """True for a finite ``int``/``float`` that is not a ``bool``."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    return value == value and value not in (float("inf"), float("-inf"))


def parse_data_url(url: str) -> tuple[str, bool, str] | None:
    """Split ``data:<mime>[;params][;base64],<payload>`` into (mime, is_base64, payload).

    Returns ``None`` when ``url`` is not a data URL.
    """
    if not url.startswith("data:"):
        return None
    head, sep, payload = url[5:].partition(",")
    if not sep:
        return None
    parts = head.split(";")
    mime = parts[0].strip().lower()
    is_b64 = any(p.strip().lower() == "base64" for p in parts[1:])
    return mime, is_b64, payload
