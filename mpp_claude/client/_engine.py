"""The glue every shell shares: logical requests, budgets, ledger, approval, receipts.

``_flow.py`` decides; this module keeps the state those decisions need across attempts and
does the bookkeeping I/O (ledger, clock, randomness, callbacks).  :class:`SyncEngine` and
:class:`AsyncEngine` differ only where the chain or an async approval callback is awaited.

Money rules kept here (style.md "client/"): nothing is signed before the policy allowed it
and every budget (scoped, lifetime, rolling 24 h, rate) is reserved; a reservation is given
back only when no payment can have happened; one credential per logical request, reused
(never re-signed) when the openai SDK retries the same request.
"""

from __future__ import annotations

import inspect
import logging
import secrets
import time
from collections import deque
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from functools import lru_cache, partial
from typing import Any, Protocol

from ..errors import (
    ApprovalDenied,
    BudgetExceeded,
    ChainError,
    ConfigError,
    PaymentDeclined,
    PaymentOutcomeUnknown,
    PaymentQuoted,
    PaymentRejected,
)
from ..tempo import tip20
from . import _telemetry
from ._flow import Deliver, Headers, Pay, PaymentFlow, Resend
from ._logical import Attempt, Logical, LogicalRequests, Ticket, fingerprint, model_of
from .alerts import Spend, Watch
from .budget import BudgetScope, active_scopes, release_all, reserve_all
from .hooks import Hooks, safe_hook
from .ledger import AnyLedger, Entry
from .payer import AsyncPayer, Payer, Signed
from .policy import Policy, Target
from .receipts import PaymentReceipt, Quote
from .wallet import Wallet

log = logging.getLogger("mpp_claude.client")

EXT_FIRST_ORIGIN = "mpp_first_origin"
RETRY_HEADER = "x-stainless-retry-count"
IDEMPOTENCY_HEADER = "Idempotency-Key"

Approve = Callable[[Quote], "bool | Awaitable[bool]"]
_DRY_RUN: ContextVar[bool] = ContextVar("mpp_claude_dry_run", default=False)


@lru_cache(maxsize=256)  # a constant table, looked up once per (chain, token) instead of per payment
def _symbol(chain_id: int, currency: str) -> str:
    """The token's symbol, or ``"units"`` for a token we do not know."""
    symbol = tip20.token_symbol(chain_id, currency)
    return symbol if symbol != currency else "units"


class HeaderLookup(Protocol):
    def get(self, key: str, default: Any = None) -> Any: ...


def _checked_reference(receipt: PaymentReceipt) -> str | None:
    """The reference the ledger records for a paid response (its receipt is parsed here, when the
    deferred write is applied); a missing or malformed receipt is logged."""
    if receipt.receipt is None:
        log.warning("paid response from %s%s carried no valid Payment-Receipt (%s); keeping tx %s",
                    receipt.origin, receipt.path, receipt.receipt_error, receipt.tx_hash)
    return receipt.reference


