"""RFC 9530 content digests binding a challenge to a request body (digest §1.6).

The challenge's ``digest`` is ``sha-256=:<base64 of SHA-256(body)>:`` (an RFC 8941
byte sequence).  The conformance vectors also write ``sha-256=<base64>`` without the
colons, with or without ``=`` padding; :func:`digest_matches` accepts all three forms
and compares the raw 32 bytes in constant time.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re

__all__ = ["content_digest", "digest_matches"]

_MEMBER = re.compile(r"[ \t]*([A-Za-z0-9_-]+)[ \t]*=[ \t]*(:?)([A-Za-z0-9+/]*={0,2})(:?)[ \t]*")


def content_digest(body: bytes) -> str:
    """The RFC 9530 ``sha-256`` digest of ``body``: ``sha-256=:<base64>:``."""
    return _format(hashlib.sha256(body).digest())


def _format(sha256: bytes) -> str:
    return "sha-256=:" + base64.b64encode(sha256).decode("ascii") + ":"


def _sha256_member(value: str) -> bytes | None:
    """The 32 bytes of the ``sha-256`` member of a digest field value, or ``None``."""
    for member in value.split(","):
        m = _MEMBER.fullmatch(member)
        if m is None or m.group(1).lower() != "sha-256" or m.group(2) != m.group(4):
            continue
        b64 = m.group(3)
        try:
            raw = base64.b64decode(b64 + "=" * (-len(b64) % 4), validate=True)
        except (binascii.Error, ValueError):
            return None
        return raw if len(raw) == 32 else None
    return None


def digest_matches(expected: str, body: bytes) -> bool:
    """Whether ``body`` has the ``sha-256`` digest named in ``expected``.

    Args:
        expected: the challenge's ``digest`` (``sha-256=:…:``, or ``sha-256=…``); other
            algorithms in the same value are ignored.
        body: the request body received.
    Returns:
        ``False`` when ``expected`` has no well-formed ``sha-256`` member or it differs.
    """
    actual = hashlib.sha256(body).digest()
    if expected == _format(actual):  # our own form, as every challenge we issue has it: no parsing
        return True  # (the digest of a body its sender holds is no secret: a plain compare is fine)
    want = _sha256_member(expected) if isinstance(expected, str) else None
    if want is None:
        return False
    return hmac.compare_digest(want, actual)
