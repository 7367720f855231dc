"""The payment gate of a paid route: issue challenges, verify and settle credentials.

Order of ``PaymentGate.authorize`` (mpp-protocol.md §1.4 and §3.6), each step raising the
``VerificationError`` whose problem type the spec assigns:

1. exactly one ``Authorization: Payment`` credential (other schemes, such as the openai SDK's
   ``Bearer`` key, are ignored; two Payment credentials are a 400);
2. parse it (``malformed-credential``);
3. generic checks of the echo against what *this* body costs on *this* route (``binding``:
   HMAC, realm/method/intent, request, expires present, route, digest, not expired);
4. the payload mode is accepted, and the pure method checks pass without touching the chain
   (``Settler.prepare``: decode, recover the payer, calls, memo, limits, sponsor policy);
5. ``Idempotency-Key``: a completed response stored under key + payer is replayed with no
   charge and no upstream call; the same key with another body is a 422; in flight a 409;
6. the challenge id and the transaction hash are claimed atomically in the shared store,
   **before** anything is broadcast, so a credential is accepted once across every worker
   and replica (a lost race is ``invalid-challenge``);
7. ``Settler.settle``: co-sign when sponsoring, broadcast, wait for the receipt and check its
   logs (or, for a ``hash`` credential, fetch and check the receipt).

Claims are never released: if settlement fails after a claim, the credential stays used
(fail closed); the client gets a fresh challenge with the 402.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Protocol

from ..errors import (
    BadRequest,
    ChainError,
    CredentialReplayed,
    MalformedCredential,
    MalformedCredentialProblem,
    PaymentRequired,
    VerificationFailed,
)
from ..protocol._rfc3339 import format_rfc3339
from ..protocol.challenge import Challenge
from ..protocol.credential import Credential, parse_credential
from ..protocol.receipt import Receipt, format_receipt
from .binding import MODE_NAMES, RouteTerms, body_digest, charge_request, check_echo, make_offers
from .config import ServerConfig
from .pricing import Quote
from .stores.base import IdemState, Store, StoredResponse, request_fingerprint

log = logging.getLogger("mpp_claude.server.payments")

CLAIM_MARGIN = 60  # seconds a claim outlives the challenge it protects
TX_CLAIM_TTL = 7 * 24 * 3600  # a transaction hash stays used for a week


@dataclass(frozen=True, slots=True)
class Prepared:
    """A credential that passed every check that needs no chain: what will be settled."""

    mode: str  # "transaction" | "hash"
    tx_hash: str
    payer: str  # lower-case 0x address (signature-recovered for transactions)
    state: Any = None  # settler-private data (the decoded transaction)


@dataclass(frozen=True, slots=True)
class Settled:
    """A payment that moved money on chain."""

    tx_hash: str
    payer: str
    block_number: int | None = None


class Settler(Protocol):
    """The payment method (Tempo charge): pure checks, then the chain."""

    def prepare(self, credential: Credential, *, challenge_id: str, realm: str, request: dict[str, Any],
                expires: int, now: int) -> Prepared:
        """Decode and check the credential without I/O.  Raises ``VerificationError``."""
        ...

    async def settle(self, prepared: Prepared, *, challenge_id: str, realm: str, request: dict[str, Any],
                     expires: int) -> Settled:
        """Move the money (or confirm it moved).  Raises ``VerificationError`` or ``ChainError``."""
        ...


@dataclass(frozen=True, slots=True)
class Paid:
    """The request is paid: serve it, attach ``receipt``, then call ``PaymentGate.finish``."""

    challenge_id: str
    amount: int
    currency: str
    payer: str
    reference: str
    receipt: Receipt
    idempotency_key: str | None = None

    @property
    def receipt_header(self) -> str:
        """The ``Payment-Receipt`` header value."""
        return format_receipt(self.receipt)


@dataclass(frozen=True, slots=True)
class Replayed:
    """An ``Idempotency-Key`` replay: send ``response`` as it was stored (nothing charged)."""

    response: StoredResponse
    payer: str


class PaymentGate:
    """Issues challenges for a route and turns credentials into ``Paid`` or ``Replayed``.

    Args:
        config: the server configuration (realm, secret, recipient, chain, currencies, modes).
        store: the shared store (claims, idempotency cache, records).
        settler: the payment method.
        clock: Unix time in seconds (``time.time``).
        nonce: a fresh random string per challenge set (``secrets.token_urlsafe``).
    """

    def __init__(self, config: ServerConfig, store: Store, settler: Settler, *,
                 clock: Callable[[], float], nonce: Callable[[], str]) -> None:
        self._config = config
        self._store = store
        self._settler = settler
        self._clock = clock
        self._nonce = nonce

    def _now(self) -> datetime:
        return datetime.fromtimestamp(self._clock(), tz=timezone.utc)

    def terms(self, route: str, body: bytes, quote: Quote) -> RouteTerms:
        """What ``body`` costs on ``route``: one charge request per accepted currency."""
        cfg = self._config
        requests = tuple(charge_request(amount=quote.amount, currency=cur, recipient=cfg.recipient,
                                        chain_id=cfg.chain_id, fee_payer=cfg.fee_payer, modes=cfg.modes)
                         for cur in cfg.currencies)
        return RouteTerms(route=route, realm=cfg.realm, requests=requests, digest=body_digest(body),
                          description=quote.description)

    def challenges(self, terms: RouteTerms) -> list[Challenge]:
        """Fresh challenges (one per currency) expiring ``challenge_ttl`` seconds from now."""
        return make_offers(terms, secret=self._config.secret, now=self._now(),
                           ttl=self._config.challenge_ttl, nonce=self._nonce())

    async def authorize(self, terms: RouteTerms, body: bytes, authorizations: Sequence[str],
                        idempotency_key: str | None = None) -> Paid | Replayed:
        """Verify and settle the request's credential (see the module docstring for the order).

        Args:
            terms: ``terms(route, body, quote)`` for this request.
            body: the request body received.
            authorizations: every ``Authorization`` header value of the request.
            idempotency_key: the ``Idempotency-Key`` header value, if any.

        Returns:
            ``Paid`` (money moved; serve and then ``finish``) or ``Replayed``.

        Raises:
            PaymentRequired: no Payment credential.
            BadRequest: two Payment credentials (400), idempotency conflict (422) or in flight (409).
            VerificationError: the credential is refused (subclass names the problem type).
        """
        payment = [v for v in authorizations if v.strip().lower().startswith("payment")]
        if not payment:
            raise PaymentRequired("this request costs money: pay one of the offered challenges")
        if len(payment) > 1:
            raise BadRequest("send exactly one Authorization: Payment credential", status=400,
                             code="multiple_credentials")
        try:
            credential = parse_credential(payment[0])
        except MalformedCredential as exc:
            raise MalformedCredentialProblem(str(exc)) from None
        now = self._now()
        bound = check_echo(credential.challenge, terms, secret=self._config.secret, body=body, now=now)
        request = dict(bound.request)
        mode = credential.payload.get("type")
        if mode not in self._config.modes:
            offered = ", ".join(self._config.modes)
            raise VerificationFailed(f"payload type {mode!r} is not accepted here (accepted: {offered})")
        if self._config.fee_payer and mode == "hash":
            raise VerificationFailed("a sponsored charge needs a 'transaction' payload, not 'hash'")
        expires = int(bound.expires_at)
        ctx = dict(challenge_id=bound.challenge_id, realm=terms.realm, request=request, expires=expires)
        prepared = self._settler.prepare(credential, now=int(now.timestamp()), **ctx)

        scoped_key = None
        if idempotency_key is not None:
            scoped_key = f"{prepared.payer}:{idempotency_key}"
            found = await self._store.idem_begin(scoped_key, request_fingerprint(terms.route, body),
                                                 ttl_s=float(self._config.idempotency_ttl))
            if found.state is IdemState.COMPLETED and found.response is not None:
                return Replayed(found.response, prepared.payer)
            if found.state is IdemState.CONFLICT:
                raise BadRequest("Idempotency-Key was already used with a different request body",
                                 status=422, code="idempotency_key_reused")
            if found.state is IdemState.IN_FLIGHT:
                raise BadRequest("a request with this Idempotency-Key is still in progress; retry later",
                                 status=409, code="idempotency_in_progress", headers={"retry-after": "1"})
        try:
            paid = await self._claim_and_settle(prepared, bound.challenge_id, request, expires, ctx, now)
        except BaseException:
            if scoped_key is not None:
                await self._store.idem_abort(scoped_key)
            raise
        return Paid(challenge_id=bound.challenge_id, amount=int(request["amount"]),
                    currency=str(request["currency"]), payer=paid.payer, reference=paid.tx_hash,
                    receipt=Receipt(status="success", timestamp=format_rfc3339(self._now().replace(
                        microsecond=0)), reference=paid.tx_hash, method="tempo"),
                    idempotency_key=scoped_key)

    async def _claim_and_settle(self, prepared: Prepared, challenge_id: str, request: dict[str, Any],
                                expires: int, ctx: dict[str, Any], now: datetime) -> Settled:
        ttl = max(1.0, expires - now.timestamp()) + CLAIM_MARGIN
        if not await self._store.claim(f"challenge:{challenge_id}", ttl):
            raise CredentialReplayed("this challenge was already used (each challenge pays once)")
        if not await self._store.claim(f"tx:{prepared.tx_hash.lower()}", max(ttl, TX_CLAIM_TTL)):
            raise CredentialReplayed("this transaction was already used to pay")
        try:
            return await self._settler.settle(prepared, **ctx)
        except ChainError as exc:
            # The money may or may not have moved: keep a row so an operator can reconcile.
            await self._store.record("unsettled", {
                "challenge_id": challenge_id, "tx_hash": prepared.tx_hash, "payer": prepared.payer,
                "amount": request.get("amount"), "error": type(exc).__name__, "at": int(now.timestamp())})
            log.warning("settlement of %s failed: %s", prepared.tx_hash, exc)
            raise VerificationFailed("the payment could not be settled: the chain did not answer in time "
                                     f"(transaction {prepared.tx_hash})") from None

    async def finish(self, paid: Paid, response: StoredResponse) -> None:
        """Store the served response for ``Idempotency-Key`` replays (no-op without a key)."""
        if paid.idempotency_key is not None:
            await self._store.idem_complete(paid.idempotency_key, response)

    def supported_modes(self) -> list[str]:
        """The spec names (``pull``/``push``) of the accepted payload modes."""
        return [MODE_NAMES[m] for m in self._config.modes]
