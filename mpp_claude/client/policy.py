"""The payment policy: which 402 challenges this client may pay, decided before anything is signed.

Pure: no clock, no network, no environment; ``now`` and the pinned payee are arguments.
Defaults follow agent-payments-ux.md §4.2 and are on unless switched off by name through
``unsafe=`` (each switch warns at construction).  The client MUST checks of
draft-httpauth-payment §"Security considerations" (mpp-protocol.md §1.12) map to rules here:
amount reasonable (``max_payment``), recipient expected (``pin_payee`` / ``payees``), currency
expected (``currencies``), validity window (``max_expiry_ahead``), splits and expiry.

Amounts: an ``int`` is base units of the token; a ``str`` or ``Decimal`` is US dollars and is
converted at the 6 decimals every Tempo USD stablecoin uses (``"1.00"`` -> ``1_000_000``).
"""

from __future__ import annotations

import ipaddress
import logging
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from functools import lru_cache
from urllib.parse import urlsplit

from ..errors import BudgetExceeded, ConfigError, OriginNotAllowed, PolicyDenied
from ..tempo import tip20

log = logging.getLogger("mpp_claude.client")

USD_DECIMALS = 6

#: Names accepted by ``Policy(unsafe=...)``; each removes one guard and warns.
UNSAFE_SWITCHES = frozenset({
    "any_origin",              # pay any origin, no allowlist
    "plain_http",              # pay over http:// to non-loopback hosts
    "cross_origin_redirect",   # pay after a redirect to another origin
    "no_payment_cap",          # max_payment = unlimited
    "no_client_cap",           # max_per_client = unlimited
    "no_daily_cap",            # max_per_day = unlimited
    "no_rate_limit",           # max_per_minute = unlimited
    "any_payee",               # no payee pinning per origin
    "any_chain",               # accept any chain id
    "any_currency",            # accept any token
})


class UnsafePolicyWarning(UserWarning):
    """A spending guard was switched off through ``Policy(unsafe=...)``."""


def usd(value: int | str | Decimal) -> int:
    """Base units (6 decimals) for a limit: ``int`` passes through, ``str``/``Decimal`` are dollars.

    Raises:
        ConfigError: negative, fractional below one base unit, or not a number.
    """
    if isinstance(value, bool):
        raise ConfigError(f"amount must be an int (base units) or a dollar string, got {value!r}")
    if isinstance(value, int):
        if value < 0:
            raise ConfigError(f"amount must not be negative, got {value}")
        return value
    try:
        dec = Decimal(value)
    except (InvalidOperation, TypeError, ValueError):
        raise ConfigError(f"amount {value!r} is not a decimal dollar amount") from None
    units = dec.scaleb(USD_DECIMALS)
    if not dec.is_finite() or dec < 0 or units != units.to_integral_value():
        raise ConfigError(f"amount {value!r} must be >= 0 with at most {USD_DECIMALS} decimals")
    return int(units)


def normalize_origin(url: str) -> str:
    """``scheme://host[:port]`` in lower case with the default port left out.

    Raises:
        ConfigError: not an absolute http(s) URL, or it carries a path, query or credentials.
    """
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"origin {url!r} must be an absolute http:// or https:// URL")
    if parts.username or parts.password:
        raise ConfigError(f"origin {url!r} must not carry credentials")
    if parts.query or parts.fragment:
        raise ConfigError(f"origin {url!r} must not carry a query or fragment")
    return origin_of(parts.scheme, parts.hostname, parts.port)


@lru_cache(maxsize=1024)  # pure, asked several times per request for the same few origins
def origin_of(scheme: str, host: str, port: int | None) -> str:
    """The canonical origin string for already-split URL parts."""
    scheme = scheme.lower()
    host = host.lower().rstrip(".")
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    default = {"http": 80, "https": 443}.get(scheme)
    return f"{scheme}://{host}" if port in (None, default) else f"{scheme}://{host}:{port}"


@lru_cache(maxsize=64)  # a constant table: one set per chain, not one per payment
def _known_currencies(chain_id: int) -> frozenset[str]:
    return frozenset(t.address.lower() for t in tip20.KNOWN_TOKENS.get(chain_id, ()))