class Engine:
    """State shared by the shells of one client.  Not public: use ``MppClient``."""

    def __init__(self, wallet: Wallet, policy: Policy, ledger: AnyLedger, *, approve: Approve | None = None,
                 approve_above: int | None = None, hooks: Hooks | None = None, dry_run: bool = False) -> None:
        self.wallet = wallet
        self.policy = policy
        self.ledger = ledger
        self.approve = approve
        self.approve_above = approve_above
        self.hooks = hooks or Hooks()
        self.dry_run = dry_run
        self.owns_rpc = False
        self.lifetime = BudgetScope(policy.max_per_client, name="max_per_client")
        self.receipts: deque[PaymentReceipt] = deque(maxlen=10_000)
        self._watch = Watch()  # what the budget and low-balance observers remember (alerts.py)
        self._requests = LogicalRequests()
        self._pins: dict[str, str] = {}

    # -- start -----------------------------------------------------------------------------------

    def start(self, method: str, url: str, scheme: str, host: str, port: int | None, path: str,
              headers: HeaderLookup, body: bytes, first_origin: str | None) -> Attempt:
        """Begin an attempt: find the logical request (SDK retry) and the headers to add."""
        user_key = headers.get("idempotency-key")
        retry = headers.get(RETRY_HEADER)
        logical = None
        if user_key or (retry is not None and retry != "0"):
            logical = self._requests.find(fingerprint(method, url, body, user_key))
        key = user_key or (logical.idempotency_key if logical else secrets.token_urlsafe(18))
        target = Target(scheme, host, port, path, first_origin)
        credential = logical.credential if logical else None
        flow = PaymentFlow(self.policy, target, credential=credential)
        set_headers: list[tuple[str, str]] = []
        if not user_key and method not in ("GET", "HEAD", "OPTIONS") and self._may_pay(target):
            set_headers.append((IDEMPOTENCY_HEADER, key))
        if credential is not None:
            log.info("replaying the payment credential of %s %s%s (retry %s): not paying again",
                     method, target.origin, path, retry)
            set_headers.append((credential.header, credential.value))
        return Attempt(flow, method, url, body, key, bool(user_key), logical, set_headers)

    def _may_pay(self, target: Target) -> bool:
        """Only origins we may pay get our headers; other servers see the request untouched."""
        return "any_origin" in self.policy.unsafe or target.origin in self.policy.allowed_origins

    def _register(self, att: Attempt, ticket: Ticket, credential: Resend) -> None:
        fp = fingerprint(att.method, att.url, att.body, att.idempotency_key if att.user_key else None)
        att.logical = self._requests.add(fp, Logical(att.idempotency_key, credential, ticket))

    # -- responses -------------------------------------------------------------------------------

    def _pinned(self, origin: str) -> str | None:
        if not self.policy.pin_payee:
            return None
        pinned = self._pins.get(origin)
        if pinned is None:  # a pin never changes once written, so a found one is cached
            pinned = self.ledger.pinned_payee(self.wallet.address, origin)
            if pinned is not None:
                self._pins[origin] = pinned
        return pinned

    def _decide(self, att: Attempt, status: int, headers: Headers, body: bytes) -> Deliver | Pay:
        try:
            return att.flow.on_response(status, headers, body, now=int(time.time()),
                                        pinned_payee=self._pinned(att.flow.target.origin) if status == 402
                                        else None)
        except PaymentRejected as exc:
            self._unknown(att, f"server rejected the credential: {exc}")
            ticket = self._ticket(att)
            if ticket is not None and ticket.signed is not None:
                exc.details["tx_hash"] = ticket.signed.tx_hash
            raise
        except PaymentDeclined as exc:
            log.info("not paying %s%s: %s", att.flow.target.origin, att.flow.target.path, exc)
            raise

    def _ticket(self, att: Attempt) -> Ticket | None:
        return att.logical.ticket if att.logical is not None else None

    def _unknown(self, att: Attempt, why: str) -> None:
        ticket = self._ticket(att)
        if ticket is not None and ticket.ledger_id is not None and not ticket.done:
            signed = ticket.signed
            self.ledger.mark_unknown(ticket.ledger_id, error=why, now=time.time(),
                                     tx_hash=signed.tx_hash if signed else None,
                                     valid_before=signed.valid_before if signed else None)

    def deliver(self, att: Attempt, action: Deliver) -> PaymentReceipt | None:
        """Bookkeeping for a response handed to the caller; the receipt to attach, if paid."""
        ticket = self._ticket(att)
        if not action.paid or ticket is None:
            return None
        if not 200 <= action.status < 300:
            self._unknown(att, f"server answered {action.status} after payment")
            return None
        signed = ticket.signed
        tx_hash = signed.tx_hash if signed else None
        q = ticket.quote
        receipt = PaymentReceipt(action.receipt_header, q.amount, q.currency, q.symbol, q.payee, q.chain_id,
                                 tx_hash, q.challenge_id, q.origin, q.path, att.idempotency_key,
                                 ticket.ledger_id, ticket.model)
        if not ticket.done:
            ticket.done = True
            reference = partial(_checked_reference, receipt)
            if ticket.ledger_id is not None:  # the outcome and the signed transaction: one write,
                # deferred off the critical path (ledger.py, "Deferred outcome": until it is applied
                # the row stays reserved, i.e. counted; every later ledger call sees it applied),
                # and the receipt is parsed then, for its reference
                self.ledger.settle(ticket.ledger_id, reference=reference, now=time.time(),
                                   tx_hash=tx_hash, valid_before=signed.valid_before if signed else None,
                                   defer=True)
            else:
                reference()
            self.receipts.append(receipt)
            if log.isEnabledFor(logging.INFO):
                log.info("paid %s %s to %s for %s%s (tx %s)", q.display_amount, q.symbol, q.payee, q.origin,
                         q.path, receipt.reference)
            safe_hook("on_receipt", self.hooks.on_receipt, receipt)
        return receipt

    def _lost(self, att: Attempt) -> Resend | None:
        """The connection failed.  ``None``: nothing was paid, let the error through."""
        resend = att.flow.on_lost()
        if resend is not None:
            self._unknown(att, "connection lost after sending the payment credential")
            log.warning("connection lost after paying for %s; resending the same credential", att.url)
        return resend

    # -- paying ----------------------------------------------------------------------------------

    def _quote(self, att: Attempt, pay: Pay, scopes: tuple[BudgetScope, ...]) -> Quote:
        o, amount = pay.offer, pay.offer.amount
        left: dict[str, int] = {}
        if self.policy.max_payment is not None:
            left["max_payment"] = self.policy.max_payment - amount
        for s in scopes:
            if s.remaining is not None:
                left[s.budget.name] = s.remaining - amount
        if self.policy.max_per_day is not None and self._wants_quote_detail():
            # one more ledger read; only when someone looks at the quote (approval, dry run, hook)
            day = self.ledger.day_spent(self.wallet.address, now=time.time())
            left["max_per_day"] = self.policy.max_per_day - day - amount
        target = att.flow.target
        return Quote(target.origin, target.path, o.method, o.intent, amount, o.currency,
                     _symbol(o.chain_id or 0, o.currency), tip20.DECIMALS, o.recipient, o.chain_id,
                     o.challenge_id, o.expires, o.description, left)

    def _wants_quote_detail(self) -> bool:
        return (self.approve is not None or self.dry_run or _DRY_RUN.get()
                or self.hooks.on_challenge is not None or self.hooks.on_payment is not None)

    def _reserve(self, att: Attempt, pay: Pay) -> Ticket:
        """Dry-run check, then every budget reserved (scopes, lifetime, ledger), all or nothing."""
        scopes = (*active_scopes(), self.lifetime)
        quote = self._quote(att, pay, scopes)
        safe_hook("on_challenge", self.hooks.on_challenge, quote)
        if self.dry_run or _DRY_RUN.get():
            raise PaymentQuoted(f"dry run: {quote}", quote=quote)
        try:
            reserve_all(scopes, pay.offer.amount)
        except BudgetExceeded as exc:
            log.info("not paying %s%s: %s", quote.origin, quote.path, exc)
            raise
        ticket = Ticket(quote, scopes, model=model_of(att.body))
        try:
            ticket.ledger_id, ticket.day = self.ledger.reserve_counted(
                Entry(self.wallet.address, pay.offer.amount, pay.offer.currency, pay.offer.chain_id,
                      pay.offer.recipient, quote.origin, quote.path, ticket.model, att.idempotency_key,
                      pay.challenge.id),
                now=time.time(), max_per_day=self.policy.max_per_day,
                max_per_minute=self.policy.max_per_minute)
        except BaseException as exc:  # BudgetExceeded, or the ledger failed: nothing is reserved anywhere
            release_all(scopes, pay.offer.amount)
            log.info("not paying %s%s: %s", quote.origin, quote.path, exc)
            raise
        return ticket

    def spend(self, origin: str, path: str, amount: int, currency: str, chain_id: int) -> Spend:
        """What a budget alert names for a payment of ``amount`` that has no quote (a voucher)."""
        return Spend(origin, path, amount, currency, _symbol(chain_id, currency), tip20.DECIMALS)

    def budget_alerts(self, spend: Spend, scopes: tuple[BudgetScope, ...], day: int | None) -> None:
        """A payment was signed (a charge, or a session voucher's increase): log and hand
        ``on_budget`` each threshold its reservation reached (alerts.py)."""
        table = self.hooks.threshold_table
        for alert in self._watch.budgets(table, spend, scopes, self.policy.max_per_day, day):
            log.info("mpp_claude %s", alert)
            safe_hook("on_budget", self.hooks.on_budget, alert)

    def _balance_left(self, quote: Quote, balance: int) -> None:
        """The wallet's tracked balance after a payment: warn and call ``on_low_balance`` once per
        drop below the floor (alerts.py)."""
        low = self._watch.balance(quote, balance, self.hooks.floor_units)
        if low is not None:
            log.warning("mpp_claude low balance: %s", low)
            safe_hook("on_low_balance", self.hooks.on_low_balance, low)

    def _needs_approval(self, quote: Quote) -> bool:
        return self.approve is not None and (self.approve_above is None or quote.amount > self.approve_above)

    def _abort(self, ticket: Ticket, why: str) -> None:
        """No credential exists: give every reservation back."""
        release_all(ticket.scopes, ticket.quote.amount)
        if ticket.ledger_id is not None:
            self.ledger.release(ticket.ledger_id, error=why, now=time.time())

    def _hold(self, ticket: Ticket, exc: PaymentOutcomeUnknown) -> None:
        """Money may have moved: keep every reservation; the ledger row waits for reconcile()."""
        if ticket.ledger_id is not None:
            self.ledger.mark_unknown(ticket.ledger_id, error=str(exc), now=time.time(),
                                     tx_hash=exc.details.get("tx_hash"))

    def _signed(self, att: Attempt, pay: Pay, ticket: Ticket, signed: Signed) -> Resend:
        # No ledger write here: the row stays ``reserved`` (budget held) until the outcome is
        # written together with the transaction (ledger.py, "two writes per charge").
        ticket.signed = signed
        resend = att.flow.on_credential(signed.header, signed.value)
        self._register(att, ticket, resend)
        safe_hook("on_payment", self.hooks.on_payment, ticket.quote, signed.tx_hash)
        if self.hooks.on_budget is not None:
            self.budget_alerts(Spend.of(ticket.quote), ticket.scopes, ticket.day)
        if signed.balance is not None:
            self._balance_left(ticket.quote, signed.balance)
        return resend

    def _denied(self, ticket: Ticket) -> ApprovalDenied:
        self._abort(ticket, "approval callback declined")
        return ApprovalDenied(f"approval callback declined paying {ticket.quote}", rule="approval",
                              quote=ticket.quote)

    def _outcome_unknown(self, att: Attempt, exc: PaymentOutcomeUnknown, mined: bool | None) -> None:
        ticket = self._ticket(att)
        tx = ticket.signed.tx_hash if ticket and ticket.signed else None
        exc.details["tx_hash"] = tx
        if mined and ticket is not None and ticket.ledger_id is not None:
            ticket.done = True
            self.ledger.settle(ticket.ledger_id, reference=tx, now=time.time(), tx_hash=tx)
            exc.message += f"; the payment settled on chain (tx {tx}) but the response was lost"
        else:
            exc.message += f" (tx {tx} not mined yet; the ledger keeps it reserved until reconciled)"


