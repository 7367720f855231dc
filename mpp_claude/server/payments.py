"""The payment gate of a paid route: issue challenges, verify and settle credentials.

Order of ``PaymentGate.authorize`` (mpp-protocol.md §1.4 and §3.6), each step raising the
``VerificationError`` whose problem type the spec assigns:

1. exactly one ``Authorization: Payment`` credential (other schemes, such as the openai SDK's
   ``Bearer`` key, are ignored; two Payment credentials are a 400);
2. parse it (``malformed-credential``);
3. generic checks of the echo against what *this* body costs on *this* route (``binding``:
   HMAC, realm/method/intent, request, expires present, not expired, digest, route);
4. the payload mode is one this server accepts;
5. ``Idempotency-Key`` (only when the header is sent): the key is scoped by its payer,
   ``"{payer}:{key}"``, found without I/O and on the common path without secp256k1 work:
   a ``transaction`` whose ``source`` DID names an address on the charge's chain is scoped by
   that *claimed* address (not yet proven); one without a usable ``source`` by its
   signature-recovered sender; a ``hash`` credential by its claimed ``source`` DID (settlement
   checks it against the chain).  Then ``idem_begin``:
   COMPLETED: a claimed address is proven first: a transaction's signer is recovered and must
   be that address; a hash credential's receipt is fetched (``prove_hash``: one RPC) and must
   show a successful payment of *this* credential's challenge from that address; else
   ``verification-failed`` (a chain that does not answer too), and the stored entry is left as
   it is.  The stored response is then replayed with no charge and no upstream call (also after
   the challenge or the transaction's validity window expired: the stored answer lives 24 h);
   CONFLICT (the same key with another body): 422; IN_FLIGHT: 409;
   NEW: steps 6-9, the key reserved for this request (``idempotency.py`` says why scoping
   by an unproven ``source`` is safe);
6. ``tempo.settle.AsyncChargeVerifier.verify``: the pure transaction checks (calls, memo,
   limits, sponsor policy + co-signature), then our ``claim`` callback, then broadcast,
   receipt and log checks.  The callback claims the **challenge id, then the transaction hash**
   (each an atomic put-if-absent in the shared store) *before* anything is broadcast, so a
   credential is accepted once across every worker and replica (a lost race is
   ``invalid-challenge``).  For a
   ``hash`` credential the receipt is checked first, then the claims are made.
7. fee sponsorship, inside the callback (so only a credential that passed every check can
   spend it): a sponsored transaction's gas limit is drawn from the sponsor's gas budget
   (``sponsor_budget`` gas per UTC day, one counter in the shared store for every worker and
   replica).  Once it is spent the transaction is refused before broadcast, and new
   challenges stop offering ``feePayer``: the payer pays its own fees.
8. last in the callback, once every claim and the gas draw succeeded (``transaction``
   credentials only): ``on_claimed()``, where the route starts its upstream call so that it
   runs while the transaction is broadcast and mined (``early.py``).
9. a claimed scope meets the chain's answer: ``SettledPayment.payer`` is the sender the chain
   recovered (the receipt's ``from``, equal to the transfer log's sender).  If it is not the
   claimed address the payment is still valid and is served (that payer paid), but the key
   reserved under the claimed address is released (``idem_abort``), nothing is stored for
   it (``Paid.idempotency_key`` is ``None``) and a warning is logged.  A sponsored pull
   recovers its sender anyway, to co-sign: there the claim is compared before anything is
   claimed or broadcast (``prepare_pull``), and a mismatch is refused (step 6).

Claims are never released: if settlement fails after a claim the credential stays used (fail
closed) and the client gets a fresh challenge with the 402.  A chain that does not answer
after the claim leaves an ``unsettled`` record for the operator (the money may have moved).
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

import anyio

from ..errors import (
    BadRequest,
    ChainError,
    CredentialReplayed,
    MalformedCredential,
    MalformedCredentialProblem,
    PaymentExpired,
    PaymentRequired,
    VerificationFailed,
)
from ..protocol._rfc3339 import format_second
from ..protocol.challenge import Challenge
from ..protocol.credential import Credential, parse_credential
from ..protocol.receipt import Receipt, format_receipt
from ..tempo import tx as txmod
from ..tempo.settle import AsyncChargeVerifier, SettledPayment
from ..tempo.verify import ChargeContext
from .binding import RouteTerms, body_digest, charge_request, check_echo, make_offers
from .config import ServerConfig
from .idempotency import Scope, decode_transaction, prove, release, scope_of
from .pricing import Quote
from .stores.base import IdemState, Store, StoredResponse, request_fingerprint

log = logging.getLogger("mpp_claude.server.payments")

CLAIM_MARGIN = 60  # seconds a claim outlives the challenge it protects
SPONSOR_COUNTER_TTL = 2 * 86_400  # a day's sponsor gas counter is kept a little past its day
TX_CLAIM_TTL = 7 * 24 * 3600  # a transaction hash stays used for a week
TERMS_KEPT = 256  # recent (route, body, quote) terms kept: the paid retry reuses its 402's
TERMS_MAX_BODY = 16 * 1024  # only terms of bodies up to this size are kept


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
        verifier: the Tempo charge verifier (pooled RPC client, sponsor signer and policy).
        clock: Unix time in seconds (``time.time``).
        nonce: a fresh random string per challenge set (``secrets.token_urlsafe``).
    """

    def __init__(self, config: ServerConfig, store: Store, verifier: AsyncChargeVerifier, *,
                 clock: Callable[[], float], nonce: Callable[[], str]) -> None:
        self._config = config
        self._store = store
        self._verifier = verifier
        self._clock = clock
        self._nonce = nonce
        # What this process last learnt of the sponsor's budget: (UTC day, gas left that day).
        self._sponsor_left: tuple[str, int] = ("", config.sponsor_budget)
        self._terms: OrderedDict[tuple[str, bytes, Quote, bool], RouteTerms] = OrderedDict()

    @property
    def sponsoring(self) -> bool:
        """Whether new challenges offer fee sponsorship (configured, and budget left today as far
        as this process has seen; another worker's spending shows at this one's next draw)."""
        if not self._config.fee_payer:
            return False
        if self._config.sponsor_budget <= 0:
            return True
        day, left = self._sponsor_left
        return day != self._now().strftime("%Y-%m-%d") or left > 0

    def _now(self) -> datetime:
        return datetime.fromtimestamp(self._clock(), tz=timezone.utc)

    def terms(self, route: str, body: bytes, quote: Quote) -> RouteTerms:
        """What ``body`` costs on ``route``: one charge request per accepted currency.

        Pure in its inputs (route, body, quote, whether fees are sponsored; the configuration is
        frozen), so the terms of recent small bodies are kept: a paid retry meets its 402's.
        """
        cfg = self._config
        sponsor = self.sponsoring
        key = (route, body, quote, sponsor) if len(body) <= TERMS_MAX_BODY else None
        if key is not None:
            kept = self._terms.get(key)
            if kept is not None:
                self._terms.move_to_end(key)
                return kept
        requests = tuple(charge_request(amount=quote.amount, currency=cur, recipient=cfg.recipient,
                                        chain_id=cfg.chain_id, fee_payer=sponsor, modes=cfg.modes)
                         for cur in cfg.currencies)
        terms = RouteTerms(route=route, realm=cfg.realm, requests=requests, digest=body_digest(body),
                           description=quote.description)
        if key is not None:
            self._terms[key] = terms
            if len(self._terms) > TERMS_KEPT:
                self._terms.popitem(last=False)
        return terms

    def challenges(self, terms: RouteTerms) -> list[Challenge]:
        """Fresh challenges (one per currency) expiring ``challenge_ttl`` seconds from now."""
        return make_offers(terms, secret=self._config.secret, now=self._now(),
                           ttl=self._config.challenge_ttl, nonce=self._nonce())

    async def authorize(self, terms: RouteTerms, body: bytes, authorizations: Sequence[str],
                        idempotency_key: str | None = None, *,
                        on_claimed: Callable[[], None] | None = None) -> Paid | Replayed:
        """Verify and settle the request's credential (see the module docstring for the order).

        Args:
            terms: ``terms(route, body, quote)`` for this request.
            body: the request body received.
            authorizations: every ``Authorization`` header value of the request.
            idempotency_key: the ``Idempotency-Key`` header value, if any.
            on_claimed: called (synchronously, once) when a ``transaction`` credential passed
                every local check and its claims and sponsor gas draw succeeded, just before it
                is broadcast: the route starts its upstream call there (``early.UpstreamCall``).
                Never called for a replay, a refused credential or a ``hash`` credential (its
                claims come after the receipt: nothing is left to overlap).

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
        expired: PaymentExpired | None = None
        try:
            bound = check_echo(credential.challenge, terms, secret=self._config.secret, body=body, now=now)
        except PaymentExpired as exc:
            # An expired credential may still fetch its stored answer (Idempotency-Key, 24 h): check
            # every other binding as of just before the expiry, and refuse unless a replay exists.
            expires_at = credential.challenge.expires_at
            if idempotency_key is None or expires_at is None:
                raise
            expired = exc
            bound = check_echo(credential.challenge, terms, secret=self._config.secret, body=body,
                               now=expires_at - timedelta(seconds=1))
        mode = credential.payload.get("type")
        if mode not in self._config.modes:
            offered = ", ".join(self._config.modes)
            raise VerificationFailed(f"payload type {mode!r} is not accepted here (accepted: {offered})")
        ctx = ChargeContext.from_values(bound.challenge_id, terms.realm, bound.request, int(bound.expires_at))

        scoped_key, scope = None, None
        if idempotency_key is not None:
            scope = scope_of(credential, ctx)
            scoped_key = f"{scope.payer}:{idempotency_key}"
            found = await self._store.idem_begin(scoped_key, request_fingerprint(terms.route, body),
                                                 ttl_s=float(self._config.idempotency_ttl))
            if found.state is IdemState.COMPLETED and found.response is not None:
                await prove(scope, credential, ctx, self._verifier)  # only the key's payer gets it back
                return Replayed(found.response, scope.payer)
            if found.state is IdemState.CONFLICT:
                raise BadRequest("Idempotency-Key was already used with a different request body",
                                 status=422, code="idempotency_key_reused")
            if found.state is IdemState.IN_FLIGHT:
                raise BadRequest("a request with this Idempotency-Key is still in progress; retry later",
                                 status=409, code="idempotency_in_progress", headers={"retry-after": "1"})
            if expired is not None:
                await self._store.idem_abort(scoped_key)
                raise expired
        try:
            settled = await self._settle(credential, ctx, now, scope, on_claimed)
        except BaseException:
            if scoped_key is not None:
                with anyio.CancelScope(shield=True):
                    await self._store.idem_abort(scoped_key)
            raise
        if scoped_key is not None and scope is not None and scope.claimed and settled.payer != scope.payer:
            await release(self._store, scoped_key, scope.payer, settled)
            scoped_key = None  # served, but nothing is stored under an address that did not pay
        stamp = format_second(self._now().replace(microsecond=0))
        return Paid(challenge_id=bound.challenge_id, amount=settled.amount, currency=settled.currency,
                    payer=settled.payer, reference=settled.reference,
                    receipt=Receipt(status="success", timestamp=stamp, reference=settled.reference,
                                    method="tempo"),
                    idempotency_key=scoped_key)

    async def _draw_sponsor_gas(self, credential: Credential, now: datetime,
                                decoded: txmod.Decoded | None) -> None:
        """Take the transaction's gas limit from today's shared sponsor budget (never returned:
        the budget errs on the sponsor's side).

        Raises:
            VerificationFailed: the budget cannot cover it (nothing is broadcast).
        """
        budget = self._config.sponsor_budget
        if budget <= 0:
            return
        gas = (decoded or decode_transaction(credential)).tx.gas_limit
        day = now.strftime("%Y-%m-%d")
        sponsor = self._verifier.fee_payer.address.lower() if self._verifier.fee_payer else "none"
        total = await self._store.draw(f"sponsor-gas:{sponsor}:{day}", gas, budget, SPONSOR_COUNTER_TTL)
        if total is None:
            self._sponsor_left = (day, 0)
            raise VerificationFailed(f"the fee sponsor's gas budget for today is spent (the transaction "
                                     f"needs {gas} gas); new challenges do not sponsor fees")
        self._sponsor_left = (day, budget - total)

    async def _settle(self, credential: Credential, ctx: ChargeContext, now: datetime, scope: Scope | None,
                      on_claimed: Callable[[], None] | None = None) -> SettledPayment:
        """Claim, draw sponsor gas, broadcast and check (steps 6-8).  ``scope``: the key's payer,
        if any (a recovered sender is passed on, a claimed one checked where a sender is recovered)."""
        decoded = scope.decoded if scope is not None else None
        sender = scope.recovered_sender if scope is not None else None
        claimed_sender = scope.claimed_sender if scope is not None else None
        ttl = max(1.0, (ctx.expires or 0) - now.timestamp()) + CLAIM_MARGIN
        claimed: list[str] = []
        pull = credential.payload.get("type") == "transaction"

        async def claim(tx_hash: str) -> bool:
            if not await self._store.claim(f"challenge:{ctx.challenge_id}", ttl):
                raise CredentialReplayed("this challenge was already used (each challenge pays once)",
                                         challengeId=ctx.challenge_id)
            claimed.append(tx_hash)
            if not await self._store.claim(f"tx:{tx_hash.lower()}", max(ttl, TX_CLAIM_TTL)):
                raise CredentialReplayed(f"transaction {tx_hash} was already used to pay")
            if ctx.request.fee_payer and pull:
                await self._draw_sponsor_gas(credential, now, decoded)
            if on_claimed is not None and pull:
                try:  # only the broadcast and the receipt are left: the upstream may start
                    on_claimed()
                except Exception:  # a bug in it must not fail a payment whose claims are made
                    log.exception("on_claimed failed; the upstream is called after settlement")
            return True

        try:
            return await self._verifier.verify(credential.payload, ctx, claim=claim, source=credential.source,
                                               decoded=decoded, sender=sender, claimed_sender=claimed_sender)
        except ChainError as exc:
            if not claimed:
                raise VerificationFailed("the chain could not be reached to verify the payment; "
                                         "nothing was broadcast") from None
            # Claimed and possibly broadcast: the money may have moved.  Keep a row to reconcile.
            await self._store.record("unsettled", {
                "challenge_id": ctx.challenge_id, "tx_hash": claimed[0], "amount": str(ctx.request.amount),
                "error": type(exc).__name__, "at": int(now.timestamp())})
            log.warning("settlement of %s failed: %s", claimed[0], exc)
            raise VerificationFailed("the payment could not be settled: the chain did not answer in time "
                                     f"(transaction {claimed[0]})") from None

    async def finish(self, paid: Paid, response: StoredResponse) -> None:
        """Store the served response for ``Idempotency-Key`` replays (no-op without a key)."""
        if paid.idempotency_key is not None:
            await self._store.idem_complete(paid.idempotency_key, response)

