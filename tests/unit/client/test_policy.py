"""Policy: the pure rules deciding which challenge may be paid (agent-payments-ux.md §4.2)."""

from __future__ import annotations

from decimal import Decimal

import pytest

from mpp_claude.client.policy import (
    Offer,
    Policy,
    Target,
    UnsafePolicyWarning,
    is_loopback,
    normalize_origin,
    usd,
)
from mpp_claude.errors import BudgetExceeded, ConfigError, OriginNotAllowed, PolicyDenied
from mpp_claude.tempo import tip20

NOW = 1_800_000_000
PAYEE = "0x" + "ab" * 20
OTHER = "0x" + "cd" * 20
T = Target("https", "api.example.com", None, "/v1/chat/completions")
P = Policy(["https://api.example.com"], chain_id=4217)


def offer(**kw: object) -> Offer:
    base: dict[str, object] = {"challenge_id": "c1", "realm": "api.example.com", "method": "tempo",
                               "intent": "charge", "amount": 10_000, "currency": tip20.PATH_USD,
                               "recipient": PAYEE, "chain_id": 4217, "expires": NOW + 300}
    base.update(kw)
    return Offer(**base)  # type: ignore[arg-type]


def rule_of(pol: Policy, off: Offer, target: Target = T, pinned: str | None = None) -> str:
    with pytest.raises(PolicyDenied) as info:
        pol.choose([off], target, now=NOW, pinned_payee=pinned)
    return info.value.rule


class TestDefaults:
    def test_defaults_match_the_ux_table(self) -> None:
        """$1 per payment, $10 per client, $25 per 24 h, 30 per minute, charge on tempo only."""
        p = Policy()
        assert (p.max_payment, p.max_per_client, p.max_per_day, p.max_per_minute) == (
            1_000_000, 10_000_000, 25_000_000, 30)
        assert p.intents == {"charge"} and p.methods == {"tempo"} and p.pin_payee

    def test_dollar_strings_become_base_units(self) -> None:
        assert Policy(max_payment="0.25").max_payment == 250_000
        assert usd(Decimal("1.5")) == 1_500_000 and usd(7) == 7

    @pytest.mark.parametrize("bad", ["-1", "abc", "0.0000001", "NaN", True])
    def test_bad_amounts_are_config_errors(self, bad: object) -> None:
        with pytest.raises(ConfigError):
            usd(bad)  # type: ignore[arg-type]

    def test_removing_a_limit_needs_the_named_unsafe_switch(self) -> None:
        """None alone is refused; with the switch it works and warns."""
        with pytest.raises(ConfigError, match="no_payment_cap"):
            Policy(max_payment=None)
        with pytest.warns(UnsafePolicyWarning, match="no_payment_cap"):
            assert Policy(max_payment=None, unsafe={"no_payment_cap"}).max_payment is None

    def test_unknown_unsafe_switch(self) -> None:
        with pytest.raises(ConfigError, match="unknown unsafe"):
            Policy(unsafe={"yolo"})


class TestOrigins:
    def test_normalize(self) -> None:
        assert normalize_origin("HTTPS://API.Example.com:443") == "https://api.example.com"
        assert normalize_origin("http://127.0.0.1:8000") == "http://127.0.0.1:8000"
        with pytest.raises(ConfigError):
            normalize_origin("api.example.com")
        with pytest.raises(ConfigError):
            normalize_origin("https://u:p@api.example.com")

    @pytest.mark.parametrize("host", ["localhost", "127.0.0.1", "::1", "[::1]", "a.localhost", "127.1.2.3"])
    def test_loopback(self, host: str) -> None:
        assert is_loopback(host)

    @pytest.mark.parametrize("host", ["example.com", "10.0.0.1", "localhost.evil.com"])
    def test_not_loopback(self, host: str) -> None:
        assert not is_loopback(host)

    def test_origin_must_be_allowed(self) -> None:
        with pytest.raises(OriginNotAllowed) as info:
            Policy(chain_id=4217).choose([offer()], T, now=NOW, pinned_payee=None)
        assert info.value.origin == "https://api.example.com"

    def test_plain_http_only_to_loopback(self) -> None:
        http = Target("http", "api.example.com", None, "/x")
        p = Policy(["http://api.example.com"], chain_id=4217)
        assert rule_of(p, offer(), http) == "https"
        local = Target("http", "127.0.0.1", 8000, "/x")
        Policy(["http://127.0.0.1:8000"], chain_id=4217).choose([offer()], local, now=NOW, pinned_payee=None)

    def test_cross_origin_redirect(self) -> None:
        """A 402 reached through a redirect from another origin is never paid."""
        redirected = Target("https", "api.example.com", None, "/x", first_origin="https://other.example")
        assert rule_of(P, offer(), redirected) == "cross_origin_redirect"
        same = Target("https", "api.example.com", None, "/x", first_origin="https://api.example.com")
        P.choose([offer()], same, now=NOW, pinned_payee=None)


class TestOffers:
    def test_chain_is_pinned(self) -> None:
        assert rule_of(P, offer(chain_id=42431)) == "chain"
        assert rule_of(Policy(["https://api.example.com"]), offer()) == "chain"  # unpinned: nothing

    def test_currency_defaults_to_known_usd_tokens_of_the_chain(self) -> None:
        assert rule_of(P, offer(currency="0x" + "99" * 20)) == "currency"
        assert rule_of(P, offer(currency=tip20.ALPHA_USD)) == "currency"  # not a 4217 token

    def test_payee_pinned_per_origin(self) -> None:
        assert rule_of(P, offer(recipient=OTHER), pinned=PAYEE) == "payee_changed"
        P.choose([offer()], T, now=NOW, pinned_payee=PAYEE.upper().replace("0X", "0x"))
        extra = Policy(["https://api.example.com"], chain_id=4217,
                       payees={"https://api.example.com": [OTHER]})
        extra.choose([offer(recipient=OTHER)], T, now=NOW, pinned_payee=PAYEE)

    def test_expiry_sanity(self) -> None:
        assert rule_of(P, offer(expires=NOW - 1)) == "expired"
        assert rule_of(P, offer(expires=NOW + 1)) == "expired"
        assert rule_of(P, offer(expires=NOW + 3600)) == "expiry_too_far"
        assert rule_of(Policy(["https://api.example.com"], chain_id=4217, require_expires=True),
                       offer(expires=None)) == "expires_missing"

    def test_unexpected_split_recipient(self) -> None:
        assert rule_of(P, offer(split_recipients=(OTHER,))) == "splits"

    def test_other_intents_refused(self) -> None:
        assert rule_of(P, offer(intent="session")) == "intent"

    def test_per_payment_cap_names_limit_value_and_amount(self) -> None:
        with pytest.raises(BudgetExceeded) as info:
            P.choose([offer(amount=1_000_001)], T, now=NOW, pinned_payee=None)
        e = info.value
        assert (e.limit, e.limit_value, e.requested) == ("max_payment", 1_000_000, 1_000_001)

    def test_first_listed_refusal_is_reported(self) -> None:
        """With nothing acceptable, the server's first offer explains why."""
        with pytest.raises(PolicyDenied) as info:
            P.choose([offer(chain_id=1), offer(intent="session")], T, now=NOW, pinned_payee=None)
        assert info.value.rule == "chain"

    def test_no_offers(self) -> None:
        assert PolicyDenied is not None
        with pytest.raises(PolicyDenied, match="no payment challenge"):
            P.choose([], T, now=NOW, pinned_payee=None)
