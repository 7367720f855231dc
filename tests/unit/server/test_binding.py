"""Challenge binding: what a route asks for, and refusing an echo that does not match it."""

from __future__ import annotations

import dataclasses
from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mpp_claude.errors import InvalidChallenge, PaymentExpired
from mpp_claude.protocol.challenge import Challenge, new_challenge
from mpp_claude.protocol.encoding import decode_b64_json
from mpp_claude.server.binding import RouteTerms, body_digest, charge_request, check_echo, make_offers, scope

SECRET = b"unit-test-secret-0123456789abcdefghij"
NOW = datetime(2026, 11, 25, 12, 0, 0, tzinfo=timezone.utc)
PATH_USD = "0x20c0000000000000000000000000000000000000"
ALPHA = "0x20c0000000000000000000000000000000000001"
RECIPIENT = "0x" + "ab" * 20
BODY = b'{"model":"claude-haiku-4-5","messages":[{"role":"user","content":"hi"}]}'


def terms(body: bytes = BODY, *, amount: int = 1234, route: str = "POST /v1/chat/completions",
          realm: str = "api.test", currencies: tuple[str, ...] = (PATH_USD,)) -> RouteTerms:
    reqs = tuple(charge_request(amount=amount, currency=c, recipient=RECIPIENT, chain_id=31337,
                                fee_payer=False, modes=("transaction", "hash")) for c in currencies)
    return RouteTerms(route=route, realm=realm, requests=reqs, digest=body_digest(body), description="d")


def offer(t: RouteTerms | None = None, *, now: datetime = NOW, ttl: int = 300,
          nonce: str = "n1") -> Challenge:
    return make_offers(t or terms(), secret=SECRET, now=now, ttl=ttl, nonce=nonce)[0]


def test_charge_request_shape() -> None:
    """Amounts are strings; supportedModes appears only when a mode is missing; push never with a sponsor."""
    both = charge_request(amount=5, currency=PATH_USD, recipient=RECIPIENT, chain_id=1, fee_payer=False,
                          modes=("transaction", "hash"))
    assert both == {"amount": "5", "currency": PATH_USD, "recipient": RECIPIENT,
                    "methodDetails": {"chainId": 1}}
    sponsored = charge_request(amount=5, currency=PATH_USD, recipient=RECIPIENT, chain_id=1, fee_payer=True,
                               modes=("transaction", "hash"))
    assert sponsored["methodDetails"] == {"chainId": 1, "feePayer": True, "supportedModes": ["pull"]}


def test_offers_are_unique_bound_and_expire_after_ttl() -> None:
    """One challenge per currency, same expiry, digest and route scope; a new nonce gives a new id."""
    t = terms(currencies=(PATH_USD, ALPHA))
    offers = make_offers(t, secret=SECRET, now=NOW, ttl=300, nonce="abc")
    assert [o.request_data["currency"] for o in offers] == [PATH_USD, ALPHA]
    assert {o.expires for o in offers} == {"2026-11-25T12:05:00Z"}
    assert {o.digest for o in offers} == {body_digest(BODY)}
    assert decode_b64_json(offers[0].opaque or "") == {"nonce": "abc", "route": t.route}
    assert offer(nonce="x").id != offer(nonce="y").id


def test_echo_of_our_own_offer_passes() -> None:
    """A credential echoing our challenge for this body and route is bound to its request."""
    ch = offer()
    bound = check_echo(ch, terms(), secret=SECRET, body=BODY, now=NOW)
    assert bound.challenge_id == ch.id
    assert bound.request["amount"] == "1234"
    assert bound.expires_at == (NOW + timedelta(seconds=300)).timestamp()


def test_second_currency_offer_passes() -> None:
    """The echo may answer any of the offered currencies."""
    t = terms(currencies=(PATH_USD, ALPHA))
    second = make_offers(t, secret=SECRET, now=NOW, ttl=300, nonce="z")[1]
    assert check_echo(second, t, secret=SECRET, body=BODY, now=NOW).request["currency"] == ALPHA


@pytest.mark.parametrize("case", ["other_body", "other_route", "other_amount", "other_realm", "forged_id",
                                  "tampered_amount", "other_secret", "unoffered_currency"])
def test_mismatched_echo_is_invalid_challenge(case: str) -> None:
    """Replays across bodies, routes, prices, realms and servers, and edited echoes are refused."""
    ch, t, body = offer(), terms(), BODY
    if case == "other_body":
        body = BODY.replace(b"hi", b"ho")
        t = terms(body)
    elif case == "other_route":
        t = terms(route="POST /v1/messages")
    elif case == "other_amount":
        t = terms(amount=99999)
    elif case == "other_realm":
        t = terms(realm="evil.test")
    elif case == "forged_id":
        ch = dataclasses.replace(ch, id="A" * 43)
    elif case == "tampered_amount":
        req = ch.request_data
        req["amount"] = "1"
        ch = Challenge.from_dict({**ch.to_echo(), "request": req})
    elif case == "other_secret":
        ch = make_offers(t, secret=b"another-secret-0123456789abcdefghij", now=NOW, ttl=300, nonce="n")[0]
    elif case == "unoffered_currency":
        ch = make_offers(terms(currencies=(ALPHA,)), secret=SECRET, now=NOW, ttl=300, nonce="n")[0]
    with pytest.raises(InvalidChallenge):
        check_echo(ch, t, secret=SECRET, body=body, now=NOW)


def test_expired_challenge_is_payment_expired() -> None:
    """An echo past its expiry is payment-expired."""
    with pytest.raises(PaymentExpired):
        check_echo(offer(), terms(), secret=SECRET, body=BODY, now=NOW + timedelta(seconds=301))


def test_echo_without_expires_digest_or_scope_is_refused() -> None:
    """Our challenges always carry expires, digest and opaque route scope; an echo lacking one fails."""
    t = terms()
    req = dict(t.requests[0])
    later = NOW + timedelta(minutes=5)
    no_expiry = new_challenge(SECRET, realm=t.realm, method="tempo", intent="charge", request=req,
                              digest=t.digest, opaque=scope(t.route, "n"))
    no_digest = new_challenge(SECRET, realm=t.realm, method="tempo", intent="charge", request=req,
                              expires=later, opaque=scope(t.route, "n"))
    no_scope = new_challenge(SECRET, realm=t.realm, method="tempo", intent="charge", request=req,
                             expires=later, digest=t.digest)
    for ch in (no_expiry, no_digest, no_scope):
        with pytest.raises(InvalidChallenge):
            check_echo(ch, t, secret=SECRET, body=BODY, now=NOW)


@settings(max_examples=300)
@given(st.text(max_size=40), st.one_of(st.text(max_size=20),
                                        st.text("ABCXYZabcxyz0189-_", min_size=0, max_size=20)))
def test_scope_is_the_jcs_of_nonce_and_route(route: str, nonce: str) -> None:
    """The kept-prefix way writes exactly base64url(JCS({"nonce", "route"})), escapes and all."""
    from mpp_claude.errors import EncodingError
    from mpp_claude.protocol.encoding import encode_b64_json

    try:
        expected = encode_b64_json({"nonce": nonce, "route": route})
    except EncodingError:
        with pytest.raises(EncodingError):
            scope(route, nonce)
        return
    assert scope(route, nonce) == expected


def test_scope_refuses_a_lone_surrogate_like_jcs() -> None:
    """A route JCS cannot write is refused the same way on both paths."""
    from mpp_claude.errors import EncodingError

    for route, nonce in (("POST /x\ud800", "abc"), ("POST /x", "a\ud800")):
        with pytest.raises(EncodingError):
            scope(route, nonce)