class SyncEngine(Engine):
    """Engine for the sync shells (``MppClient``, ``MppTransport``)."""

    def __init__(self, wallet: Wallet, policy: Policy, ledger: AnyLedger, payer: Payer, **kw: Any) -> None:
        super().__init__(wallet, policy, ledger, **kw)
        self.payer = payer

    def on_response(self, att: Attempt, status: int, headers: Headers, body: bytes) -> Deliver | Pay:
        if status == 402:
            if self.policy.chain_id is None and "any_chain" not in self.policy.unsafe:
                self.policy = self.policy.with_chain(self.payer.chain_id())
            att.flow.policy = self.policy  # another request may have pinned the chain since this one began
        return self._decide(att, status, headers, body)

    def pay(self, att: Attempt, pay: Pay) -> Resend:
        """Reserve, approve, sign.  Raises the ``PaymentDeclined`` family, ``InsufficientFunds``."""
        ticket = self._reserve(att, pay)
        with _telemetry.span("mpp.pay", ticket.quote) as span:
            try:
                if self._needs_approval(ticket.quote):
                    assert self.approve is not None
                    verdict = self.approve(ticket.quote)
                    if inspect.isawaitable(verdict):
                        if hasattr(verdict, "close"):
                            verdict.close()
                        raise ConfigError("an async approval callback needs AsyncMppClient")
                    if not verdict:
                        raise self._denied(ticket)
                signed = self.payer.sign(pay.challenge, pay.charge)
            except ApprovalDenied:
                raise
            except PaymentOutcomeUnknown as exc:  # push mode: broadcast, not confirmed
                self._hold(ticket, exc)
                raise
            except BaseException as exc:
                self._abort(ticket, f"{type(exc).__name__}: {exc}")
                raise
            _telemetry.tx(span, signed.tx_hash)
            return self._signed(att, pay, ticket, signed)

    def lost(self, att: Attempt) -> Resend | None:
        """The connection failed: ``None`` (unpaid, re-raise it), the credential to resend once,
        or ``PaymentOutcomeUnknown`` after asking the chain whether the payment settled."""
        try:
            return self._lost(att)
        except PaymentOutcomeUnknown as exc:
            self._lost_again(att, exc)
            raise

    def _lost_again(self, att: Attempt, exc: PaymentOutcomeUnknown) -> None:
        ticket = self._ticket(att)
        tx = ticket.signed.tx_hash if ticket and ticket.signed else None
        mined = None
        if tx:
            try:
                mined = self.payer.tx_status(tx)
            except ChainError:
                log.warning("could not ask the chain about tx %s", tx)
        self._outcome_unknown(att, exc, mined)


