"""The async session transport: ``_session_shell.SessionTransport`` over ``AsyncBaseTransport``.

Same steps and rules as the sync transport (see ``_session_shell``); only the I/O is awaited,
and signing is serialised by an ``asyncio.Lock`` instead of the core's thread lock.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator
from typing import Any

from ..errors import ChainError, InsufficientFunds, PaymentRejected
from ..tempo import tip20
from ..tempo.session import parse_need_voucher_event
from ..tempo.session.onchain import read_channel_async
from ._logical import model_of
from ._session_core import SessionCore, Voucher
from ._session_reclaim import AsyncReclaimer, ReclaimStatus, closed_as_said
from ._session_shell import (
    MAX_ROUNDS,
    _Common,
    _has_payment,
    _is_sse,
    _manage_request,
    _receipt_of,
    _refusal,
    _reject,
    _with,
)
from ._sse_filter import PaymentEvent, SseFilter
from .channels import StoredChannel
from .policy import Target
from .session import EXT_SESSION_RECEIPT, ReceiptBox, SessionOffer, SessionReceipt


class AsyncSessionTransport(_Common):
    """Async twin of :class:`SessionTransport` (an ``httpx2.AsyncBaseTransport`` inside)."""

    def __init__(self, core: SessionCore, inner: Any, mod: Any) -> None:
        super().__init__(core, inner, mod)
        self._lock = asyncio.Lock()
        self.reclaimer: AsyncReclaimer | None = None

    async def handle_async_request(self, request: Any) -> Any:
        if _has_payment(request):
            return await self.inner.handle_async_request(request)
        await request.aread()
        core, target = self.core, self._target(request)
        key = target.origin + target.path
        model, rid = model_of(request.content), request.headers.get("idempotency-key")
        offer = core.cached(key, time.time())
        voucher: Voucher | None = None
        stored = core.channel_for(target.origin, offer) if offer is not None else None
        if offer is not None and stored is not None:
            voucher = await self._pay(stored, offer, core.required_for(stored, offer.amount), request.url,
                                      target, model, rid)
        retried = False
        for _ in range(MAX_ROUNDS):
            response = await self.inner.handle_async_request(
                _with(request, None if voucher is None else voucher.value))
            status = response.status_code
            if status not in (402, 410):
                box = ReceiptBox()
                self._after(response, voucher, box)
                return self._deliver(response, box, offer, target, model, rid)
            body = await response.aread()
            await response.aclose()
            if voucher is not None:
                kind, problem = _refusal(status, body)
                if kind == "session/insufficient-balance" and offer is not None:
                    core.accepted(voucher)  # accepted; only the balance is short of this request
                    required = int(problem.get("requiredCumulative") or 0)
                    fresh = core.get(voucher.stored.channel_id) or voucher.stored
                    voucher = await self._pay(fresh, offer, required, request.url, target, model, rid)
                    continue
                if voucher.opens and status == 402:
                    if await self._opened_anyway(voucher.stored):
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
            chain_id = await self._rpc().chain_id()
            self._pin(chain_id)
            found = core.select(response.headers.multi_items(), target, chain_id=chain_id,
                                now=int(time.time())) if status == 402 else None
            if found is None:
                return self._rebuild(response, body)
            offer = found
            core.remember(key, offer)
            stored = core.channel_for(target.origin, offer)
            if stored is None:
                voucher = await self._open(offer, target, model, rid)
            else:
                voucher = await self._pay(stored, offer, core.required_for(stored, offer.amount), request.url,
                                          target, model, rid)
        raise PaymentRejected("the server kept asking for a session payment; giving up", status=402)

    def _rpc(self) -> Any:
        return self.core.engine.payer.rpc  # type: ignore[attr-defined]

    async def _open(self, offer: SessionOffer, target: Target, model: str | None, rid: str | None) -> Voucher:
        core = self.core
        deposit = core.open_deposit(offer)
        rpc = self._rpc()
        balance = await rpc.balance_of(offer.currency, core.wallet_address)
        if balance < deposit:
            raise InsufficientFunds(f"wallet holds {tip20.to_display(balance)} of token {offer.currency}, "
                                    f"the channel deposit is {tip20.to_display(deposit)}",
                                    token=offer.currency, needed=deposit, available=balance)
        base_fee = await rpc.base_fee()
        async with self._lock:
            return core.build_open(offer, origin=target.origin, path=target.path, salt=os.urandom(32),
                                   deposit=deposit, base_fee=base_fee, now=int(time.time()), model=model,
                                   request_id=rid)

    async def _opened_anyway(self, stored: StoredChannel) -> bool:
        """After a refused open: whether the channel exists on chain all the same (the deposit is
        locked there; keep it, the server adopts channels it is the payee of)."""
        c = stored.channel
        try:
            return (await read_channel_async(self._rpc(), c.escrow, c.channel_id)).exists
        except ChainError:
            return True  # unknown: keep it rather than forget a deposit

    async def _manage(self, url: Any, value: str) -> tuple[int, Any, bytes]:
        response = await self.inner.handle_async_request(_manage_request(self.mod, url, value))
        try:
            body = await response.aread()
        finally:
            await response.aclose()
        return response.status_code, response.headers, body

    async def _pay(self, stored: StoredChannel, offer: SessionOffer, required: int, url: Any, target: Target,
                   model: str | None, rid: str | None) -> Voucher:
        core = self.core
        async with self._lock:
            stored = core.get(stored.channel_id) or stored
            top, cumulative = core.plan(stored, required, offer.amount)
            if top or cumulative > stored.channel.signed_cumulative:
                stored = core.get(stored.channel_id, fresh=True) or stored
                top, cumulative = core.plan(stored, required, offer.amount)
            if top:
                value = core.build_top_up(stored, offer, top, base_fee=await self._rpc().base_fee(),
                                          now=int(time.time()))
                status, _, body = await self._manage(url, value)
                if status >= 300:
                    raise _reject("top-up", status, body)
                stored = core.topped_up(stored, top)
            return core.build_voucher(stored, offer, cumulative, origin=target.origin, path=target.path,
                                      model=model, request_id=rid, required=required)

    async def _answer(self, event: PaymentEvent, offer: SessionOffer | None, url: Any, target: Target,
                      model: str | None, rid: str | None) -> None:
        need = parse_need_voucher_event(event.data)
        stored = self.core.get(need.channel_id)
        if stored is None or offer is None:
            raise PaymentRejected(f"the server asks for a voucher on unknown channel {need.channel_id}",
                                  status=200)
        voucher = await self._pay(stored, offer, need.required_cumulative, url, target, model, rid)
        status, _, body = await self._manage(url, voucher.value)
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

        class Filtered(self.mod.AsyncByteStream):  # type: ignore[misc, name-defined]
            async def __aiter__(self) -> AsyncIterator[bytes]:
                filt = SseFilter()
                async for chunk in response.stream:
                    out, events = filt.feed(chunk)
                    for event in events:
                        if event.event == "payment-need-voucher":
                            await shell._answer(event, offer, url, target, model, rid)
                        else:
                            shell._on_event(event, box)
                    if out:
                        yield out
                rest = filt.flush()
                if rest:
                    yield rest

            async def aclose(self) -> None:
                await response.aclose()

        return self.mod.Response(response.status_code, headers=response.headers, stream=Filtered(),
                                 extensions=response.extensions)

    async def close_sessions(self, origin: str | None = None) -> list[SessionReceipt]:
        """See :meth:`SessionTransport.close_sessions`."""
        out = []
        for stored in self.core.open_channels(origin):
            sr = await self.close_channel(stored.channel_id)
            if sr is not None:
                out.append(sr)
        return out

    async def close_channel(self, channel_id: str) -> SessionReceipt | None:
        """See :meth:`SessionTransport.close_channel`."""
        core = self.core
        stored = core.get(channel_id.lower(), fresh=True)
        if stored is None or stored.status != "open":
            return None
        url = self.mod.URL(stored.origin + stored.path)
        target = Target(url.scheme, url.host, url.port, url.path)
        offer = core.cached(stored.origin + stored.path, time.time()) or await self._fresh_offer(url, target)
        if offer is None:
            return None
        amount = stored.spent
        for _ in range(2):
            status, headers, body = await self._manage(url, core.build_close(stored, offer, amount))
            if status < 300:
                receipt = _receipt_of(headers)
                sr = core.on_receipt(receipt) if receipt is not None else None
                c = stored.channel
                try:
                    state = await read_channel_async(self._rpc(), c.escrow, c.channel_id)
                except ChainError:
                    state = None
                closed_as_said(core, stored, state)
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

    def _reclaimer(self) -> AsyncReclaimer:
        if self.reclaimer is None:
            self.reclaimer = AsyncReclaimer(self.core, self._rpc())
        return self.reclaimer

    async def request_close(self, channel_id: str) -> ReclaimStatus:
        """See :meth:`SessionTransport.request_close`."""
        return await self._reclaimer().request_close(channel_id)

    async def withdraw(self, channel_id: str) -> ReclaimStatus:
        """See :meth:`SessionTransport.withdraw`."""
        return await self._reclaimer().withdraw(channel_id)

    async def reclaim(self, channel_id: str | None = None) -> list[ReclaimStatus]:
        """See :meth:`SessionTransport.reclaim`."""
        return await self._reclaimer().reclaim(channel_id)

    async def _fresh_offer(self, url: Any, target: Target) -> SessionOffer | None:
        response = await self.inner.handle_async_request(self.mod.Request("HEAD", url))
        await response.aread()
        await response.aclose()
        if response.status_code != 402:
            return None
        chain_id = await self._rpc().chain_id()
        self._pin(chain_id)
        return self.core.select(response.headers.multi_items(), target, chain_id=chain_id,
                                now=int(time.time()))

    async def aclose(self) -> None:
        self.core.flush()
        await self.inner.aclose()
