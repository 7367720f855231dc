"""Server-side checks of a credential's challenge echo, in the order the conformance cases pin.

mpp-protocol §1.4, "Server verification order":

1. the credential parses (done before this module: :func:`~.credential.parse_credential`
   raises ``MalformedCredential``);
2. the HMAC id recomputed from the **echoed** fields equals the echoed id;
3. the echoed realm, method, intent and decoded request equal the route's own;
4. if the route issues an expiry, the echo carries ``expires``;
5. ``expires`` is not in the past (``PaymentExpired``);
6. the body digest, when the echo binds one and a body is given;
7. then (elsewhere) single use and the method-specific proof.

Checking only the HMAC is not enough: an attacker can present any challenge *we issued*
(for a cheaper route, say) with a valid id, so step 3 compares against the route.
Single use (replay) needs a store and is not checked here.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from mpp_claude.errors import EncodingError, InvalidChallenge, PaymentExpired
from mpp_claude.protocol.challenge import MIN_SECRET_BYTES, Challenge, _id_matches, _secret_bytes, is_expired
from mpp_claude.protocol.digest import digest_matches
from mpp_claude.protocol.encoding import canonical_json

__all__ = ["verify_echo"]


def verify_echo(echo: Challenge, *, secret: str | bytes, realm: str, method: str, intent: str,
                request: Mapping[str, Any], expires_required: bool, now: datetime,
                body: bytes | None = None, request_b64: str | None = None) -> None:
    """Check a credential's challenge echo against our secret and the route (steps 2-6 above).

    Args:
        echo: ``credential.challenge``.
        secret: the server secret that issued the id (at least 32 bytes).
        realm, method, intent, request: what this route issues (the request object
            without its expiry-dependent parts, exactly as it was put in the challenge).
        expires_required: whether this route's challenges carry ``expires``.
        now: the current time (aware).
        body: the received request body, checked when the echo binds a ``digest``.
        request_b64: ``encode_b64_json(request)`` when the caller has it: an echo carrying
            exactly this text is the same request without comparing canonical forms (any
            other text is still compared by its decoded object).
    Raises:
        InvalidChallenge: the id is not our HMAC of the echo, the echo differs from the
            route, ``expires`` is missing although required, or the body digest differs.
        PaymentExpired: the echo's ``expires`` has passed.
        WeakSecretError: ``secret`` is shorter than 32 bytes.
    """
    _verify_echo(echo, key=_secret_bytes(secret, MIN_SECRET_BYTES), realm=realm, method=method,
                 intent=intent, request=request, expires_required=expires_required, now=now, body=body,
                 request_b64=request_b64)


def _verify_echo(echo: Challenge, *, key: bytes, realm: str, method: str, intent: str,
                 request: Mapping[str, Any], expires_required: bool, now: datetime,
                 body: bytes | None, request_b64: str | None = None) -> None:
    """:func:`verify_echo` with an already-checked key (the conformance adapter's 10-byte one)."""
    if not _id_matches(key, echo):
        raise InvalidChallenge("challenge id does not match the echoed challenge", challengeId=echo.id)
    if echo.realm != realm:
        raise InvalidChallenge(f"challenge realm {echo.realm!r} is not this server's", challengeId=echo.id)
    if echo.method != method or echo.intent != intent:
        raise InvalidChallenge(f"challenge is for {echo.method}/{echo.intent}, this route takes "
                               f"{method}/{intent}", challengeId=echo.id)
    try:  # the same text is the same object; other text may still encode the same object
        same_request = echo.request == request_b64 or echo.request_jcs == canonical_json(request)
    except EncodingError:
        same_request = False
    if not same_request:
        raise InvalidChallenge("challenge request does not match this route", challengeId=echo.id)
    if expires_required and echo.expires is None:
        raise InvalidChallenge("challenge echo lacks 'expires'", challengeId=echo.id)
    if is_expired(echo, now):
        raise PaymentExpired(f"challenge expired at {echo.expires}", challengeId=echo.id)
    if echo.digest is not None and body is not None and not digest_matches(echo.digest, body):
        raise InvalidChallenge("request body does not match the challenge digest", challengeId=echo.id)
