"""``SessionCore``: the session decisions and bookkeeping behind the session transports.

Offers (which ``tempo``/``session`` challenge may be paid), channels (this process's view of
the channel store, written through on every signature), budgets and ledger rows for each
voucher's increase, and the credentials (open, topUp, voucher, close).  No network I/O: the
transports in ``_session_shell`` / ``_session_async`` send what this builds.  See
``mpp_claude.client.session`` for the behaviour as a whole.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from ..errors import BudgetExceeded, PolicyDenied
from ..protocol.challenge import Challenge, parse_challenges
from ..protocol.credential import Credential, format_credential
from ..protocol.receipt import Receipt
from ..tempo.charge import expiring_valid_before
from ..tempo.escrow import KNOWN_V1_ESCROWS
from ..tempo.session import (
    PayerChannel,
    VoucherDomain,
    after_top_up,
    after_voucher,
    close_payload,
    compute_channel_id,
    open_payload,
    plan_payment,
    sign_voucher,
    top_up_payload,
    voucher_payload,
)
from ..tempo.session import Voucher as SignedVoucher
from ..tempo.session.channel import ZERO_ADDRESS
from ..tempo.session.transactions import (
    GAS_OPEN,
    GAS_TOP_UP,
    build_tx,
    open_calls,
    sign_and_encode,
    top_up_calls,
)
from ..tempo.tx import EXPIRING_NONCE_KEY
from ._engine import Engine
from ._flow import header_values
from .budget import active_scopes, release_all, reserve_all
from .channels import AnyChannelStore, ChannelStore, MemoryChannelStore, StoredChannel
from .ledger import Entry, Ledger
from .policy import Offer, Target, usd
from .session import SessionOffer, SessionPolicy, SessionReceipt


@dataclass
class Voucher:
    """A voucher about to be sent, and the ledger/budget reservation of its increase."""

    stored: StoredChannel
    value: str                     # the credential header value
    delta: int = 0
    opens: bool = False
    ledger_id: int | None = None
    scopes: tuple[Any, ...] = ()
    day: int | None = None  # max_per_day's 24 h sum with this increase, as its reservation read it


def open_store(channels: Any, ledger: Any) -> AnyChannelStore:
    """The channel store a ``SessionPolicy.channels`` names (``"default"``: the ledger's file)."""
    if isinstance(channels, (ChannelStore, MemoryChannelStore)):
        return channels
    if channels is None:
        return MemoryChannelStore()
    if channels == "default":
        return ChannelStore(ledger.path) if isinstance(ledger, Ledger) else MemoryChannelStore()
    return ChannelStore(channels)


class SessionCore:
    """Session decisions and bookkeeping shared by the sync and async shells (thread-safe).

    Args:
        engine: the client's engine (wallet, policy, ledger, budgets).
        policy: the session policy.
    """

    def __init__(self, engine: Engine, policy: SessionPolicy) -> None:
        self.engine = engine
        self.policy = policy
        self.max_deposit = policy.max_deposit_units
        self.store = open_store(policy.channels, engine.ledger)
        self.lock = threading.RLock()
        self.challenges: dict[str, Challenge] = {}   # origin+path -> live session challenge
        self.receipts: deque[SessionReceipt] = deque(maxlen=10_000)  # the latest, oldest first
        self._offers: dict[str, SessionOffer] = {}   # origin+path -> the parsed live offer
        self._cache: dict[str, StoredChannel] = {}  # channel id -> this process's view (write-through)
        self._loaded: set[str] = set()              # origins whose open channels were read from the store
        self._resend: dict[tuple[str, str, int], str] = {}  # the last voucher credential, formatted
        self._reserved: dict[str, int] = {}         # channel id -> base units this process reserved on it

    @property
    def wallet_address(self) -> str:
        return self.engine.wallet.address.lower()

    # --- offers ------------------------------------------------------------------------------

    def _escrow_ok(self, chain_id: int, escrow: str) -> bool:
        extra = self.policy.escrows.get(chain_id)
        return escrow.lower() in KNOWN_V1_ESCROWS.get(chain_id, frozenset()) or \
            (extra is not None and extra.lower() == escrow.lower())

    def select(self, headers: Sequence[tuple[str, str]], target: Target, *, chain_id: int, now: int
               ) -> SessionOffer | None:
        """The session offer of a 402 this client may pay, or ``None`` (the charge path decides)."""
        values = header_values(headers, "www-authenticate")
        try:
            challenges = parse_challenges(values) if values else []
        except Exception:  # malformed: leave it to the charge path, which explains
            return None
        for ch in challenges:
            if ch.method != "tempo" or ch.intent != "session":
                continue
            offer = self._offer(ch)
            if offer is None or offer.chain_id != chain_id or not self._escrow_ok(offer.chain_id,
                                                                                  offer.escrow):
                continue
            policy = self.engine.policy
            if "session" not in policy.intents:
                policy = policy._replace(intents=policy.intents | {"session"})
            plain = Offer(challenge_id=ch.id, realm=ch.realm, method=ch.method, intent=ch.intent,
                          amount=offer.amount, currency=offer.currency, recipient=offer.recipient,
                          chain_id=offer.chain_id,
                          expires=int(ch.expires_at.timestamp()) if ch.expires_at else None,
                          description=ch.description)
            try:
                policy.check_target(target)
                policy.check_offer(plain, target, now=now,
                                   pinned_payee=self.engine._pinned(target.origin))
            except (PolicyDenied, BudgetExceeded):
                continue
            return offer
        return None

    @staticmethod
    def _offer(ch: Challenge) -> SessionOffer | None:
        d = ch.request_data
        raw = d.get("methodDetails")
        details: dict[str, Any] = raw if isinstance(raw, dict) else {}
        try:
            return SessionOffer(ch, int(d["amount"]), str(d["currency"]).lower(), str(d["recipient"]).lower(),
                                int(details["chainId"]), str(details["escrowContract"]).lower(),
                                int(d.get("suggestedDeposit") or 0))
        except (KeyError, TypeError, ValueError):
            return None

    def remember(self, key: str, offer: SessionOffer) -> None:
        with self.lock:
            self.challenges[key] = offer.challenge
            self._offers[key] = offer

    def cached(self, key: str, now: float) -> SessionOffer | None:
        """A cached session challenge for ``key`` still valid for at least 10 s."""
        with self.lock:
            offer = self._offers.get(key)
        ch = None if offer is None else offer.challenge
        if ch is None or ch.expires_at is None or ch.expires_at.timestamp() < now + 10:
            return None
        return offer

    def channel_for(self, origin: str, offer: SessionOffer) -> StoredChannel | None:
        """This wallet's open channel at ``origin`` for the offer's payee, escrow, chain and token."""
        with self.lock:
            if origin not in self._loaded:
                for stored in reversed(self.store.open_channels(self.wallet_address, origin)):
                    self._cache.setdefault(stored.channel_id, stored)
                self._loaded.add(origin)
            for stored in sorted(self._cache.values(), key=lambda s: -s.channel.signed_cumulative):
                if stored.status == "open" and stored.origin == origin and stored.matches(
                        payee=offer.recipient, escrow=offer.escrow, chain_id=offer.chain_id,
                        token=offer.currency):
                    return stored
        return None

    def get(self, channel_id: str, *, fresh: bool = False) -> StoredChannel | None:
        """A channel as this process knows it; ``fresh`` re-reads the store (another process may
        have signed on it) and keeps the higher signed amount."""
        with self.lock:
            cached = self._cache.get(channel_id)
            if cached is not None and not fresh:
                return cached
            stored = self.store.get(channel_id)
            if stored is None:
                return cached
            if cached is not None and cached.channel.signed_cumulative >= stored.channel.signed_cumulative:
                return cached
            self._cache[channel_id] = stored
            return stored

    def open_channels(self, origin: str | None = None) -> list[StoredChannel]:
        """This wallet's open channels (at ``origin``), with what this process knows of them."""
        with self.lock:
            out = []
            for stored in self.store.open_channels(self.wallet_address, origin):
                cached = self._cache.get(stored.channel_id)
                if cached is None or cached.status == "open":
                    out.append(cached or stored)
            return out

    def save(self, stored: StoredChannel, *, durable: bool = True) -> None:
        """Remember ``stored``; ``durable`` writes it to the store before returning."""
        with self.lock:
            self._cache[stored.channel_id] = stored
            if durable:
                self.store.save(stored, now=time.time())

    # --- budgets and ledger ------------------------------------------------------------------

    def _reserve(self, v: Voucher, offer: SessionOffer, origin: str, path: str, model: str | None,
                 request_id: str | None) -> None:
        if v.delta <= 0:
            return
        pol = self.engine.policy
        scopes = (*active_scopes(), self.engine.lifetime)
        reserve_all(scopes, v.delta)
        cid = v.stored.channel_id
        try:
            v.ledger_id, v.day = self.engine.ledger.reserve_counted(
                Entry(self.wallet_address, v.delta, offer.currency, offer.chain_id, offer.recipient, origin,
                      path, model, request_id, offer.challenge.id),
                now=time.time(), max_per_day=pol.max_per_day, max_per_minute=pol.max_per_minute,
                status="settled", reference=cid)
        except BaseException:
            release_all(scopes, v.delta)
            raise
        v.scopes = scopes
        self._reserved[cid] = self._reserved.get(cid, 0) + v.delta

    def _signed(self, v: Voucher, offer: SessionOffer, origin: str, path: str) -> None:
        """The voucher's increase is signed: budget alerts (``Hooks.on_budget``), as for a charge."""
        if v.delta > 0 and self.engine.hooks.on_budget is not None:
            spend = self.engine.spend(origin, path, v.delta, offer.currency, offer.chain_id)
            self.engine.budget_alerts(spend, v.scopes, v.day)

    def accepted(self, v: Voucher | None) -> None:
        """The server accepted the voucher.  Nothing to write: its ledger row was recorded
        ``settled`` (reference: the channel) when it was reserved, since a signed voucher is the
        payee's to claim; what the payee never settles is given back when the channel is finalised."""
        if v is not None:
            v.ledger_id = None

    def refused(self, v: Voucher | None, why: str) -> None:
        """The server refused the voucher.  It is signed and stored as the channel's highest, so
        it may still be accepted later: its reservation stays counted (outcome ``unknown``)."""
        if v is not None and v.ledger_id is not None:
            self.engine.ledger.mark_unknown(v.ledger_id, error=why, now=time.time())
            v.ledger_id = None

    # --- credentials -------------------------------------------------------------------------

    def release(self, v: Voucher | None, why: str) -> None:
        """The voucher can never be used (its channel never came to exist): give its reservation back."""
        if v is not None and v.ledger_id is not None:
            release_all(v.scopes, v.delta)
            self.engine.ledger.release(v.ledger_id, error=why, now=time.time())
            v.ledger_id = None
            cid = v.stored.channel_id
            self._reserved[cid] = max(self._reserved.get(cid, 0) - v.delta, 0)

    @staticmethod
    def credential(challenge: Challenge, payload: dict[str, str]) -> str:
        return format_credential(Credential(challenge=challenge, payload=payload))

    def open_deposit(self, offer: SessionOffer) -> int:
        """The opening deposit for ``offer`` within ``max_deposit``.

        Raises:
            BudgetExceeded: one request may cost more than ``max_deposit``.
        """
        need = offer.amount + self.policy.headroom_for(offer.amount)
        if offer.amount > self.max_deposit:
            raise BudgetExceeded(f"a request may cost {offer.amount}, above the session cap "
                                 f"{self.max_deposit}",
                                 limit="max_deposit", limit_value=self.max_deposit, requested=offer.amount)
        wanted = usd(self.policy.deposit) if self.policy.deposit is not None else offer.suggested_deposit
        return min(max(wanted, need), self.max_deposit)

    def build_open(self, offer: SessionOffer, *, origin: str, path: str, salt: bytes, deposit: int,
                   base_fee: int, now: int, model: str | None = None, request_id: str | None = None
                   ) -> Voucher:
        """Sign the open transaction and the first voucher (for this request's amount); persist first."""
        signer = self.engine.wallet.signer
        cid = compute_channel_id(payer=signer.address, payee=offer.recipient, token=offer.currency, salt=salt,
                                 authorized_signer=ZERO_ADDRESS, escrow=offer.escrow, chain_id=offer.chain_id)
        expires = int(offer.challenge.expires_at.timestamp()) if offer.challenge.expires_at else None
        tx = build_tx(open_calls(offer.escrow, payee=offer.recipient, token=offer.currency, deposit=deposit,
                                 salt=salt), chain_id=offer.chain_id, nonce=0, nonce_key=EXPIRING_NONCE_KEY,
                      valid_before=expiring_valid_before(now, expires), gas_limit=GAS_OPEN,
                      max_fee_per_gas=2 * base_fee + 1, fee_token=self.policy.fee_token)
        cumulative = min(offer.amount + self.policy.headroom_for(offer.amount), deposit)
        channel = PayerChannel(cid, offer.escrow, offer.chain_id, offer.recipient, offer.currency, deposit, 0)
        v = Voucher(StoredChannel(channel, self.wallet_address, origin, path), "", opens=True)
        cumulative = self._reserve_within(v, offer, 0, cumulative, min(offer.amount, deposit), origin, path,
                                          model, request_id)
        try:  # signed only once the budgets and the ledger hold the amount
            raw = sign_and_encode(tx, signer)
            voucher = sign_voucher(signer, VoucherDomain(offer.chain_id, offer.escrow), cid, cumulative)
            v.stored = replace(v.stored, channel=after_voucher(channel, cumulative),
                               signature=voucher.signature.hex())
            v.value = self.credential(offer.challenge, open_payload(raw, voucher))
            self.save(v.stored)
        except BaseException:
            self.release(v, "not signed")
            raise
        self._signed(v, offer, origin, path)
        return v

    def plan(self, stored: StoredChannel, required: int, amount: int) -> tuple[int, int]:
        """(top-up, cumulative) to cover ``required`` for a request of at most ``amount`` (raises
        ``BudgetExceeded`` above the cap).  Already covered: the signed amount again (no new
        voucher); else the sign-ahead headroom more."""
        if required <= stored.channel.signed_cumulative:
            return 0, stored.channel.signed_cumulative
        top = usd(self.policy.top_up) if self.policy.top_up is not None else \
            usd(self.policy.deposit) if self.policy.deposit is not None else 0
        step = plan_payment(stored.channel, required, max_deposit=self.max_deposit,
                            headroom=self.policy.headroom_for(amount), min_top_up=top)
        return step.top_up, step.cumulative

    def build_top_up(self, stored: StoredChannel, offer: SessionOffer, amount: int, *, base_fee: int, now: int
                     ) -> str:
        """The ``topUp`` credential value for ``amount`` more deposit."""
        c = stored.channel
        expires = int(offer.challenge.expires_at.timestamp()) if offer.challenge.expires_at else None
        tx = build_tx(top_up_calls(c.escrow, token=c.token, channel_id=c.channel_id, amount=amount),
                      chain_id=c.chain_id, nonce=0, nonce_key=EXPIRING_NONCE_KEY,
                      valid_before=expiring_valid_before(now, expires), gas_limit=GAS_TOP_UP,
                      max_fee_per_gas=2 * base_fee + 1, fee_token=self.policy.fee_token)
        raw = sign_and_encode(tx, self.engine.wallet.signer)
        return self.credential(offer.challenge, top_up_payload(c.channel_id, raw, amount))

    def topped_up(self, stored: StoredChannel, amount: int) -> StoredChannel:
        """Record a confirmed top-up."""
        new = replace(stored, channel=after_top_up(stored.channel, amount))
        self.save(new)
        return new

    def build_voucher(self, stored: StoredChannel, offer: SessionOffer, cumulative: int, *,
                      origin: str, path: str, model: str | None = None, request_id: str | None = None,
                      required: int | None = None) -> Voucher:
        """A voucher credential for ``cumulative`` (re-sends the last voucher when not higher).

        The increase is reserved in the budgets and the ledger before it is signed; when the
        sign-ahead part does not fit a budget, only ``required`` is signed."""
        c = stored.channel
        if cumulative <= c.signed_cumulative and stored.signature:
            key = (offer.challenge.id, c.channel_id, c.signed_cumulative)
            value = self._resend.get(key)
            if value is None:
                voucher = SignedVoucher(c.channel_id, c.signed_cumulative, bytes.fromhex(stored.signature))
                value = self.credential(offer.challenge, voucher_payload(voucher))
                self._resend = {key: value}  # only the latest: one entry per signature
            return Voucher(stored, value)
        v = Voucher(stored, "")
        floor = c.signed_cumulative if required is None else max(required, c.signed_cumulative)
        cumulative = self._reserve_within(v, offer, c.signed_cumulative, cumulative, floor, origin, path,
                                          model, request_id)
        try:  # signed only once the budgets and the ledger hold the increase
            domain = VoucherDomain(c.chain_id, c.escrow)
            signed = sign_voucher(self.engine.wallet.signer, domain, c.channel_id, cumulative)
            v.stored = replace(stored, channel=after_voucher(c, cumulative), signature=signed.signature.hex())
            v.value = self.credential(offer.challenge, voucher_payload(signed))
            self.save(v.stored)
        except BaseException:
            self.release(v, "not signed")
            raise
        self._signed(v, offer, origin, path)
        return v

    def _reserve_within(self, v: Voucher, offer: SessionOffer, signed: int, cumulative: int, floor: int,
                        origin: str, path: str, model: str | None, request_id: str | None) -> int:
        """Reserve ``cumulative - signed``; when that exceeds a budget, ``floor - signed`` (no
        sign-ahead).  Returns the cumulative amount reserved."""
        v.delta = cumulative - signed
        try:
            self._reserve(v, offer, origin, path, model, request_id)
        except BudgetExceeded:
            if floor >= cumulative or floor <= signed:
                raise
            cumulative, v.delta = floor, floor - signed
            self._reserve(v, offer, origin, path, model, request_id)
        return cumulative

    def build_close(self, stored: StoredChannel, offer: SessionOffer, amount: int) -> str:
        """The ``close`` credential: a voucher for ``amount`` (what the server reported spent)."""
        c = stored.channel
        signed = sign_voucher(self.engine.wallet.signer, VoucherDomain(c.chain_id, c.escrow), c.channel_id,
                              amount)
        return self.credential(offer.challenge, close_payload(signed))

    # --- server answers ----------------------------------------------------------------------

    def on_receipt(self, receipt: Receipt) -> SessionReceipt | None:
        """Record a session receipt (``spent`` as the server reports it)."""
        if receipt.extra.get("intent") != "session":
            return None
        sr = SessionReceipt.from_receipt(receipt)
        with self.lock:
            stored = self.get(sr.channel_id)
            if stored is not None and (sr.spent > stored.spent or sr.accepted_cumulative > stored.accepted):
                # not written through: the next voucher's save (or ``flush`` at close) carries it, and
                # after a crash the server's next receipt tells it again
                self.save(replace(stored, spent=max(sr.spent, stored.spent),
                                  accepted=max(sr.accepted_cumulative, stored.accepted)), durable=False)
            self.receipts.append(sr)
        return sr

    def evict(self, channel_id: str, status: str = "evicted") -> None:
        """Stop using a channel (410 from the server, or closed)."""
        with self.lock:
            cached = self._cache.get(channel_id)
            if cached is not None:
                self._cache[channel_id] = replace(cached, status=status)
            self.store.set_status(channel_id, status, now=time.time())

    def flush(self) -> None:
        """Write what receipts taught this process (spent, accepted) to the store (at close)."""
        with self.lock:
            for cid, cached in list(self._cache.items()):
                row = self.store.get(cid)
                if row is not None and row.status == cached.status and (
                        cached.spent > row.spent or cached.accepted > row.accepted):
                    self.store.save(replace(row, spent=max(cached.spent, row.spent),
                                            accepted=max(cached.accepted, row.accepted)), now=time.time())

    def take_reserved(self, channel_id: str) -> int:
        """What this process reserved on ``channel_id`` (forgotten once taken)."""
        with self.lock:
            return self._reserved.pop(channel_id, 0)

    def required_for(self, stored: StoredChannel, amount: int) -> int:
        """The cumulative amount a request of at most ``amount`` needs on ``stored``."""
        return max(stored.channel.signed_cumulative, stored.spent + amount)

