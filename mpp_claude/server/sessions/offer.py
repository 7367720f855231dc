"""The session offer of a paid route and the checks of a session credential's echo (pure).

A session challenge is offered next to the charge challenges of the same 402
(draft-tempo-session-00 "Request"; mpp-protocol.md §4.5)::

    method "tempo", intent "session", request = {
        "amount": <this request's quote: the most it can cost>, "unitType": "request",
        "currency", "recipient", "suggestedDeposit",
        "methodDetails": {"escrowContract", "chainId", "minVoucherDelta"?}}

Unlike a charge challenge it binds no body ``digest`` and is not single-use: a session
credential carries a voucher (authorised by the payer's signature, monotonic, idempotent)
and the same challenge serves every request of the channel until it expires, as well as
the management requests (voucher, topUp, close) sent to the same URI with other bodies.
What the server charges is the exact upstream usage of each request, at most its quote,
which the request holds from the channel's free balance while it is served.

The echo check: HMAC id (our challenge), realm/method/intent, ``expires`` present and in
the future, ``opaque`` naming this route, and the request equal to what this server
offers today except the per-request ``amount``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from ...errors import EncodingError, InvalidChallenge, PaymentExpired
from ...protocol.challenge import Challenge, is_expired, new_challenge, verify_challenge_id
from ...protocol.encoding import canonical_json, decode_b64_json, encode_b64_json

METHOD = "tempo"
INTENT = "session"
UNIT_TYPE = "request"


@dataclass(frozen=True, slots=True)
class SessionTerms:
    """What this server's session offers contain (per currency), besides the amount."""

    realm: str
    recipient: str
    chain_id: int
    escrow: str
    currencies: tuple[str, ...]
    suggested_deposit: int
    min_voucher_delta: int = 0


def session_request(terms: SessionTerms, *, amount: int, currency: str) -> dict[str, Any]:
    """The ``request`` object of a session challenge (amounts as decimal strings)."""
    details: dict[str, Any] = {"chainId": terms.chain_id, "escrowContract": terms.escrow}
    if terms.min_voucher_delta:
        details["minVoucherDelta"] = str(terms.min_voucher_delta)
    return {"amount": str(amount), "unitType": UNIT_TYPE, "currency": currency, "recipient": terms.recipient,
            "suggestedDeposit": str(terms.suggested_deposit), "methodDetails": details}


def session_offers(terms: SessionTerms, *, route: str, amount: int, secret: bytes, now: datetime, ttl: int,
                   nonce: str, description: str | None = None) -> list[Challenge]:
    """Fresh session challenges (one per currency) for a request quoted at ``amount``."""
    expires = (now + timedelta(seconds=ttl)).replace(microsecond=0)
    opaque = encode_b64_json({"nonce": nonce, "route": route})
    return [new_challenge(secret, realm=terms.realm, method=METHOD, intent=INTENT,
                          request=session_request(terms, amount=amount, currency=cur), expires=expires,
                          description=description, opaque=opaque)
            for cur in terms.currencies]


@dataclass(frozen=True, slots=True)
class SessionEcho:
    """A session credential's echo that passed every check."""

    challenge_id: str
    currency: str
    amount: int
    expires_at: float


def check_session_echo(echo: Challenge, terms: SessionTerms, *, route: str, secret: bytes,
                       now: datetime) -> SessionEcho:
    """Check the challenge a session credential echoes (see the module docstring).

    Raises:
        InvalidChallenge: not our challenge, another realm/method/intent/route, or terms that
            differ from this server's current offer.
        PaymentExpired: the challenge expired.
    """
    cid = echo.id
    if not verify_challenge_id(secret, echo):
        raise InvalidChallenge("challenge id does not match the echoed challenge", challengeId=cid)
    if echo.realm != terms.realm or echo.method != METHOD or echo.intent != INTENT:
        raise InvalidChallenge(f"challenge is for {echo.realm!r} {echo.method}/{echo.intent}, not a session "
                               "of this server", challengeId=cid)
    if echo.expires is None:
        raise InvalidChallenge("challenge echo lacks 'expires'", challengeId=cid)
    if is_expired(echo, now):
        raise PaymentExpired(f"challenge expired at {echo.expires}", challengeId=cid)
    try:
        opaque = decode_b64_json(echo.opaque) if echo.opaque is not None else None
    except EncodingError:
        opaque = None
    if not isinstance(opaque, Mapping) or opaque.get("route") != route:
        raise InvalidChallenge(f"challenge was not issued for {route!r}", challengeId=cid)
    data = echo.request_data
    currency, amount = data.get("currency"), data.get("amount")
    if not isinstance(currency, str) or currency.lower() not in {c.lower() for c in terms.currencies} \
            or not isinstance(amount, str) or not amount.isdigit():
        raise InvalidChallenge("challenge request is not one of this server's session offers",
                               challengeId=cid)
    expected = session_request(terms, amount=int(amount), currency=currency)
    if canonical_json(data) != canonical_json(expected):
        raise InvalidChallenge("challenge request differs from this server's session offer", challengeId=cid)
    assert echo.expires_at is not None
    return SessionEcho(cid, currency, int(amount), echo.expires_at.timestamp())
