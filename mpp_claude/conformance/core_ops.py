"""Conformance operations for the core wire format and the generic server checks.

``challenge.*``, ``credential.*``, ``receipt.*``, ``base64url.*``, ``challenge.id`` and
``server.verify``: thin wrappers that translate the harness's canonical JSON objects
to :mod:`mpp_claude.protocol` calls and back.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timezone
from typing import Any

from mpp_claude.conformance.registry import AdapterError, operation
from mpp_claude.errors import (
    InvalidChallenge,
    MalformedChallenge,
    MalformedCredential,
    PaymentExpired,
    VerificationError,
)
from mpp_claude.protocol import (
    Challenge,
    Credential,
    Receipt,
    b64url_decode_text,
    b64url_encode_text,
    challenge_id,
    format_challenge,
    format_credential,
    format_receipt,
    parse_challenges,
    parse_credential,
    parse_receipt,
)
from mpp_claude.protocol.challenge import _secret_bytes
from mpp_claude.protocol.verify import _verify_echo

__all__: list[str] = []

# server.verify: what the stub payment method returns (server-verification/cases.json).
STUB_RECEIPT_TIMESTAMP = "2026-01-29T12:00:00Z"
STUB_RECEIPT_REFERENCE = "conformance-receipt"


def _field(inp: Any, name: str, error_type: str) -> str:
    if not isinstance(inp, Mapping) or not isinstance(inp.get(name), str):
        raise AdapterError(error_type, f"input needs a string {name!r}")
    return str(inp[name])


@operation("challenge.parse", error_type="parse_error")
def challenge_parse(inp: Any) -> dict[str, Any]:
    """``{header}`` → canonical challenge (request decoded); the first when a value holds several."""
    return parse_challenges(_field(inp, "header", "parse_error"))[0].to_dict()


@operation("challenge.format", error_type="format_error")
def challenge_format(inp: Any) -> dict[str, str]:
    """Canonical challenge → ``{header}`` (``Payment …``)."""
    return {"header": format_challenge(Challenge.from_dict(inp))}


@operation("credential.parse", error_type="parse_error")
def credential_parse(inp: Any) -> dict[str, Any]:
    """``{header}`` → canonical credential (echoed request decoded)."""
    return parse_credential(_field(inp, "header", "parse_error")).to_dict()


@operation("credential.format", error_type="format_error")
def credential_format(inp: Any) -> dict[str, str]:
    """Canonical credential → ``{header}`` (``Payment <base64url>``)."""
    return {"header": format_credential(Credential.from_dict(inp))}


@operation("receipt.parse", error_type="parse_error")
def receipt_parse(inp: Any) -> dict[str, Any]:
    """``{header}`` → canonical receipt ``{status, method?, timestamp, reference, externalId?, extra?}``."""
    return parse_receipt(_field(inp, "header", "parse_error")).to_dict()


@operation("receipt.format", error_type="format_error")
def receipt_format(inp: Any) -> dict[str, str]:
    """Canonical receipt → ``{header}`` (bare base64url)."""
    return {"header": format_receipt(Receipt.from_dict(inp))}


@operation("base64url.encode", error_type="encoding_error")
def base64url_encode(inp: Any) -> dict[str, str]:
    """``{text}`` → ``{text}``: UTF-8 then unpadded base64url."""
    return {"text": b64url_encode_text(_field(inp, "text", "encoding_error"))}


@operation("base64url.decode", error_type="encoding_error")
def base64url_decode(inp: Any) -> dict[str, str]:
    """``{text}`` → ``{text}``: strict base64url then strict UTF-8."""
    return {"text": b64url_decode_text(_field(inp, "text", "encoding_error"))}


@operation("challenge.id", error_type="generation_error")
def challenge_id_op(inp: Any) -> dict[str, str]:
    """ChallengeIdInput → ``{id}``; a secret under 32 bytes is a ``generation_error``."""
    if not isinstance(inp, Mapping) or not isinstance(inp.get("request"), Mapping):
        raise AdapterError("generation_error", "input needs a 'request' object")
    optional = {k: inp[k] for k in ("expires", "digest", "opaque", "header") if inp.get(k) is not None}
    return {"id": challenge_id(
        _field(inp, "secretKey", "generation_error"), realm=_field(inp, "realm", "generation_error"),
        method=_field(inp, "method", "generation_error"), intent=_field(inp, "intent", "generation_error"),
        request=inp["request"], **optional)}


def _verify_error_type(exc: VerificationError) -> str:
    if isinstance(exc, InvalidChallenge):
        return "invalid_challenge"
    if isinstance(exc, PaymentExpired):
        return "payment_expired"
    return "verification_failed"


@operation("server.verify", error_type="verification_error")
def server_verify(inp: Any) -> dict[str, Any]:
    """Route configuration + incoming credential → ``{ok, receipt}`` or ``{ok: false, errorType}``.

    The cases use the 10-byte secret ``secret-key``, so the 32-byte minimum our server
    enforces is not applied here (the same checks otherwise, :func:`verify_echo`).
    """
    if not isinstance(inp, Mapping) or not isinstance(inp.get("request"), Mapping):
        raise AdapterError("verification_error", "input needs a 'request' object")
    realm = _field(inp, "realm", "verification_error")
    method = _field(inp, "method", "verification_error")
    intent = _field(inp, "intent", "verification_error")
    key = _secret_bytes(_field(inp, "secretKey", "verification_error"), 1)
    try:
        credential = Credential.from_dict(inp.get("credential"))
    except (MalformedCredential, MalformedChallenge):
        return {"ok": False, "errorType": "malformed_credential"}
    try:
        _verify_echo(credential.challenge, key=key, realm=realm, method=method, intent=intent,
                     request=inp["request"], expires_required=inp.get("expires") is not None,
                     now=datetime.now(timezone.utc), body=None)
    except VerificationError as exc:
        return {"ok": False, "errorType": _verify_error_type(exc)}
    if inp.get("verificationError"):
        return {"ok": False, "errorType": "verification_failed"}
    receipt = Receipt(status="success", timestamp=STUB_RECEIPT_TIMESTAMP, reference=STUB_RECEIPT_REFERENCE,
                      method=method)
    return {"ok": True, "receipt": receipt.to_dict()}
