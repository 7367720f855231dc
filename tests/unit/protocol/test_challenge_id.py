"""HMAC challenge ids (mpp-protocol §1.4): the vectors, the 32-byte rule, new_challenge."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

import pytest

from mpp_claude.errors import WeakSecretError
from mpp_claude.protocol import (
    challenge_id,
    encode_b64_json,
    format_challenge,
    new_challenge,
    parse_challenge,
    verify_challenge_id,
)

from .vectors import error_type, scenarios

SECRET = "test-vector-secret-minimum-32-byte-secret"


def _kwargs(inp: dict[str, Any]) -> dict[str, Any]:
    kwargs = {k: v for k, v in inp.items() if k not in ("secretKey", "description")}
    return kwargs


@pytest.mark.parametrize("s", scenarios("challenge-id"))
def test_vector(s: dict[str, Any]) -> None:
    """challenge_id(input) == expected, or the weak secret is refused with generation_error."""
    inp = s["input"]
    if "expected" not in s:
        with pytest.raises(WeakSecretError) as info:
            challenge_id(inp["secretKey"], **_kwargs(inp))
        assert info.value.kind == error_type(s, "generate")
        return
    assert challenge_id(inp["secretKey"], **_kwargs(inp)) == s["expected"]
    # the wire string of the request gives the same id as the object
    wire_kwargs = dict(_kwargs(inp), request=encode_b64_json(inp["request"]))
    assert challenge_id(inp["secretKey"].encode(), **wire_kwargs) == s["expected"]


@pytest.mark.parametrize("secret", ["", "x" * 31, b"\x00" * 31, "é" * 15])
def test_short_secrets_refused(secret: str | bytes) -> None:
    """Fewer than 32 bytes (UTF-8 bytes, not characters) → WeakSecretError everywhere."""
    with pytest.raises(WeakSecretError):
        challenge_id(secret, realm="r", method="tempo", intent="charge", request={})
    with pytest.raises(WeakSecretError):
        new_challenge(secret, realm="r", method="tempo", intent="charge", request={})


def test_32_bytes_is_enough() -> None:
    """Exactly 32 bytes is accepted ("é" is 2 bytes, so 16 of them suffice)."""
    assert challenge_id("é" * 16, realm="r", method="tempo", intent="charge", request={})


def test_secret_type_checked() -> None:
    """A non-text, non-bytes secret is a caller error (TypeError)."""
    with pytest.raises(TypeError):
        challenge_id(12345, realm="r", method="tempo", intent="charge", request={})  # type: ignore[arg-type]


def test_new_challenge_binds_and_round_trips() -> None:
    """new_challenge computes the id over exactly what goes on the wire; parse → verify holds."""
    expires = datetime(2026, 1, 29, 12, 5, tzinfo=timezone.utc)
    ch = new_challenge(SECRET, realm="api.example.com", method="tempo", intent="charge",
                       request={"amount": "1000000"}, expires=expires, digest="sha-256=:abc=:",
                       description="d", opaque={"route": "/x"}, header="Payment-Authorization")
    assert ch.expires == "2026-01-29T12:05:00Z"
    assert ch.opaque == encode_b64_json({"route": "/x"})
    assert ch.id == challenge_id(SECRET, realm="api.example.com", method="tempo", intent="charge",
                                 request=ch.request, expires=ch.expires, digest=ch.digest, opaque=ch.opaque,
                                 header="Payment-Authorization")
    parsed = parse_challenge(format_challenge(ch))
    assert parsed == ch
    assert verify_challenge_id(SECRET, parsed)
    assert not verify_challenge_id(SECRET + "!", parsed)


def test_known_answer() -> None:
    """The §1.4 known answer with the required fields only."""
    ch = new_challenge(SECRET, realm="api.example.com", method="tempo", intent="charge",
                       request={"amount": "1000000"})
    assert ch.id == "6QDs0BmhrI_v67iWeCMvGqQJEFQ6ErWKlk7zi5xL6t0"


@pytest.mark.parametrize("change", [
    {"realm": "other"}, {"method": "stripe"}, {"intent": "session"}, {"request": {"amount": "1"}},
    {"expires": "2026-01-29T12:05:01Z"}, {"digest": "sha-256=:x:"}, {"opaque": "o"},
    {"header": "X-Pay"},
])
def test_every_bound_field_changes_the_id(change: dict[str, Any]) -> None:
    """Each bound field (not description) changes the id."""
    base: dict[str, Any] = {"realm": "r", "method": "tempo", "intent": "charge", "request": {}}
    assert challenge_id(SECRET, **base) != challenge_id(SECRET, **{**base, **change})


def test_tampered_echo_fails_verification() -> None:
    """A challenge whose field was changed after issuing no longer verifies."""
    ch = new_challenge(SECRET, realm="r", method="tempo", intent="charge", request={"amount": "1"})
    forged = parse_challenge(format_challenge(ch).replace(ch.request, encode_b64_json({"amount": "0"})))
    assert not verify_challenge_id(SECRET, forged)
