"""The session side of the payment gate: verify session credentials, keep the channel books,
hold and charge per request, settle and close on chain.

Actions (draft-tempo-session-00; mpp-protocol.md §4.6-4.7), after ``offer.check_session_echo``:

* ``open``: decode and check the payer's signed open transaction (``tempo.session.verify``),
  claim its hash in the shared store, broadcast it and wait for the receipt (skipped when the
  channel already exists: a retried open is idempotent), check the on-chain terms, then accept
  the initial voucher;
* ``voucher``: signature recovery against the on-chain signer, monotonic cumulative,
  ``<= deposit`` (``accounting.accept_voucher``), persisted atomically per channel; a channel
  on chain but unknown to the books (lost state) is adopted with ``spent = settled``;
* ``topUp``: check, claim, broadcast, refresh the deposit;
* ``close``: the voucher must cover everything spent or held; the payee closes on chain,
  which pays the payee that amount and refunds the rest; the books mark the channel closed.

A channel the ``closewatch`` marks closing (its payer requested a forced close) takes no voucher
and serves no request (``ChannelClosing``) until a fresh read of the escrow shows the close
cancelled (a ``topUp`` cancels it).  Missing or finalized channels are 410.  Holding and
charging per request, and settlement, are the ``meter.Meter`` half of the gate.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime, timezone

from ...errors import (
    ChainError,
    ChannelClosing,
    ChannelFinalized,
    ChannelNotFound,
    ConfigError,
    CredentialReplayed,
    InsufficientBalance,
    VerificationFailed,
)
from ...protocol._rfc3339 import format_rfc3339
from ...protocol.challenge import Challenge
from ...protocol.credential import Credential
from ...protocol.receipt import Receipt
from ...tempo import tx as txmod
from ...tempo.escrow import resolve_escrow
from ...tempo.rpc import AsyncRpcClient, hex_int
from ...tempo.session import (
    ChannelAccount,
    ChannelState,
    ClosePayload,
    OpenPayload,
    TopUpPayload,
    Voucher,
    VoucherDomain,
    VoucherOutcome,
    accept_voucher,
    check_channel_live,
    check_channel_terms,
    check_close_voucher,
    check_open_transaction,
    check_top_up_transaction,
    parse_session_payload,
    session_receipt_fields,
)
from ...tempo.session.onchain import EscrowReverted, read_channel_async
from ...tempo.signer import LocalSigner
from ..config import ServerConfig
from ..stores.base import Store
from .book import ChannelBook, ChannelRecord
from .meter import Meter
from .offer import SessionEcho, SessionTerms, check_session_echo, session_offers
from .settings import SessionSettings
from .settle import Payee

log = logging.getLogger("mpp_claude.server.sessions")

TX_CLAIM_TTL = 7 * 24 * 3600


class _ClosingInBooks(Exception):
    """The books mark the channel closing and the state at hand may be stale: read it afresh."""


@dataclass(frozen=True, slots=True)
class SessionGrant:
    """A verified session credential: the channel it acts on and the books after it."""

    challenge_id: str
    action: str
    channel_id: str
    payer: str
    currency: str
    record: ChannelRecord
    tx_hash: str | None = None
    held: bool = False


class SessionGate(Meter):
    """Verifies session credentials and keeps the channel books (one per app).

    Args:
        config: the server configuration (realm, secret, recipient, chain, currencies).
        settings: the session settings.
        book: the channel books (``book.open_book(store)``).
        store: the shared store (transaction-hash claims, ``session_tx`` records).
        rpc: the chain.
        clock: Unix seconds.
        nonce: fresh challenge nonces.
    Raises:
        ConfigError: ``payee_key`` is not the key of ``config.recipient``, or no escrow is known.
    """

    def __init__(self, config: ServerConfig, settings: SessionSettings, book: ChannelBook, store: Store,
                 rpc: AsyncRpcClient, *, clock: Callable[[], float] = time.time,
                 nonce: Callable[[], str]) -> None:
        key = settings.payee_key.removeprefix("0x")
        try:
            signer = LocalSigner(bytes.fromhex(key))
        except ValueError:
            raise ConfigError("session payee_key: expected a 32-byte hex private key "
                              "(value not shown)") from None
        if signer.address.lower() != config.recipient.lower():
            raise ConfigError(f"session payee_key belongs to {signer.address}, not the recipient "
                              f"{config.recipient}: only the payee can settle and close channels")
        self.config, self.settings, self.book, self.store, self.rpc = config, settings, book, store, rpc
        self.escrow = resolve_escrow(config.chain_id,
                                     {config.chain_id: settings.escrow} if settings.escrow else None)
        self.domain = VoucherDomain(config.chain_id, self.escrow)
        self._payee = Payee(rpc, signer, self.escrow, settings.fee_token)
        self.terms = SessionTerms(realm=config.realm, recipient=config.recipient, chain_id=config.chain_id,
                                  escrow=self.escrow, currencies=config.currencies,
                                  suggested_deposit=settings.suggested_deposit,
                                  min_voucher_delta=settings.min_voucher_delta)
        self._clock = clock
        self._nonce = nonce
        self._states: dict[str, tuple[ChannelState, float]] = {}
        super().__init__()
        self._echoes: dict[tuple[object, ...], SessionEcho] = {}
        self.parsed: dict[str, Credential] = {}  # header value -> parsed credential (http.session_credential)

    # --- offers and receipts -------------------------------------------------------------------

    def _now(self) -> datetime:
        return datetime.fromtimestamp(self._clock(), tz=timezone.utc)

    def offers(self, route: str, amount: int, description: str | None = None) -> list[Challenge]:
        """Fresh session challenges for a request on ``route`` quoted at ``amount``."""
        return session_offers(self.terms, route=route, amount=amount, secret=self.config.secret,
                              now=self._now(), ttl=self.config.challenge_ttl, nonce=self._nonce(),
                              description=description)

    def receipt(self, record: ChannelRecord, challenge_id: str, *, cost: int | None = None,
                tx_hash: str | None = None) -> Receipt:
        """The session receipt for ``record`` (``cost``: this request's charge, when it ended)."""
        fields = session_receipt_fields(record.account, challenge_id=challenge_id,
                                        units=None if cost is None else 1, tx_hash=tx_hash)
        fields.pop("method")
        reference = fields.pop("reference")
        if cost is not None:
            fields["amount"] = str(cost)
        return Receipt(status="success", timestamp=format_rfc3339(self._now().replace(microsecond=0)),
                       reference=reference, method="tempo", extra=fields)

    # --- chain state ---------------------------------------------------------------------------

    async def _state(self, channel_id: str, *, fresh: bool = False) -> ChannelState:
        now = time.monotonic()
        cached = self._states.get(channel_id)
        if not fresh and cached is not None and now - cached[1] < self.settings.channel_state_ttl:
            return cached[0]
        try:
            state = await read_channel_async(self.rpc, self.escrow, channel_id)
        except ChainError:
            raise VerificationFailed("the chain could not be reached to read the channel") from None
        if state.exists:
            self._states[channel_id] = (state, now)
        return state

    async def fresh_state(self, channel_id: str) -> ChannelState:
        """The escrow's current ``getChannel`` for ``channel_id`` (not cached; the close watch).

        Raises:
            VerificationFailed: the chain could not be reached.
        """
        return await self._state(channel_id, fresh=True)

    async def _broadcast(self, raw: bytes, what: str) -> str:
        tx_hash = txmod.tx_hash(raw)
        if not await self.store.claim(f"tx:{tx_hash}", TX_CLAIM_TTL):
            raise CredentialReplayed(f"{what} transaction {tx_hash} was already submitted")
        try:
            sent = await self.rpc.send_raw(raw)
            receipt = await self.rpc.wait_for_receipt(sent, timeout=30.0)
        except ChainError as exc:
            await self.store.record("unsettled", {"kind": f"session_{what}", "tx_hash": tx_hash,
                                                  "error": type(exc).__name__, "at": int(self._clock())})
            raise VerificationFailed(f"the {what} transaction could not be broadcast or confirmed: "
                                     f"{exc}") from None
        if hex_int(receipt.get("status", "0x0")) != 1:
            raise VerificationFailed(f"the {what} transaction {sent} reverted")
        await self.store.record("session_tx", {"kind": what, "tx_hash": sent, "at": int(self._clock())})
        return sent

    # --- credentials ---------------------------------------------------------------------------

    async def authorize(self, credential: Credential, route: str, *, hold: tuple[str, int] | None = None
                        ) -> SessionGrant:
        """Verify a session credential and apply its action.

        Args:
            credential: the parsed credential.
            route: the route scope its challenge must name.
            hold: ``(request id, amount)`` to hold for a content request in the same atomic step
                as a voucher's acceptance (``grant.held`` says whether it was held; a short
                balance leaves the voucher accepted and nothing held).
        Raises:
            VerificationError subclasses: the echo, payload, transaction or voucher is refused
                (``ChannelNotFound``/``ChannelFinalized`` are 410).
        """
        echo = self._echo(credential.challenge, route)
        payload = parse_session_payload(credential.payload)
        if isinstance(payload, OpenPayload):
            return await self._open(payload, echo)
        if isinstance(payload, TopUpPayload):
            return await self._top_up(payload, echo)
        if isinstance(payload, ClosePayload):
            return await self._close(payload.voucher, echo)
        voucher = payload.voucher
        state = await self._state(voucher.channel_id)
        if not state.exists or voucher.cumulative_amount > state.deposit:
            state = await self._state(voucher.channel_id, fresh=True)
        held: list[bool] = []
        try:
            record = await self._accept(voucher, state, echo.currency, hold=hold, held=held)
        except _ClosingInBooks:  # the books say closing: only a fresh read may show it cancelled
            state = await self._state(voucher.channel_id, fresh=True)
            record = await self._accept(voucher, state, echo.currency, hold=hold, held=held, fresh=True)
        return SessionGrant(echo.challenge_id, "voucher", voucher.channel_id, record.payer, echo.currency,
                            record,
                            held=bool(held))

    def _echo(self, challenge: Challenge, route: str) -> SessionEcho:
        """``check_session_echo``, remembered per exact echo (a session reuses its challenge for every
        request): a remembered echo is only re-checked for expiry."""
        c = challenge
        key = (c.id, c.realm, c.method, c.intent, c.request, c.expires, c.opaque, c.digest, c.header, route)
        known = self._echoes.get(key)
        if known is not None and known.expires_at > self._clock():
            return known
        echo = check_session_echo(challenge, self.terms, route=route, secret=self.config.secret,
                                  now=self._now())
        if len(self._echoes) >= 4096:
            self._echoes.clear()
        self._echoes[key] = echo
        return echo

    async def _accept(self, voucher: Voucher, state: ChannelState, currency: str, *,
                      hold: tuple[str, int] | None = None, held: list[bool] | None = None,
                      fresh: bool = False) -> ChannelRecord:
        """Accept ``voucher`` into the books (and hold ``hold``), atomically.

        Args:
            fresh: ``state`` was just read from the chain (not the cache).
        Raises:
            _ClosingInBooks: the books mark the channel closing and ``state`` is not ``fresh``.
            ChannelClosing: a forced close is pending (books or chain).
            Other VerificationError subclasses: see ``accounting.accept_voucher``.
        """
        cid = voucher.channel_id
        check_channel_live(state, cid)
        now = self._clock()

        def apply(rec: ChannelRecord | None) -> ChannelRecord | None:
            if rec is None:  # unknown to the books (first open, or lost state): adopt from the chain
                check_channel_terms(state, cid, payee=self.config.recipient, token=currency)
                rec = ChannelRecord(ChannelAccount(cid, state.settled, state.settled, state.settled,
                                                   state.deposit),
                                    payer=state.payer, last_settle_at=now)
            if rec.closed:
                raise ChannelFinalized(f"channel {cid} is closed", channelId=cid)
            cancelled = False
            if rec.close_requested_at:  # seen by the close watch
                if not fresh:
                    raise _ClosingInBooks(cid)
                if state.close_requested_at:
                    raise ChannelClosing(f"channel {cid} has a forced close pending", channelId=cid)
                rec, cancelled = replace(rec, close_requested_at=0), True  # a topUp cancelled it
            acc = rec.account
            new: ChannelRecord | None
            if acc.voucher_signature == voucher.signature \
                    and acc.accepted_cumulative == voucher.cumulative_amount:
                # the very voucher accepted before (its signature was recovered then): a retry
                if state.close_requested_at:
                    raise ChannelClosing(f"channel {cid} has a forced close pending", channelId=cid)
                new = rec if cancelled else None
            elif (done := accept_voucher(acc, voucher, state, self.domain,
                                         min_voucher_delta=self.settings.min_voucher_delta)
                  ).outcome is VoucherOutcome.DUPLICATE and acc.voucher_signature:
                new = None if rec.account.deposit == state.deposit and not cancelled else \
                    replace(rec, account=replace(rec.account, deposit=state.deposit))
            else:
                new = rec.with_account(done.account)
            if hold is not None and held is not None:
                held.clear()  # ``update`` may call ``apply`` more than once (a lost race is retried)
                try:
                    new = self._held(new or rec, hold[0], hold[1], now)
                    held.append(True)
                except InsufficientBalance:
                    pass
            return new

        record = await self.book.update(cid, apply)
        assert record is not None
        self._wake(cid)
        return record

    async def _open(self, payload: OpenPayload, echo: SessionEcho) -> SessionGrant:
        decoded = txmod.decode(payload.transaction)
        if decoded.envelope != txmod.TX_TYPE:
            raise VerificationFailed("the open transaction must be a sender-paid 0x76 transaction")
        opened = check_open_transaction(decoded.tx, escrow=self.escrow, chain_id=self.config.chain_id,
                                        payee=self.config.recipient, token=echo.currency,
                                        channel_id=payload.channel_id, min_deposit=self.settings.min_deposit,
                                        authorized_signer=payload.authorized_signer)
        cid = opened.channel_id
        state = await self._state(cid, fresh=True)
        tx_hash = None
        if not state.exists:
            tx_hash = await self._broadcast(payload.transaction, "open")
            state = await self._state(cid, fresh=True)
        check_channel_terms(state, cid, payee=self.config.recipient, token=echo.currency)
        record = await self._accept(payload.voucher, state, echo.currency, fresh=True)  # read just now
        return SessionGrant(echo.challenge_id, "open", cid, record.payer, echo.currency, record, tx_hash)

    async def _top_up(self, payload: TopUpPayload, echo: SessionEcho) -> SessionGrant:
        decoded = txmod.decode(payload.transaction)
        if decoded.envelope != txmod.TX_TYPE:
            raise VerificationFailed("the topUp transaction must be a sender-paid 0x76 transaction")
        sender = check_top_up_transaction(decoded.tx, escrow=self.escrow, chain_id=self.config.chain_id,
                                          token=echo.currency, channel_id=payload.channel_id,
                                          additional_deposit=payload.additional_deposit)
        cid = payload.channel_id
        state = await self._state(cid, fresh=True)
        check_channel_terms(state, cid, payee=self.config.recipient, token=echo.currency)
        if sender != state.payer:
            raise VerificationFailed(f"topUp is signed by {sender}, not the channel's payer {state.payer}")
        tx_hash = await self._broadcast(payload.transaction, "topUp")
        state = await self._state(cid, fresh=True)

        def apply(rec: ChannelRecord | None) -> ChannelRecord | None:
            if rec is None:
                raise ChannelNotFound(f"channel {cid} is not open with this server", channelId=cid)
            return replace(rec, account=replace(rec.account, deposit=state.deposit),
                           close_requested_at=state.close_requested_at)  # a topUp cancels a forced close

        record = await self.book.update(cid, apply)
        assert record is not None
        return SessionGrant(echo.challenge_id, "topUp", cid, record.payer, echo.currency, record, tx_hash)

    async def _close(self, voucher: Voucher, echo: SessionEcho) -> SessionGrant:
        cid = voucher.channel_id
        pending = self._settling.get(cid)
        if pending is not None:
            await asyncio.shield(pending)
        state = await self._state(cid, fresh=True)
        check_channel_live(state, cid)
        record = await self.book.get(cid)
        if record is None:
            raise ChannelNotFound(f"channel {cid} is not open with this server", channelId=cid)
        if record.closed:
            raise ChannelFinalized(f"channel {cid} is closed", channelId=cid)
        account = replace(record.account, spent=record.account.spent + record.held)
        amount = check_close_voucher(account, voucher, state, self.domain)
        try:
            tx_hash = await self._payee.close(cid, amount, voucher.signature)
        except (ChainError, EscrowReverted) as exc:
            raise VerificationFailed(f"the channel could not be closed on chain: {exc}") from None
        await self.store.record("session_tx", {"kind": "close", "tx_hash": tx_hash, "channel_id": cid,
                                               "amount": str(amount), "at": int(self._clock())})
        self._states.pop(cid, None)

        def apply(rec: ChannelRecord | None) -> ChannelRecord | None:
            assert rec is not None
            acc = replace(rec.account, settled=amount,
                          accepted_cumulative=max(rec.account.accepted_cumulative,
                                                                                amount))
            return replace(rec, account=acc, closed=True, close_tx=tx_hash, vouchers=())

        closed = await self.book.update(cid, apply)
        assert closed is not None
        return SessionGrant(echo.challenge_id, "close", cid, closed.payer, echo.currency, closed, tx_hash)
