"""Session-paid ``/v1/chat/completions``: the endpoint wrapper, SSE metering, and ``enable_sessions``.

``enable_sessions(app, settings)`` turns the session intent on for an app built by
``server.app.create_app``: every 402 of ``/v1/chat/completions`` then carries a session
challenge next to the charge challenges, and a request whose ``Authorization: Payment``
credential is a session credential is served here; any other request goes to the charge
route unchanged.

What flows where (mpp-protocol.md §4.8):

* a content request (a JSON body) with an ``open`` or ``voucher`` credential: the voucher is
  accepted, the request's quote is held from the channel, the upstream is called; the
  response carries the session ``Payment-Receipt``; the exact usage is charged when it ends
  (JSON: the receipt header already shows it; SSE: a final ``event: payment-receipt`` frame
  just before ``data: [DONE]``);
* a stream whose channel is short: 200, then ``event: payment-need-voucher`` before any
  content; the stream resumes once an out-of-band voucher makes room, or ends with an error
  frame after ``voucher_wait`` seconds; a JSON request that is short gets a 402
  ``session/insufficient-balance`` with ``requiredCumulative``;
* a management request (``HEAD``, or ``POST`` with an empty body) with a ``voucher``,
  ``topUp``, ``close`` (or ``open``) credential: 204 with the receipt, no upstream call.
"""

from __future__ import annotations

import contextlib
import json
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import replace
from typing import Any

import anyio
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from ...convert.request import chat_request_to_messages
from ...convert.sse import DONE_FRAME
from ...errors import (
    BadRequest,
    ConversionError,
    InsufficientBalance,
    MalformedCredential,
    MalformedCredentialProblem,
    PaymentRequired,
    VerificationError,
)
from ...protocol.challenge import format_challenge
from ...protocol.credential import Credential, parse_credential
from ...protocol.receipt import format_receipt
from ...tempo.rpc import AsyncRpcClient
from ..payments import Paid
from ..pricing import Usage, count_parts, estimate_prompt_tokens, quote, usage_cost
from ..routes import access_log, parse_object, read_body, services
from ..serving import SSE_HEADERS, _note_usage, guarded, serve_chat
from ..upstreams.base import Upstream, UpstreamResponse
from .book import ChannelRecord, open_book
from .gate import SessionGate
from .settings import SessionSettings

PATH = "/v1/chat/completions"
ROUTE = f"POST {PATH}"
Endpoint = Callable[[Request], Awaitable[Response]]


def sse_frame(event: str, data: Any) -> bytes:
    """One SSE frame ``event: <event>`` with compact JSON ``data``."""
    return f"event: {event}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n".encode()


def _gate(request: Request) -> SessionGate | None:
    gate: SessionGate | None = getattr(request.app.state, "sessions", None)
    return gate


def session_credential(request: Request, parsed: dict[str, Credential] | None = None) -> Credential | None:
    """The request's session credential, or ``None`` when it carries none (or another kind).

    Args:
        request: the request.
        parsed: header value -> parsed session credential, kept by the caller (a session client
            sends the same value again and again; parsing is pure, so an exact match is reused).
    Raises:
        MalformedCredentialProblem: a single Payment credential that does not parse.
    """
    values = [v for v in request.headers.getlist("authorization") if v.strip().lower().startswith("payment")]
    if len(values) != 1:
        return None
    value = values[0]
    known = parsed.get(value) if parsed is not None else None
    if known is not None:
        return known
    try:
        credential = parse_credential(value)
    except MalformedCredential as exc:
        raise MalformedCredentialProblem(str(exc)) from None
    if credential.challenge.intent != "session":
        return None
    if parsed is not None:
        if len(parsed) >= 1024:
            parsed.clear()
        parsed[value] = credential
    return credential


def _need_voucher(exc: InsufficientBalance) -> dict[str, str]:
    """The ``payment-need-voucher`` data for a refused hold."""
    return {name: str(exc.extra[name]) for name in ("channelId", "requiredCumulative", "acceptedCumulative",
                                                    "deposit")}


