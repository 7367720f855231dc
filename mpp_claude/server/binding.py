"""What a route asks for, and whether a credential's challenge echo matches it (pure).

A challenge is stateless (HMAC id, mpp-protocol.md §1.4), so every binding the server relies on
must sit in an HMAC-covered field, and on verification the server rebuilds what it *would* ask
for this exact request and compares:

* ``request`` (the charge request, §2/§3.2): amount, currency, recipient and ``methodDetails``
  (chain id, fee sponsorship, supported modes).  The amount is the quote for this body, so a
  credential quoted for a cheaper request cannot pay for a dearer one.
* ``digest``: RFC 9530 ``sha-256=:<b64>:`` of the request body (§1.6), so a credential paid for
  prompt X cannot buy prompt Y.
* ``opaque``: ``{"route": "POST /v1/chat/completions", "nonce": …}``.  The route binds the
  credential to one endpoint; the random nonce makes every challenge unique, so two identical
  requests never share a (single-use) challenge id.
* ``expires``: issue time + TTL; required in the echo, must be in the future.

Check order (server-verification/cases.json; §1.4 "server verification order", implemented by
``protocol.verify.verify_echo``): HMAC over the echoed fields → realm / method / intent →
request → ``expires`` present → not expired → digest; then our own: route scope, digest
present.  A failed check raises the ``VerificationError`` subclass whose problem
type the spec assigns (``invalid-challenge`` for any mismatch, ``payment-expired``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import lru_cache
from typing import Any

from ..errors import EncodingError, InvalidChallenge
from ..protocol._rfc3339 import format_second
from ..protocol.challenge import Challenge, new_challenge
from ..protocol.digest import content_digest
from ..protocol.encoding import (
    b64url_encode,
    canonical_json,
    decode_b64_json,
    encode_b64_json,
    is_b64url,
)
from ..protocol.verify import verify_echo

METHOD = "tempo"
INTENT = "charge"
MODE_NAMES = {"transaction": "pull", "hash": "push"}  # our config names -> spec supportedModes


def body_digest(body: bytes) -> str:
    """RFC 9530 ``sha-256=:<base64>:`` of the request body (the challenge's ``digest``)."""
    return content_digest(body)


@dataclass(frozen=True, slots=True)
class RouteTerms:
    """The payment terms of one request on one route (everything but time and nonce).

    Attributes:
        route: ``"POST /v1/chat/completions"`` (method and path; no query is served).
        realm: the server's realm.
        requests: one charge request JSON per accepted currency, in the server's order.
        digest: the body digest the challenge binds.
        description: display text for the challenge (not HMAC-covered, never trusted).
        encoded: (computed) ``encode_b64_json`` of each request, as challenges carry it.

    The request objects are shared, never changed.
    """

    route: str
    realm: str
    requests: tuple[Mapping[str, Any], ...]
    digest: str
    description: str
    encoded: tuple[str, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "encoded", tuple(encode_b64_json(req) for req in self.requests))

    def request_for(self, currency: object) -> Mapping[str, Any] | None:
        """The request this route asks for in ``currency`` (case-insensitive), if accepted."""
        index = self.index_for(currency)
        return None if index is None else self.requests[index]

    def index_for(self, currency: object) -> int | None:
        """The position in ``requests`` of the one in ``currency`` (case-insensitive), if accepted."""
        if not isinstance(currency, str):
            return None
        wanted = currency.lower()
        for i, req in enumerate(self.requests):
            if str(req["currency"]).lower() == wanted:
                return i
        return None


def charge_request(*, amount: int, currency: str, recipient: str, chain_id: int, fee_payer: bool,
                   modes: Sequence[str]) -> dict[str, Any]:
    """The Tempo charge ``request`` object (draft-tempo-charge §3.2), amounts as strings.

    ``supportedModes`` is listed only when the server does not accept both modes, and
    ``push`` is never offered together with fee sponsorship (spec: forbidden).
    """
    details: dict[str, Any] = {"chainId": chain_id}
    names = [MODE_NAMES[m] for m in modes]
    if fee_payer:
        details["feePayer"] = True
        names = [n for n in names if n != "push"]
    if sorted(names) != ["pull", "push"]:
        details["supportedModes"] = names
    return {"amount": str(amount), "currency": currency, "recipient": recipient, "methodDetails": details}


def scope(route: str, nonce: str) -> str:
    """The ``opaque`` value: base64url(JCS({"nonce", "route"})).

    A nonce of base64url characters (``secrets.token_urlsafe``'s) needs no JSON escaping, so
    its JCS text is the route's kept prefix and suffix around it (the same bytes).
    """
    if type(nonce) is str and is_b64url(nonce) and type(route) is str:
        head, tail = _scope_text(route)
        return b64url_encode(f"{head}{nonce}{tail}".encode())
    return encode_b64_json({"nonce": nonce, "route": route})


@lru_cache(maxsize=64)
def _scope_text(route: str) -> tuple[str, str]:
    """JCS text of ``{"nonce": <n>, "route": route}`` around a nonce that needs no escaping."""
    return '{"nonce":"', '","route":' + canonical_json(route).decode() + "}"


def make_offers(terms: RouteTerms, *, secret: bytes, now: datetime, ttl: int, nonce: str) -> list[Challenge]:
    """Fresh challenges for ``terms``: one per currency, all expiring at ``now + ttl``.

    Args:
        terms: what this request costs on this route.
        secret: the HMAC key (>= 32 bytes, checked by the config).
        now: the current time (aware).
        ttl: seconds until the challenges expire.
        nonce: a fresh random string (makes every challenge id unique).
    """
    expires = format_second((now + timedelta(seconds=ttl)).replace(microsecond=0))
    opaque = scope(terms.route, nonce)
    return [new_challenge(secret, realm=terms.realm, method=METHOD, intent=INTENT, request=encoded,
                          expires=expires, digest=terms.digest, description=terms.description,
                          opaque=opaque)
            for encoded in terms.encoded]


@dataclass(frozen=True, slots=True)
class Bound:
    """A credential echo that passed every generic check: the request it pays for."""

    challenge_id: str
    request: Mapping[str, Any]
    expires_at: float


def _decode(text: str | None, what: str) -> Any:
    if text is None:
        raise InvalidChallenge(f"challenge echo has no {what}")
    try:
        return decode_b64_json(text)
    except EncodingError as exc:
        raise InvalidChallenge(f"challenge {what} is not base64url JSON: {exc}") from None


def check_echo(echo: Challenge, terms: RouteTerms, *, secret: bytes, body: bytes, now: datetime) -> Bound:
    """Run the generic checks of a credential's challenge echo against this request.

    ``protocol.verify.verify_echo`` does the spec's steps (HMAC, realm/method/intent, request,
    expires present, not expired, digest); this adds what our challenges always bind: a digest
    must be present, and ``opaque`` must name this route.

    Args:
        echo: the challenge the credential echoes.
        terms: what this route asks for, for this exact body.
        secret: the HMAC key.
        body: the request body received (its digest must be the echoed one).
        now: the current time (aware).

    Returns:
        ``Bound``: the challenge id, the matched request and the expiry (Unix seconds).

    Raises:
        InvalidChallenge: forged id, other realm/method/intent, request not the one this body
            costs on this route, missing ``expires``, other route, other or missing body digest.
        PaymentExpired: ``expires`` is in the past.
    """
    index = terms.index_for(echo.request_view.get("currency")) or 0
    expected = terms.requests[index]
    verify_echo(echo, secret=secret, realm=terms.realm, method=METHOD, intent=INTENT, request=expected,
                expires_required=True, now=now, body=body, request_b64=terms.encoded[index])
    opaque = _decode(echo.opaque, "opaque")
    if not isinstance(opaque, dict) or opaque.get("route") != terms.route:
        where = opaque.get("route") if isinstance(opaque, dict) else None
        raise InvalidChallenge(f"challenge was issued for {where!r}, not {terms.route!r}",
                               challengeId=echo.id)
    if echo.digest is None:
        raise InvalidChallenge("challenge echo lacks the body digest", challengeId=echo.id)
    assert echo.expires_at is not None  # verify_echo enforced expires_required
    return Bound(echo.id, dict(expected), echo.expires_at.timestamp())
