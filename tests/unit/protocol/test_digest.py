"""RFC 9530 content digests."""

from __future__ import annotations

import base64
import hashlib

import pytest

from mpp_claude.protocol import content_digest, digest_matches

BODY = b'{"model":"claude","messages":[]}'
B64 = base64.b64encode(hashlib.sha256(BODY).digest()).decode()


def test_content_digest_format() -> None:
    """sha-256=:<base64>: of the body."""
    assert content_digest(BODY) == f"sha-256=:{B64}:"
    assert content_digest(b"") == "sha-256=:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=:"


@pytest.mark.parametrize("form", [f"sha-256=:{B64}:", f"sha-256={B64}", f"sha-256={B64.rstrip('=')}",
                                  f"SHA-256=:{B64}:", f"sha-512=:AAAA:, sha-256=:{B64}:"])
def test_accepted_forms(form: str) -> None:
    """RFC 9530 form, the vectors' colon-less forms, and a multi-algorithm value all match."""
    assert digest_matches(form, BODY)


@pytest.mark.parametrize("form", [f"sha-256=:{B64}:", "sha-256=:AAAA:", "sha-512=:AAAA:", "", "garbage",
                                  f"sha-256=:{B64}", "sha-256=:!!!:"])
def test_mismatch_or_malformed(form: str) -> None:
    """Another body, a short/foreign/malformed digest → False, never an exception."""
    assert not digest_matches(form, BODY + b" ")