class UsageTap:
    """An upstream wrapper that keeps the latest usage numbers of a streamed answer, so the exact
    cost is known when the last frame is translated (before the serving code records it)."""

    def __init__(self, inner: Upstream) -> None:
        self.inner = inner
        self.usage: dict[str, Any] = {}

    async def send(self, body: Mapping[str, Any], *, stream: bool, headers: Mapping[str, str] | None = None
                   ) -> UpstreamResponse:
        up = await self.inner.send(body, stream=stream, headers=headers)
        if up.stream is not None:
            up.stream = self._tap(up.stream)
        return up

    async def _tap(self, chunks: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
        pending = b""
        async for chunk in chunks:
            if not pending and chunk.endswith(b"\n\n") and b'"usage"' not in chunk:
                yield chunk  # whole events, none with usage numbers: nothing to read
                continue
            work = (pending + chunk).replace(b"\r\n", b"\n")
            *events, pending = work.split(b"\n\n")
            for raw in events:
                if b'"usage"' in raw:
                    self._read(raw)
            yield chunk

    def _read(self, raw: bytes) -> None:
        name, data = "", []
        for line in raw.decode("utf-8", "replace").split("\n"):
            if line.startswith("event:"):
                name = line[6:].strip()
            elif line.startswith("data:"):
                data.append(line[5:].removeprefix(" "))
        _note_usage(name, "\n".join(data), self.usage)

    async def aclose(self) -> None:
        return None


class _Metered:
    """Charges one served request when its response ends (hold -> exact usage)."""

    def __init__(self, gate: SessionGate, channel_id: str, request_id: str, challenge_id: str, entry: Any,
                 cost_now: Callable[[], int]) -> None:
        self.gate, self.channel_id, self.request_id = gate, channel_id, request_id
        self.challenge_id, self.entry, self.cost_now = challenge_id, entry, cost_now
        self.done: ChannelRecord | None = None
        self.cost = 0

    async def finish(self, cost: int) -> ChannelRecord:
        if self.done is None:
            self.cost = cost
            with anyio.CancelScope(shield=True):
                self.done = await self.gate.finish(self.channel_id, self.request_id, cost)
        assert self.done is not None
        return self.done

    def receipt_frame(self, record: ChannelRecord) -> bytes:
        receipt = self.gate.receipt(record, self.challenge_id, cost=self.cost)
        return sse_frame("payment-receipt", receipt.to_wire_dict())

    async def stream(self, inner: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
        """Pass ``inner`` through; charge the exact usage as soon as the last frame is known; the
        receipt frame goes just before ``data: [DONE]``."""
        try:
            async for chunk in inner:
                if self.done is None and chunk.endswith(DONE_FRAME):
                    head = chunk[: -len(DONE_FRAME)]
                    if head:
                        yield head
                    record = await self.finish(self.cost_now())
                    yield self.receipt_frame(record) + DONE_FRAME
                elif chunk:
                    yield chunk
        except BaseException:
            with anyio.CancelScope(shield=True):
                aclose = getattr(inner, "aclose", None)
                if aclose is not None:
                    await aclose()
                await self.finish(int(self.entry.cost or 0))
            raise
        if self.done is None:  # no [DONE] (the stream broke off): charge what the usage row says
            record = await self.finish(int(self.entry.cost or 0))
            yield self.receipt_frame(record)


def _error_frame(message: str, code: str) -> bytes:
    body = {"error": {"message": message, "type": "payment_error", "param": None, "code": code}}
    return f"data: {json.dumps(body, separators=(',', ':'))}\n\n".encode()


async def _serve_paid(request: Request, gate: SessionGate, cred: Credential, body: bytes) -> Response:
    svc, entry = services(request), access_log(request)
    payload = parse_object(body)
    mreq = chat_request_to_messages(payload, options=svc.convert_options, now=svc.clock())
    entry.model, entry.stream = mreq.model.id, mreq.stream
    messages, images = count_parts(payload.get("messages"))
    price = quote(svc.prices, mreq.model.id, max_tokens=int(mreq.body["max_tokens"]),
                  prompt_tokens=estimate_prompt_tokens(body, messages=messages, images=images))
    request.state.session_quote = price.amount
    request.state.terms = svc.gate.terms(ROUTE, body, price)
    rid = secrets.token_hex(8)
    grant = await gate.authorize(cred, ROUTE, hold=(rid, price.amount))
    if grant.action == "close":
        raise BadRequest("a close credential ends the channel; send it without a request body", status=400,
                         code="session_closed")
    cid = grant.channel_id
    entry.payer, entry.reference, entry.outcome = grant.payer, cid, "paid"
    tap = UsageTap(svc.upstream)
    model = mreq.model.id

    def cost_now() -> int:
        try:
            return int(usage_cost(svc.prices, model, Usage.from_anthropic(tap.usage)))
        except ConversionError:
            return 0

    metered = _Metered(gate, cid, rid, grant.challenge_id, entry, cost_now)
    need: dict[str, str] | None = None
    record = grant.record
    if not grant.held:
        try:
            record = await gate.hold(cid, rid, price.amount)
        except InsufficientBalance as exc:
            if not mreq.stream:
                raise
            need = _need_voucher(exc)
    paid = Paid(challenge_id=grant.challenge_id, amount=0, currency=grant.currency, payer=grant.payer,
                reference=cid, receipt=gate.receipt(record, grant.challenge_id))

    tapped = replace(svc, upstream=tap)

    async def serve() -> Response:
        return await guarded(tapped, paid, entry, model, anthropic=False,
                             serve=lambda: serve_chat(tapped, mreq, paid, entry))

    if need is not None:
        headers = {"payment-receipt": paid.receipt_header, "cache-control": "private", "payment-session": cid,
                   **SSE_HEADERS}
        return StreamingResponse(_after_voucher(gate, metered, need, price.amount, serve), headers=headers)
    try:
        response = await serve()
    except BaseException:
        await metered.finish(0)
        raise
    if isinstance(response, StreamingResponse):
        response.body_iterator = metered.stream(response.body_iterator)  # type: ignore[arg-type]
        response.headers["payment-session"] = cid
        return response
    ok = 200 <= response.status_code < 300
    record = await metered.finish(int(entry.cost or 0) if ok else 0)
    if ok:
        receipt = gate.receipt(record, grant.challenge_id, cost=metered.cost)
        response.headers["payment-receipt"] = format_receipt(receipt)
        response.headers["payment-session"] = cid
    return response


async def _after_voucher(gate: SessionGate, metered: _Metered, need: dict[str, str], amount: int,
                         serve: Callable[[], Awaitable[Response]]) -> AsyncIterator[bytes]:
    yield sse_frame("payment-need-voucher", need)
    record = await gate.wait_and_hold(metered.channel_id, metered.request_id, amount,
                                      gate.settings.voucher_wait)
    if record is None:
        yield _error_frame(f"no voucher for {need['requiredCumulative']} arrived in time; "
                           "nothing was charged",
                           "insufficient_balance") + DONE_FRAME
        return
    try:
        response = await serve()
    except BaseException:
        await metered.finish(0)
        raise
    if isinstance(response, StreamingResponse):
        async for chunk in metered.stream(response.body_iterator):  # type: ignore[arg-type]
            yield chunk
        return
    await metered.finish(0)
    body = bytes(response.body)
    yield b"data: " + body + b"\n\n" + DONE_FRAME


async def _manage(request: Request, gate: SessionGate, cred: Credential) -> Response:
    entry = access_log(request)
    grant = await gate.authorize(cred, ROUTE)
    entry.outcome, entry.payer, entry.reference = f"session_{grant.action}", grant.payer, grant.channel_id
    receipt = gate.receipt(grant.record, grant.challenge_id, tx_hash=grant.tx_hash)
    headers = {"payment-receipt": format_receipt(receipt), "cache-control": "private",
               "payment-session": grant.channel_id}
    return Response(status_code=204, headers=headers)


def session_endpoint(charge_endpoint: Endpoint) -> Endpoint:
    """Wrap the charge endpoint of ``/v1/chat/completions``: session credentials are served here."""

    async def endpoint(request: Request) -> Response:
        gate = _gate(request)
        cred = session_credential(request, gate.parsed) if gate is not None else None
        if gate is None or cred is None:
            if request.method == "HEAD":
                raise PaymentRequired("send a session credential (voucher, topUp or close) to manage a "
                                      "channel")
            return await charge_endpoint(request)
        body = b"" if request.method == "HEAD" else await read_body(request,
                                                                    services(request).config.max_body_bytes)
        if not body.strip():
            return await _manage(request, gate, cred)
        return await _serve_paid(request, gate, cred, body)

    return endpoint


def _with_session_offers(handler: Callable[[Request, Exception], Awaitable[Response]]
                         ) -> Callable[[Request, Exception], Awaitable[Response]]:
    async def on_verification(request: Request, exc: Exception) -> Response:
        response = await handler(request, exc)
        gate = _gate(request)
        if gate is None or response.status_code != 402 or request.url.path != PATH:
            return response
        amount = getattr(request.state, "session_quote", None)
        terms = getattr(request.state, "terms", None)
        if amount is None:
            amount = int(terms.requests[0]["amount"]) if terms is not None else 0
        description = terms.description if terms is not None else None
        for challenge in gate.offers(ROUTE, int(amount), description):
            response.raw_headers.append((b"www-authenticate", format_challenge(challenge).encode("latin-1")))
        return response

    return on_verification


def enable_sessions(app: Starlette, settings: SessionSettings, *,
                    rpc: AsyncRpcClient | None = None) -> Starlette:
    """Offer the session intent on ``/v1/chat/completions`` of an app from ``create_app``.

    Args:
        app: the app (not started yet).
        settings: the session settings (payee key, escrow, deposits, settlement schedule).
        rpc: a JSON-RPC client to use (not closed); default one for ``config.rpc_url``.
    Returns:
        ``app``, changed in place.
    """
    for i, route in enumerate(app.router.routes):
        if isinstance(route, Route) and route.path == PATH:
            app.router.routes[i] = Route(PATH, session_endpoint(route.endpoint), methods=["POST", "HEAD"])
    handlers = app.exception_handlers
    handlers[VerificationError] = _with_session_offers(handlers[VerificationError])
    inner_lifespan = app.router.lifespan_context

    @contextlib.asynccontextmanager
    async def lifespan(a: Starlette) -> AsyncIterator[Any]:
        async with inner_lifespan(a) as state, contextlib.AsyncExitStack() as stack:
            svc = a.state.services
            chain = rpc
            if chain is None:
                chain = AsyncRpcClient(svc.config.rpc_url)
                stack.push_async_callback(chain.aclose)
            book = open_book(svc.store)
            stack.push_async_callback(book.close)
            gate = SessionGate(svc.config, settings, book, svc.store, chain, clock=svc.clock,
                               nonce=lambda: secrets.token_urlsafe(12))
            stack.push_async_callback(gate.aclose)
            a.state.sessions = gate
            yield state

    app.router.lifespan_context = lifespan
    return app