@lru_cache(maxsize=1024)  # pure; parsing an IP literal costs ~15 us
def is_loopback(host: str) -> bool:
    """True for ``localhost`` and loopback IP literals (the only hosts plain HTTP may pay)."""
    host = host.lower().strip("[]").rstrip(".")
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True, slots=True)
class Offer:
    """One payable challenge, reduced to the plain values the policy decides on.

    ``amount`` is in base units of ``currency``; ``expires`` is Unix seconds or ``None``;
    ``split_recipients`` lists every extra payee of a Tempo split.
    """

    challenge_id: str
    realm: str
    method: str
    intent: str
    amount: int
    currency: str
    recipient: str
    chain_id: int | None
    expires: int | None = None
    split_recipients: tuple[str, ...] = ()
    description: str | None = None


@dataclass(frozen=True, slots=True)
class Target:
    """Where the request that met the 402 went, and where the caller first sent it."""

    scheme: str
    host: str
    port: int | None
    path: str
    first_origin: str | None = None   # origin before redirects (None: not redirected / unknown)

    @property
    def origin(self) -> str:
        return origin_of(self.scheme, self.host, self.port)


def _limit(name: str, value: int | str | Decimal | None, switch: str, unsafe: frozenset[str]) -> int | None:
    if value is None:
        if switch not in unsafe:
            raise ConfigError(f"{name}=None removes a spending guard; pass unsafe={{{switch!r}}} to "
                              "do that on purpose")
        return None
    if switch in unsafe:
        return None
    return usd(value)


