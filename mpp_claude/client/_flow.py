"""The sans-I/O payment flow of one logical request (style.md Part 2, "A sketch").

Owns no sockets, keys, clocks or randomness.  A shell sends the request, feeds the status,
headers and (for a 402) the body to :meth:`PaymentFlow.on_response`, and carries out the
action it gets back:

* :class:`Deliver`: hand the response to the caller (with the receipt header, if paid; it is
  parsed with ``receipts.read_receipt`` when it is needed, off the response's path);
* :class:`Pay`: get a credential for this challenge (the engine: budget, approval, signing),
  then call :meth:`PaymentFlow.on_credential`, which answers :class:`Resend`;
* :class:`Resend`: send the same request again with this credential header.

Invariants (draft-httpauth-payment §"Retries"; agent-payments-ux.md §4.4):

* at most one credential per logical request: a 402 in answer to a credential is a
  :class:`PaymentRejected` carrying the server's problem details, never a new invoice;
* a lost connection after the credential was sent gets exactly one resend of the *same*
  credential (the server's replay protection makes it single-use), then
  :class:`PaymentOutcomeUnknown`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ..errors import MalformedChallenge, PaymentOutcomeUnknown, PaymentRejected, PolicyDenied, ProtocolError
from ..protocol.challenge import Challenge, parse_challenges
from ..protocol.encoding import loads_bounded
from ..protocol.problem import Problem
from ..tempo.request import ChargeRequest
from .policy import Offer, Policy, Target

Headers = Sequence[tuple[str, str]]


@dataclass(frozen=True, slots=True)
class Pay:
    """Get a credential for ``challenge`` (already allowed by the policy)."""

    challenge: Challenge
    offer: Offer
    charge: ChargeRequest


@dataclass(frozen=True, slots=True)
class Resend:
    """Send the request again with ``header: value`` (``Authorization: Payment …`` by default)."""

    header: str
    value: str


@dataclass(frozen=True, slots=True)
class Deliver:
    """Return the response.  ``paid``: a credential went with it; ``receipt_header``: the
    ``Payment-Receipt`` value of a paid 2xx, unparsed (``receipts.read_receipt``)."""

    status: int
    paid: bool
    receipt_header: str | None = None


Action = Pay | Resend | Deliver


_PAYMENT_SCHEME = re.compile(r"(?:^|,)\s*payment(?:\s|$)", re.IGNORECASE)
_UNPRINTABLE = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def printable(text: str, limit: int = 300) -> str:
    """Server-controlled text made safe for messages and terminals: no control characters
    (escape sequences), at most ``limit`` characters (Tempo CLI 0.4.1's rule)."""
    clean = _UNPRINTABLE.sub(" ", text)
    return clean if len(clean) <= limit else clean[:limit] + "…"


def header_values(headers: Headers, name: str) -> list[str]:
    """Every value of header ``name`` (case-insensitive), in order."""
    lname = name.lower()
    return [v for k, v in headers if k.lower() == lname]


_CHARGES: dict[str, ChargeRequest] = {}
_CHARGES_MAX = 256


def _charge_request(text: str, view: Mapping[str, Any]) -> ChargeRequest:
    """``ChargeRequest.from_request(view)``, remembered per ``request`` text (the same price comes
    back on every call of a conversation; a ``ChargeRequest`` is immutable)."""
    found = _CHARGES.get(text)
    if found is None:
        found = ChargeRequest.from_request(view)  # reads only: no copy; raises MalformedChallenge
        if len(_CHARGES) >= _CHARGES_MAX:
            _CHARGES.clear()
        _CHARGES[text] = found
    return found


def to_offer(challenge: Challenge) -> tuple[Offer, ChargeRequest | None]:
    """The policy's view of a challenge; the Tempo charge request when it is one.

    Raises:
        MalformedChallenge: a ``tempo``/``charge`` challenge whose request is invalid.
    """
    expires = challenge.expires_at
    expires_s = None if expires is None else int(expires.timestamp())
    if challenge.method == "tempo" and challenge.intent == "charge":
        charge = _charge_request(challenge.request, challenge.request_view)
        offer = Offer(challenge_id=challenge.id, realm=challenge.realm, method=challenge.method,
                      intent=challenge.intent, amount=charge.amount, currency=charge.currency,
                      recipient=charge.recipient, chain_id=charge.chain_id, expires=expires_s,
                      split_recipients=tuple(s.recipient for s in charge.splits),
                      description=challenge.description)
        return offer, charge
    data = challenge.request_view
    amount = data.get("amount")
    return Offer(challenge_id=challenge.id, realm=challenge.realm, method=challenge.method,
                 intent=challenge.intent,
                 amount=int(amount) if isinstance(amount, str) and amount.isdigit() else 0,
                 currency=str(data.get("currency", "")), recipient=str(data.get("recipient", "")),
                 chain_id=None, expires=expires_s, description=challenge.description), None


def problem_of(body: bytes) -> Problem | None:
    """The RFC 9457 problem in a 402 body, or ``None`` when it is not one."""
    try:
        return Problem.from_dict(loads_bounded(body))
    except (ValueError, TypeError, ProtocolError):
        return None


class PaymentFlow:
    """The payment side of one logical request.

    Args:
        policy: decides which challenge may be paid.
        target: where the request goes (origin, path, origin before redirects).
        credential: the credential this logical request already paid with (an SDK retry of a
            paid request); it is sent straight away and nothing is paid again.
    """

    __slots__ = ("_credential", "_lost", "_offers", "policy", "target")

    def __init__(self, policy: Policy, target: Target, *, credential: Resend | None = None) -> None:
        self.policy = policy
        self.target = target
        self._credential = credential
        self._lost = False
        self._offers: dict[str, tuple[Challenge, Offer, ChargeRequest]] = {}

    @property
    def credential(self) -> Resend | None:
        """The credential to send (``None`` until paid)."""
        return self._credential

    @property
    def paid(self) -> bool:
        return self._credential is not None

    def needs_body(self, status: int) -> bool:
        """Whether the shell must read the body before calling :meth:`on_response` (402 only)."""
        return status == 402

    def on_response(self, status: int, headers: Headers, body: bytes = b"", *, now: int,
                    pinned_payee: str | None = None) -> Deliver | Pay:
        """Decide what to do with a response.

        Args:
            status: HTTP status code.
            headers: all response headers as ``(name, value)`` pairs.
            body: the body, for a 402 only (problem details).
            now: Unix seconds.
            pinned_payee: the payee this wallet first paid at the target origin, if any.
        Returns:
            :class:`Deliver` or :class:`Pay`.
        Raises:
            PaymentRejected: a 402 in answer to our credential (carries the problem details).
            PolicyDenied / OriginNotAllowed / BudgetExceeded: nothing payable (also raised for
                a malformed challenge, rule ``malformed_challenge``).
        """
        if status != 402:
            return self._deliver(status, headers)
        if self._credential is not None:
            problem = problem_of(body)
            text = (problem.detail or problem.title) if problem else None
            detail = f": {printable(text)}" if text else ""
            raise PaymentRejected(f"the server answered 402 to our payment credential{detail}",
                                  problem=problem.to_dict() if problem else {}, status=status)
        values = header_values(headers, "www-authenticate")
        if not any(_PAYMENT_SCHEME.search(v) for v in values):
            return Deliver(status, False)  # a 402 that is not MPP (no Payment challenge): not ours
        try:
            challenges = parse_challenges(values)
        except MalformedChallenge as exc:
            raise PolicyDenied(f"cannot pay: {exc}", rule="malformed_challenge") from exc
        offers: list[Offer] = []
        first_error: MalformedChallenge | None = None
        for challenge in challenges:
            try:
                offer, charge = to_offer(challenge)
            except MalformedChallenge as exc:
                first_error = first_error or exc
                continue
            offers.append(offer)
            if charge is not None:
                self._offers[offer.challenge_id] = (challenge, offer, charge)
        if not offers and first_error is not None:
            raise PolicyDenied(f"cannot pay: {first_error}", rule="malformed_challenge") from first_error
        chosen = self.policy.choose(offers, self.target, now=now, pinned_payee=pinned_payee)
        if chosen.challenge_id not in self._offers:  # a policy allowing a method we cannot pay with
            raise PolicyDenied(f"no payer for {chosen.method}/{chosen.intent} challenges", rule="intent")
        challenge, offer, charge = self._offers[chosen.challenge_id]
        return Pay(challenge, offer, charge)

    def on_credential(self, header: str, value: str) -> Resend:
        """Record the credential for the chosen challenge and say how to resend.

        Raises:
            RuntimeError: a credential was already recorded (a bug in the caller: one payment
                per logical request).
        """
        if self._credential is not None:
            raise RuntimeError("a logical request can carry only one payment credential")
        self._credential = Resend(header, value)
        return self._credential

    def on_lost(self) -> Resend | None:
        """The connection failed.  Before paying: ``None`` (let the error through, nothing was
        paid).  After the credential was sent: the same credential once more, then
        :class:`PaymentOutcomeUnknown`.
        """
        if self._credential is None:
            return None
        if self._lost:
            raise PaymentOutcomeUnknown("the connection failed twice after sending a payment credential; "
                                        "the payment may have settled: not paying again")
        self._lost = True
        return self._credential

    def _deliver(self, status: int, headers: Headers) -> Deliver:
        paid = self._credential is not None
        if not paid or not 200 <= status < 300:
            return Deliver(status, paid)
        values = header_values(headers, "payment-receipt")
        return Deliver(status, paid, values[0] if values else None)