class AsyncEngine(Engine):
    """Engine for the async shells (``AsyncMppClient``, ``AsyncMppTransport``)."""

    def __init__(self, wallet: Wallet, policy: Policy, ledger: AnyLedger, payer: AsyncPayer,
                 **kw: Any) -> None:
        super().__init__(wallet, policy, ledger, **kw)
        self.payer = payer

    async def on_response(self, att: Attempt, status: int, headers: Headers, body: bytes) -> Deliver | Pay:
        if status == 402:
            if self.policy.chain_id is None and "any_chain" not in self.policy.unsafe:
                self.policy = self.policy.with_chain(await self.payer.chain_id())
            att.flow.policy = self.policy  # another request may have pinned the chain since this one began
        return self._decide(att, status, headers, body)

    async def pay(self, att: Attempt, pay: Pay) -> Resend:
        """See :meth:`SyncEngine.pay`; the approval callback may be sync or async."""
        ticket = self._reserve(att, pay)
        with _telemetry.span("mpp.pay", ticket.quote) as span:
            try:
                if self._needs_approval(ticket.quote):
                    assert self.approve is not None
                    verdict = self.approve(ticket.quote)
                    if inspect.isawaitable(verdict):
                        verdict = await verdict
                    if not verdict:
                        raise self._denied(ticket)
                signed = await self.payer.sign(pay.challenge, pay.charge)
            except ApprovalDenied:
                raise
            except PaymentOutcomeUnknown as exc:  # push mode: broadcast, not confirmed
                self._hold(ticket, exc)
                raise
            except BaseException as exc:
                self._abort(ticket, f"{type(exc).__name__}: {exc}")
                raise
            _telemetry.tx(span, signed.tx_hash)
            return self._signed(att, pay, ticket, signed)

    async def lost(self, att: Attempt) -> Resend | None:
        """See :meth:`SyncEngine.lost`."""
        try:
            return self._lost(att)
        except PaymentOutcomeUnknown as exc:
            await self._lost_again(att, exc)
            raise

    async def _lost_again(self, att: Attempt, exc: PaymentOutcomeUnknown) -> None:
        ticket = self._ticket(att)
        tx = ticket.signed.tx_hash if ticket and ticket.signed else None
        mined = None
        if tx:
            try:
                mined = await self.payer.tx_status(tx)
            except ChainError:
                log.warning("could not ask the chain about tx %s", tx)
        self._outcome_unknown(att, exc, mined)


def set_dry_run(value: bool) -> Any:
    """Set the dry-run flag for this context; returns the token for ``reset_dry_run``."""
    return _DRY_RUN.set(value)


def reset_dry_run(token: Any) -> None:
    _DRY_RUN.reset(token)
