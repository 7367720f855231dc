"""The sync session transport: the HTTP and chain I/O around ``_session_core.SessionCore``
(the async twin is ``_session_async``), and ``attach_session`` for the clients.

``SessionTransport(core, inner)`` sits *under* the charge transport (``MppTransport``): it
sees every request and answers what concerns sessions itself, so the charge engine only
ever sees the 402s this client does not pay with a session (no session offer, or one the
policies refuse).  Per request:

1. a request already carrying a Payment credential (the charge path) passes through;
2. with a live cached session challenge and an open channel for it, the request goes out at
   once with a voucher credential (no 402 round trip; usually the last voucher again, no
   signing), else unpaid;
3. a 402 with an acceptable session offer: open a channel (first time) or sign a voucher for
   what the request may cost, and resend; a ``session/insufficient-balance`` 402 is answered
   with a voucher for its ``requiredCumulative``; a 410 evicts the channel and starts over;
4. a paid SSE response is filtered (``_sse_filter``): ``payment-need-voucher`` frames are
   answered out of band (a top-up first when the deposit is short, then a voucher, each a
   ``POST`` with an empty body to the same URL), ``payment-receipt`` frames fill the
   response's ``ReceiptBox``; the caller's parser sees only the application's frames.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from typing import Any

from ..errors import ChainError, InsufficientFunds, PaymentRejected
from ..protocol.receipt import Receipt, parse_receipt
from ..tempo import tip20
from ..tempo.session import parse_need_voucher_event
from ..tempo.session.onchain import read_channel
from ._engine import EXT_FIRST_ORIGIN
from ._flow import printable, problem_of
from ._logical import model_of
from ._session_core import SessionCore, Voucher
from ._session_reclaim import Reclaimer, ReclaimStatus, closed_as_said
from ._sse_filter import PaymentEvent, SseFilter
from .channels import StoredChannel
from .policy import Target
from .session import EXT_SESSION_RECEIPT, ReceiptBox, SessionOffer, SessionReceipt

MAX_ROUNDS = 4


def _has_payment(request: Any) -> bool:
    return any(v.strip().lower().startswith("payment") for v in request.headers.get_list("authorization"))


_OWN_AUTH = "mpp_session_own_authorization"


def _with(request: Any, value: str | None) -> Any:
    """``request`` carrying the credential ``value`` (``None``: the caller's own Authorization again).

    Changed in place, not copied (headers and body): the per-request cost of a session payment.
    """
    ext = request.extensions
    own = ext.get(_OWN_AUTH)
    if own is None:
        if value is None:
            return request
        own = ext[_OWN_AUTH] = request.headers.get_list("authorization")
    if "authorization" in request.headers:
        del request.headers["authorization"]
    if value is not None:
        request.headers["authorization"] = value
    elif own:
        request.headers["authorization"] = own[0]
    return request


def _manage_request(mod: Any, url: Any, value: str) -> Any:
    return mod.Request("POST", url, headers={"authorization": value, "content-type": "application/json"},
                       content=b"")


def _receipt_of(headers: Any) -> Receipt | None:
    value = headers.get("payment-receipt")
    if not value:
        return None
    try:
        return parse_receipt(value)
    except Exception:
        return None


def _refusal(status: int, body: bytes) -> tuple[str, dict[str, Any]]:
    problem = problem_of(body)
    if problem is None:
        return f"HTTP {status}", {}
    return (problem.suffix or problem.type), problem.to_dict()


def _reject(what: str, status: int, body: bytes) -> PaymentRejected:
    kind, problem = _refusal(status, body)
    detail = printable(str(problem.get("detail") or kind))
    return PaymentRejected(f"the server refused the session {what}: {detail}", problem=problem, status=status)


def _is_sse(response: Any) -> bool:
    return str(response.headers.get("content-type", "")).startswith("text/event-stream")


class _Common:
    def __init__(self, core: SessionCore, inner: Any, mod: Any) -> None:
        self.core = core
        self.inner = inner
        self.mod = mod

    @staticmethod
    def _target(request: Any) -> Target:
        url = request.url
        return Target(url.scheme, url.host, url.port, url.path, request.extensions.get(EXT_FIRST_ORIGIN))

    def _chain_id(self) -> int | None:
        return self.core.engine.policy.chain_id

    def _pin(self, chain_id: int) -> None:
        engine = self.core.engine
        if engine.policy.chain_id is None and "any_chain" not in engine.policy.unsafe:
            engine.policy = engine.policy.with_chain(chain_id)

    def _rebuild(self, response: Any, body: bytes) -> Any:
        return self.mod.Response(response.status_code, headers=response.headers, content=body,
                                 extensions=response.extensions)

    def _after(self, response: Any, voucher: Voucher | None, box: ReceiptBox) -> None:
        if voucher is not None:
            self.core.accepted(voucher)
        headers, core = response.headers, self.core
        if not headers.get("payment-receipt"):
            return

        def parse() -> SessionReceipt | None:
            receipt = _receipt_of(headers)
            return None if receipt is None else core.on_receipt(receipt)

        if _is_sse(response):
            box.defer(parse)  # the stream's final receipt frame says it all; parsed only if asked first
        else:
            box.receipt = parse()

    def _on_event(self, event: PaymentEvent, box: ReceiptBox) -> None:
        if event.event == "payment-receipt":
            try:
                receipt = Receipt.from_wire_dict(json.loads(event.data))
            except Exception:
                return
            sr = self.core.on_receipt(receipt)
            if sr is not None:
                box.receipt = sr


class SessionTransport(_Common):
    """Sync session transport wrapping ``inner`` (an ``httpx2.BaseTransport``)."""

    reclaimer: Reclaimer | None = None

    def handle_request(self, request: Any) -> Any:
        if _has_payment(request):
            return self.inner.handle_request(request)
        request.read()
        core, target = self.core, self._target(request)
        key = target.origin + target.path
        model, rid = model_of(request.content), request.headers.get("idempotency-key")
        offer = core.cached(key, time.time())
        voucher: Voucher | None = None
        stored = core.channel_for(target.origin, offer) if offer is not None else None
        if offer is not None and stored is not None:
            voucher = self._pay(stored, offer, core.required_for(stored, offer.amount), request.url,
                                target, model, rid)
        retried = False
        for _ in range(MAX_ROUNDS):
            response = self.inner.handle_request(_with(request, None if voucher is None else voucher.value))
            status = response.status_code
            if status not in (402, 410):
                box = ReceiptBox()
                self._after(response, voucher, box)
                return self._deliver(response, box, offer, target, model, rid)
            body = response.read()
            response.close()
            if voucher is not None:
                kind, problem = _refusal(status, body)
                if kind == "session/insufficient-balance" and offer is not None:
                    core.accepted(voucher)  # accepted; only the balance is short of this request
                    required = int(problem.get("requiredCumulative") or 0)
                    fresh = core.get(voucher.stored.channel_id) or voucher.stored
                    voucher = self._pay(fresh, offer, required, request.url, target, model, rid)
                    continue
                if voucher.opens and status == 402:
                    if self._opened_anyway(voucher.stored):
                        core.refused(voucher, kind)
                    else:  # nothing moved: the voucher is worthless, its reservation is given back
                        core.release(voucher, kind)
                        core.evict(voucher.stored.channel_id, "failed")
                    raise _reject("open", status, body)
                core.refused(voucher, kind)
                channel_id, voucher = voucher.stored.channel_id, None
                if status == 410:
                    core.evict(channel_id)
                    continue  # ask again, unpaid: a new channel
                if kind not in ("invalid-challenge", "payment-expired") or retried:
                    raise _reject("voucher", status, body)
                retried = True  # a stale cached challenge: pay again with the fresh one below
            self._pin(self._rpc().chain_id())
            found = core.select(response.headers.multi_items(), target, chain_id=self._rpc().chain_id(),
                                now=int(time.time())) if status == 402 else None
            if found is None:
                return self._rebuild(response, body)
            offer = found
            core.remember(key, offer)
            stored = core.channel_for(target.origin, offer)
            if stored is None:
                voucher = self._open(offer, target, model, rid)
            else:
                voucher = self._pay(stored, offer, core.required_for(stored, offer.amount), request.url,
                                    target,
                                    model, rid)
        raise PaymentRejected("the server kept asking for a session payment; giving up", status=402)

    # --- chain and management --------------------------------------------------------------

    def _rpc(self) -> Any:
        return self.core.engine.payer.rpc  # type: ignore[attr-defined]

    def _open(self, offer: SessionOffer, target: Target, model: str | None, rid: str | None) -> Voucher:
        core = self.core
        deposit = core.open_deposit(offer)
        rpc = self._rpc()
        balance = rpc.balance_of(offer.currency, core.wallet_address)
        if balance < deposit:
            raise InsufficientFunds(f"wallet holds {tip20.to_display(balance)} of token {offer.currency}, "
                                    f"the channel deposit is {tip20.to_display(deposit)}",
                                    token=offer.currency, needed=deposit, available=balance)
        with core.lock:
            return core.build_open(offer, origin=target.origin, path=target.path, salt=os.urandom(32),
                                   deposit=deposit, base_fee=rpc.base_fee(), now=int(time.time()),
                                   model=model, request_id=rid)

    def _opened_anyway(self, stored: StoredChannel) -> bool:
        """After a refused open: whether the channel exists on chain all the same (the deposit is
        locked there; keep it, the server adopts channels it is the payee of)."""
        c = stored.channel
        try:
            return read_channel(self._rpc(), c.escrow, c.channel_id).exists
        except ChainError:
            return True  # unknown: keep it rather than forget a deposit

    def _manage(self, url: Any, value: str) -> tuple[int, Any, bytes]:
        response = self.inner.handle_request(_manage_request(self.mod, url, value))
        try:
            body = response.read()
        finally:
            response.close()
        return response.status_code, response.headers, body

    def _pay(self, stored: StoredChannel, offer: SessionOffer, required: int, url: Any, target: Target,
             model: str | None, rid: str | None) -> Voucher:
        core = self.core
        with core.lock:
            stored = core.get(stored.channel_id) or stored
            top, cumulative = core.plan(stored, required, offer.amount)
            if top or cumulative > stored.channel.signed_cumulative:
                stored = core.get(stored.channel_id, fresh=True) or stored
                top, cumulative = core.plan(stored, required, offer.amount)
            if top:
                value = core.build_top_up(stored, offer, top, base_fee=self._rpc().base_fee(),
                                          now=int(time.time()))
                status, _, body = self._manage(url, value)
                if status >= 300:
                    raise _reject("top-up", status, body)
                stored = core.topped_up(stored, top)
            return core.build_voucher(stored, offer, cumulative, origin=target.origin, path=target.path,
                                      model=model, request_id=rid, required=required)

    def _answer(self, event: PaymentEvent, offer: SessionOffer | None, url: Any, target: Target,
                model: str | None, rid: str | None) -> None:
        need = parse_need_voucher_event(event.data)
        stored = self.core.get(need.channel_id)
        if stored is None or offer is None:
            raise PaymentRejected(f"the server asks for a voucher on unknown channel {need.channel_id}",
                                  status=200)
        voucher = self._pay(stored, offer, need.required_cumulative, url, target, model, rid)
        status, _, body = self._manage(url, voucher.value)
        if status >= 300:
            self.core.refused(voucher, f"HTTP {status}")
            raise _reject("voucher", status, body)
        self.core.accepted(voucher)

    def _deliver(self, response: Any, box: ReceiptBox, offer: SessionOffer | None, target: Target,
                 model: str | None, rid: str | None) -> Any:
        response.extensions[EXT_SESSION_RECEIPT] = box
        if not _is_sse(response) or (box.empty and offer is None):
            return response
        shell = self
        url = self.mod.URL(target.origin + target.path)

        class Filtered(self.mod.SyncByteStream):  # type: ignore[misc, name-defined]
            def __iter__(self) -> Iterator[bytes]:
                filt = SseFilter()
                for chunk in response.stream:
                    out, events = filt.feed(chunk)
                    for event in events:
                        if event.event == "payment-need-voucher":
                            shell._answer(event, offer, url, target, model, rid)
                        else:
                            shell._on_event(event, box)
                    if out:
                        yield out
                rest = filt.flush()
                if rest:
                    yield rest

            def close(self) -> None:
                response.close()

        return self.mod.Response(response.status_code, headers=response.headers, stream=Filtered(),
                                 extensions=response.extensions)

    # --- closing -----------------------------------------------------------------------------

    def close_sessions(self, origin: str | None = None) -> list[SessionReceipt]:
        """Close this wallet's open channels (at ``origin``): the server settles what was spent
        and the escrow refunds the rest.  Returns the close receipts (``tx_hash`` set)."""
        out = []
        for stored in self.core.open_channels(origin):
            sr = self.close_channel(stored.channel_id)
            if sr is not None:
                out.append(sr)
        return out

    def close_channel(self, channel_id: str) -> SessionReceipt | None:
        """Ask the channel's server to close it with a voucher for what it reported spent.

        Returns:
            the close receipt, or ``None`` when the server offers no session any more or answers
            410 (the channel is then evicted: ``reclaim`` it).
        Raises:
            PaymentRejected: the server refused the close.
        """
        core = self.core
        stored = core.get(channel_id.lower(), fresh=True)
        if stored is None or stored.status != "open":
            return None
        url = self.mod.URL(stored.origin + stored.path)
        target = Target(url.scheme, url.host, url.port, url.path)
        offer = core.cached(stored.origin + stored.path, time.time()) or self._fresh_offer(url, target)
        if offer is None:
            return None
        amount = stored.spent
        for _ in range(2):
            status, headers, body = self._manage(url, core.build_close(stored, offer, amount))
            if status < 300:
                receipt = _receipt_of(headers)
                sr = core.on_receipt(receipt) if receipt is not None else None
                self._closed(stored)
                return sr
            _, problem = _refusal(status, body)
            if status == 410:
                core.evict(stored.channel_id)
                return None
            floor = problem.get("spent")
            if isinstance(floor, str) and floor.isdigit() and amount < int(floor) <= \
                    stored.channel.signed_cumulative:
                amount = int(floor)
                continue
            raise _reject("close", status, body)
        return None

    def _closed(self, stored: StoredChannel) -> None:
        """After a cooperative close: record what the escrow paid out (read from the chain)."""
        c = stored.channel
        try:
            state = read_channel(self._rpc(), c.escrow, c.channel_id)
        except ChainError:
            state = None
        closed_as_said(self.core, stored, state)

    # --- forced close (the server is gone or refuses) ----------------------------------------

    def _reclaimer(self) -> Reclaimer:
        if self.reclaimer is None:
            self.reclaimer = Reclaimer(self.core, self._rpc())
        return self.reclaimer

    def request_close(self, channel_id: str) -> ReclaimStatus:
        """Start a forced close; see :meth:`_session_reclaim.Reclaimer.request_close`."""
        return self._reclaimer().request_close(channel_id)

    def withdraw(self, channel_id: str) -> ReclaimStatus:
        """Reclaim the deposit after the grace period; see :meth:`_session_reclaim.Reclaimer.withdraw`."""
        return self._reclaimer().withdraw(channel_id)

    def reclaim(self, channel_id: str | None = None) -> list[ReclaimStatus]:
        """Whichever forced-close step is due; see :meth:`_session_reclaim.Reclaimer.reclaim`."""
        return self._reclaimer().reclaim(channel_id)

    def _fresh_offer(self, url: Any, target: Target) -> SessionOffer | None:
        response = self.inner.handle_request(self.mod.Request("HEAD", url))
        response.read()
        response.close()
        if response.status_code != 402:
            return None
        chain_id = self._rpc().chain_id()
        self._pin(chain_id)
        return self.core.select(response.headers.multi_items(), target, chain_id=chain_id,
                                now=int(time.time()))

    def close(self) -> None:
        self.core.flush()
        self.inner.close()


def attach_session(client: Any, policy: Any) -> SessionCore:
    """Turn the session intent on for an ``MppClient``/``AsyncMppClient`` (httpx2 or httpx).

    Every payment transport of ``client`` gets a session transport underneath it; the charge
    path stays as it was for offers this client does not pay with a session.

    Returns:
        The ``SessionCore`` (channels, receipts); also ``client.session``.
    """
    import httpx2

    mod: Any = httpx2
    if not isinstance(client, (httpx2.Client, httpx2.AsyncClient)):
        import httpx

        mod = httpx
    from ._session_async import AsyncSessionTransport

    core = SessionCore(client._engine, policy)
    sync = isinstance(client, mod.Client)
    cls: Any = SessionTransport if sync else AsyncSessionTransport
    shells = []
    for transport in [client._transport, *client._mounts.values()]:
        if transport is not None and hasattr(transport, "inner"):
            transport.inner = cls(core, transport.inner, mod)
            shells.append(transport.inner)
    client.session = core
    client.session_transport = shells[0]
    return core