@dataclass(frozen=True)
class Policy:
    """What this client may pay.  Immutable; build a new one to change it.

    Args:
        allowed_origins: exact ``scheme://host[:port]`` origins that may charge us.  Required
            (an empty set pays nobody) unless ``unsafe`` contains ``"any_origin"``.
        max_payment: cap per single payment (default $1.00).
        max_per_client: cap over one client object's lifetime (default $10).
        max_per_day: cap over a rolling 24 h per wallet, persisted in the ledger (default $25).
        max_per_minute: payments per rolling minute per wallet (default 30).
        chain_id: the only chain to pay on; ``None`` pins the chain of the wallet's RPC node.
        currencies: token addresses we pay in; ``None`` means the known USD stablecoins of
            the pinned chain (all 6 decimals, so the dollar caps are exact).
        payees: per origin, payees accepted in addition to the first one seen.
        pin_payee: remember the first payee per origin and refuse a different one.
        intents / methods: accepted challenge kinds (``charge`` on ``tempo`` only, for now).
        max_expiry_ahead: refuse challenges expiring further out than this (seconds, 900).
        min_expiry_left: refuse challenges expiring sooner than this (seconds, 2).
        require_expires: refuse challenges without ``expires``.
        unsafe: names from :data:`UNSAFE_SWITCHES`; each switches one guard off and warns.
    Raises:
        ConfigError: an unknown unsafe switch, a malformed origin or amount.
    """

    allowed_origins: frozenset[str] = frozenset()
    max_payment: int | None = 1_000_000
    max_per_client: int | None = 10_000_000
    max_per_day: int | None = 25_000_000
    max_per_minute: int | None = 30
    chain_id: int | None = None
    currencies: frozenset[str] | None = None
    payees: Mapping[str, frozenset[str]] = field(default_factory=dict)
    pin_payee: bool = True
    intents: frozenset[str] = frozenset({"charge"})
    methods: frozenset[str] = frozenset({"tempo"})
    max_expiry_ahead: int = 900
    min_expiry_left: int = 2
    require_expires: bool = False
    unsafe: frozenset[str] = frozenset()

    def __init__(self, allowed_origins: Iterable[str] = (), *,
                 max_payment: int | str | Decimal | None = 1_000_000,
                 max_per_client: int | str | Decimal | None = 10_000_000,
                 max_per_day: int | str | Decimal | None = 25_000_000,
                 max_per_minute: int | None = 30,
                 chain_id: int | None = None,
                 currencies: Iterable[str] | None = None,
                 payees: Mapping[str, Iterable[str]] | None = None,
                 pin_payee: bool = True,
                 intents: Iterable[str] = ("charge",),
                 methods: Iterable[str] = ("tempo",),
                 max_expiry_ahead: int = 900,
                 min_expiry_left: int = 2,
                 require_expires: bool = False,
                 unsafe: Iterable[str] = ()) -> None:
        unsafe_set = frozenset(unsafe)
        unknown = unsafe_set - UNSAFE_SWITCHES
        if unknown:
            raise ConfigError(f"unknown unsafe switch(es) {sorted(unknown)}; "
                              f"known: {sorted(UNSAFE_SWITCHES)}")
        if max_per_minute is not None and (isinstance(max_per_minute, bool) or max_per_minute < 0):
            raise ConfigError(f"max_per_minute must be a non-negative int, got {max_per_minute!r}")
        if max_per_minute is None and "no_rate_limit" not in unsafe_set:
            raise ConfigError("max_per_minute=None removes a guard; pass unsafe={'no_rate_limit'}")
        sets = object.__setattr__
        sets(self, "allowed_origins", frozenset(normalize_origin(o) for o in allowed_origins))
        sets(self, "max_payment", _limit("max_payment", max_payment, "no_payment_cap", unsafe_set))
        sets(self, "max_per_client", _limit("max_per_client", max_per_client, "no_client_cap", unsafe_set))
        sets(self, "max_per_day", _limit("max_per_day", max_per_day, "no_daily_cap", unsafe_set))
        sets(self, "max_per_minute", None if "no_rate_limit" in unsafe_set else max_per_minute)
        sets(self, "chain_id", chain_id)
        sets(self, "currencies", None if currencies is None else frozenset(c.lower() for c in currencies))
        sets(self, "payees", {normalize_origin(o): frozenset(p.lower() for p in ps)
                              for o, ps in (payees or {}).items()})
        sets(self, "pin_payee", pin_payee)
        sets(self, "intents", frozenset(intents))
        sets(self, "methods", frozenset(methods))
        sets(self, "max_expiry_ahead", max_expiry_ahead)
        sets(self, "min_expiry_left", min_expiry_left)
        sets(self, "require_expires", require_expires)
        sets(self, "unsafe", unsafe_set)
        for switch in sorted(unsafe_set):
            msg = f"mpp_claude payment guard switched off: unsafe={switch!r}"
            log.warning(msg)
            warnings.warn(msg, UnsafePolicyWarning, stacklevel=2)

    def with_origins(self, origins: Iterable[str]) -> Policy:
        """A copy that also allows ``origins`` (used by the convenience constructors)."""
        return self._replace(allowed_origins=self.allowed_origins | {normalize_origin(o) for o in origins})

    def with_chain(self, chain_id: int) -> Policy:
        """A copy pinned to ``chain_id`` (the client pins its RPC node's chain lazily)."""
        return self._replace(chain_id=chain_id)

    def _replace(self, **changes: object) -> Policy:
        new = object.__new__(Policy)
        for name in self.__dataclass_fields__:
            object.__setattr__(new, name, changes.get(name, getattr(self, name)))
        return new

    # -- decisions -------------------------------------------------------------------------------

    def accepted_currencies(self, chain_id: int) -> frozenset[str] | None:
        """Tokens payable on ``chain_id`` (``None`` = any, only with ``unsafe={'any_currency'}``)."""
        if "any_currency" in self.unsafe:
            return None
        if self.currencies is not None:
            return self.currencies
        return _known_currencies(chain_id)

    def check_target(self, target: Target) -> None:
        """Refuse to pay where the request went, whatever the price.

        Raises:
            PolicyDenied: plain HTTP to a non-loopback host (rule ``https``) or a payment after
                a cross-origin redirect (rule ``cross_origin_redirect``).
            OriginNotAllowed: the origin is not in ``allowed_origins``.
        """
        origin = target.origin
        if target.first_origin is not None and target.first_origin != origin \
                and "cross_origin_redirect" not in self.unsafe:
            raise PolicyDenied(f"refusing to send a payment credential across a redirect from "
                               f"{target.first_origin} to {origin}", rule="cross_origin_redirect",
                               origin=origin, first_origin=target.first_origin)
        if target.scheme.lower() != "https" and not is_loopback(target.host) \
                and "plain_http" not in self.unsafe:
            raise PolicyDenied(f"refusing to pay over plain HTTP to {origin} (HTTPS is required "
                               "except for loopback hosts)", rule="https", origin=origin)
        if origin not in self.allowed_origins and "any_origin" not in self.unsafe:
            allowed = ", ".join(sorted(self.allowed_origins)) or "none configured"
            raise OriginNotAllowed(f"{origin} asked for a payment but is not an allowed origin "
                                   f"(allowed: {allowed})", origin=origin)

    def check_offer(self, offer: Offer, target: Target, *, now: int, pinned_payee: str | None) -> None:
        """Refuse an offer this policy does not allow; return ``None`` when it may be paid.

        Args:
            offer: the challenge's plain values.
            target: where the request went (already passed :meth:`check_target`).
            now: current Unix time in seconds.
            pinned_payee: the payee first paid at this origin, if any.
        Raises:
            PolicyDenied: rules ``intent``, ``chain``, ``currency``, ``payee_changed``,
                ``splits``, ``expired``, ``expiry_too_far``, ``expires_missing``.
            BudgetExceeded: ``amount`` is above ``max_payment``.
        """
        origin = target.origin
        if offer.method not in self.methods or offer.intent not in self.intents:
            raise PolicyDenied(f"{offer.method}/{offer.intent} is not an accepted payment kind "
                               f"(accepted: methods {sorted(self.methods)}, intents {sorted(self.intents)})",
                               rule="intent")
        if "any_chain" not in self.unsafe and (self.chain_id is None or offer.chain_id != self.chain_id):
            raise PolicyDenied(f"challenge asks for chain {offer.chain_id}, this client pays only on "
                               f"chain {self.chain_id}", rule="chain", chain_id=offer.chain_id)
        accepted = self.accepted_currencies(offer.chain_id or 0)
        if accepted is not None and offer.currency.lower() not in accepted:
            raise PolicyDenied(f"challenge asks for token {offer.currency}, not an accepted currency "
                               f"on chain {offer.chain_id}", rule="currency", currency=offer.currency)
        if offer.expires is None:
            if self.require_expires:
                raise PolicyDenied("challenge has no expiry and require_expires is set",
                                   rule="expires_missing")
        elif offer.expires < now + self.min_expiry_left:
            raise PolicyDenied(f"challenge {offer.challenge_id} expired or expires within "
                               f"{self.min_expiry_left}s (expires {offer.expires}, now {now})",
                               rule="expired")
        elif offer.expires > now + self.max_expiry_ahead:
            raise PolicyDenied(f"challenge expires {offer.expires - now}s from now, more than the "
                               f"{self.max_expiry_ahead}s accepted", rule="expiry_too_far")
        extra = self.payees.get(origin, frozenset())
        payee = offer.recipient.lower()
        if self.pin_payee and "any_payee" not in self.unsafe and pinned_payee is not None \
                and payee != pinned_payee.lower() and payee not in extra:
            raise PolicyDenied(f"{origin} changed its payee from {pinned_payee} to {offer.recipient}; "
                               "refusing (add it to Policy(payees=...) if expected)", rule="payee_changed",
                               origin=origin, payee=offer.recipient, pinned=pinned_payee)
        for split in offer.split_recipients:
            if split.lower() not in extra and split.lower() != payee and "any_payee" not in self.unsafe:
                raise PolicyDenied(f"challenge splits the payment to {split}, not an expected payee of "
                                   f"{origin}", rule="splits", payee=split)
        if self.max_payment is not None and offer.amount > self.max_payment:
            raise BudgetExceeded(f"payment of {offer.amount} base units is above max_payment "
                                 f"{self.max_payment}", limit="max_payment", limit_value=self.max_payment,
                                 requested=offer.amount)

    def choose(self, offers: Sequence[Offer], target: Target, *, now: int, pinned_payee: str | None
               ) -> Offer:
        """The cheapest acceptable offer (ties: server order).

        Raises:
            PolicyDenied / OriginNotAllowed / BudgetExceeded: nothing acceptable; the error is the
                refusal of the first offer the server listed (the most informative one).
        """
        self.check_target(target)
        best: Offer | None = None
        first_error: PolicyDenied | BudgetExceeded | None = None
        for offer in offers:
            try:
                self.check_offer(offer, target, now=now, pinned_payee=pinned_payee)
            except (PolicyDenied, BudgetExceeded) as exc:
                first_error = first_error or exc
                continue
            if best is None or offer.amount < best.amount:
                best = offer
        if best is None:
            if first_error is not None:
                raise first_error
            raise PolicyDenied("the 402 response carried no payment challenge", rule="no_offer")
        return best
