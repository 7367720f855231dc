"""Serving a content request paid with a session credential, on either paid route.

``serve_session_paid(request, gate, credential, body, route)``: validate and quote the body as
the charge route does (OpenAI ``/v1/chat/completions`` or native Anthropic ``/v1/messages``),
accept the voucher and hold the quote in one book update, call the upstream through the same
serving code as the charge path, then charge the exact usage (``stream.Metered``).

``Idempotency-Key`` (draft §1.10): after the credential is verified, the key is scoped by the
channel's payer (``<payer>:<key>``, the charge path's scope: a retry finds the stored answer
whichever intent paid it) and fingerprinted with the route and body.  A stored answer is
replayed (``idempotent-replayed: true``) with the hold released: no second debit, no upstream
call; another body is a 422, a request still in flight a 409.  What is stored is the answer
as sent, final receipt included (SSE: the frames after any ``payment-need-voucher``), written
just after it went out (``Meter.after_response``; a retry in this process waits for it); an
answer that charged nothing (upstream failure) is not stored, so a retry runs again.
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, replace

import anyio
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from ...convert.request import chat_request_to_messages
from ...convert.sse import DONE_FRAME
from ...errors import BadRequest, ChannelClosing, ChannelFinalized, ConversionError, InsufficientBalance
from ...protocol.credential import Credential
from ...protocol.receipt import format_receipt
from ..payments import Paid, Replayed
from ..pricing import Quote, Usage, count_parts, estimate_prompt_tokens, quote, usage_cost
from ..routes import _messages_request, _replay, access_log, parse_object, scope_of, services
from ..serving import SSE_HEADERS, Services, guarded, serve_chat, serve_messages
from ..stores.base import IdemState, StoredResponse, request_fingerprint
from .gate import SessionGate, SessionGrant
from .stream import Metered, UsageTap, error_frame, sse_frame

MESSAGES_PATH = "/v1/messages"


@dataclass(frozen=True, slots=True)
class _Parsed:
    """A content request, validated before payment."""

    model: str
    stream: bool
    anthropic: bool
    price: Quote
    serve: Callable[[Services, Paid], Awaitable[Response]]


def _parse(request: Request, svc: Services, body: bytes) -> _Parsed:
    """Validate and quote ``body`` for the request's route (4xx before any payment)."""
    entry = access_log(request)
    payload = parse_object(body)
    messages, images = count_parts(payload.get("messages"))
    prompt = estimate_prompt_tokens(body, messages=messages, images=images)
    if request.url.path == MESSAGES_PATH:
        model, max_tokens, stream = _messages_request(payload)
        price = quote(svc.prices, model, max_tokens=max_tokens, prompt_tokens=prompt)
        return _Parsed(model, stream, True, price,
                       lambda s, paid: serve_messages(s, payload, model, stream, paid, entry))
    mreq = chat_request_to_messages(payload, options=svc.convert_options, now=svc.clock())
    price = quote(svc.prices, mreq.model.id, max_tokens=int(mreq.body["max_tokens"]), prompt_tokens=prompt)
    return _Parsed(mreq.model.id, mreq.stream, False, price, lambda s, paid: serve_chat(s, mreq, paid, entry))


def need_voucher(exc: InsufficientBalance) -> dict[str, str]:
    """The ``payment-need-voucher`` data for a refused hold."""
    return {name: str(exc.extra[name]) for name in ("channelId", "requiredCumulative", "acceptedCumulative",
                                                    "deposit")}


class _Idem:
    """The request's ``Idempotency-Key`` entry (``key`` ``None``: no header)."""

    def __init__(self, svc: Services, gate: SessionGate, key: str | None) -> None:
        self.svc, self.gate, self.key = svc, gate, key

    def complete(self, status: int, headers: list[tuple[str, str]], body: bytes) -> None:
        """Store the answer once it has gone out (a retry meanwhile gets a 409 and tries again)."""
        if self.key is not None:
            stored = StoredResponse(status, tuple(headers), body)
            self.gate.after_response(self.svc.store.idem_complete(self.key, stored))

    async def abort(self) -> None:
        if self.key is not None:
            with anyio.CancelScope(shield=True):
                await self.svc.store.idem_abort(self.key)


async def _begin_idem(request: Request, svc: Services, gate: SessionGate, grant: SessionGrant, rid: str,
                      body: bytes) -> _Idem | Response:
    """Look up the request's ``Idempotency-Key``: a replay ``Response``, or the reserved entry.

    Raises:
        BadRequest: 422 (the key was used with another body), 409 (still in flight).
    """
    header = request.headers.get("idempotency-key")
    if header is None:
        return _Idem(svc, gate, None)
    payer = grant.payer.lower()
    key = f"{payer}:{header}"
    fingerprint, ttl = request_fingerprint(scope_of(request), body), float(svc.config.idempotency_ttl)
    found = await svc.store.idem_begin(key, fingerprint, ttl_s=ttl)
    if found.state is IdemState.IN_FLIGHT and await gate.drain_after():  # its answer may be being stored
        found = await svc.store.idem_begin(key, fingerprint, ttl_s=ttl)
    if found.state is IdemState.NEW:
        return _Idem(svc, gate, key)
    await gate.finish(grant.channel_id, rid, 0)  # release the hold: nothing is served or charged
    if found.state is IdemState.COMPLETED and found.response is not None:
        return _replay(Replayed(found.response, payer), access_log(request))
    if found.state is IdemState.CONFLICT:
        raise BadRequest("Idempotency-Key was already used with a different request body", status=422,
                         code="idempotency_key_reused")
    raise BadRequest("a request with this Idempotency-Key is still in progress; retry later", status=409,
                     code="idempotency_in_progress", headers={"retry-after": "1"})


async def serve_session_paid(request: Request, gate: SessionGate, cred: Credential, body: bytes, route: str
                             ) -> Response:
    """Serve a content request paid by the session credential ``cred`` (see the module docstring).

    Raises:
        BadRequest / ConversionError: the body is invalid (before any payment), idempotency 422/409.
        VerificationError: the credential is refused; ``InsufficientBalance`` for a JSON request
            the channel cannot cover (a stream waits for a voucher instead).
    """
    svc, entry = services(request), access_log(request)
    parsed = _parse(request, svc, body)
    entry.model, entry.stream = parsed.model, parsed.stream
    price = parsed.price
    request.state.session_quote = price.amount
    request.state.terms = svc.gate.terms(route, body, price)
    rid = secrets.token_hex(8)
    grant = await gate.authorize(cred, route, hold=(rid, price.amount))
    if grant.action == "close":
        raise BadRequest("a close credential ends the channel; send it without a request body", status=400,
                         code="session_closed")
    try:
        begun = await _begin_idem(request, svc, gate, grant, rid, body)
    except BaseException:  # 422, 409 or a failing store (503): the hold is released (a no-op if it was)
        with anyio.CancelScope(shield=True):
            await gate.finish(grant.channel_id, rid, 0)
        raise
    if isinstance(begun, Response):
        return begun
    try:
        return await _serve(request, svc, gate, grant, parsed, price.amount, rid, begun)
    except BaseException:
        await begun.abort()
        raise


async def _serve(request: Request, svc: Services, gate: SessionGate, grant: SessionGrant, parsed: _Parsed,
                 amount: int, rid: str, idem: _Idem) -> Response:
    entry = access_log(request)
    cid = grant.channel_id
    entry.payer, entry.reference, entry.outcome = grant.payer, cid, "paid"
    tap = UsageTap(svc.upstream)
    model = parsed.model

    def cost_now() -> int:
        try:
            return int(usage_cost(svc.prices, model, Usage.from_anthropic(tap.usage)))
        except ConversionError:
            return 0

    stopped = (lambda: tap.stopped) if parsed.anthropic else None
    metered = Metered(gate, cid, rid, grant.challenge_id, entry, cost_now, stopped)
    need: dict[str, str] | None = None
    record = grant.record
    if not grant.held:
        try:
            record = await gate.hold(cid, rid, amount)
        except InsufficientBalance as exc:
            if not parsed.stream:
                raise
            need = need_voucher(exc)
    paid = Paid(challenge_id=grant.challenge_id, amount=0, currency=grant.currency, payer=grant.payer,
                reference=cid, receipt=gate.receipt(record, grant.challenge_id))
    tapped = replace(svc, upstream=tap)

    async def serve() -> Response:
        return await guarded(tapped, paid, entry, model, anthropic=parsed.anthropic,
                             serve=lambda: parsed.serve(tapped, paid))

    if need is not None:
        headers = {"payment-receipt": paid.receipt_header, "cache-control": "private", "payment-session": cid,
                   **SSE_HEADERS}
        body = _after_voucher(gate, metered, need, amount, serve, parsed.anthropic, idem,
                              list(headers.items()))
        return StreamingResponse(body, headers=headers)
    try:
        response = await serve()
    except BaseException:
        await metered.finish(0)
        raise
    if isinstance(response, StreamingResponse):
        response.headers["payment-session"] = cid
        chunks = metered.stream(response.body_iterator)  # type: ignore[arg-type]
        if idem.key is not None:
            chunks = _kept(chunks, metered, idem, list(response.headers.items()))
        response.body_iterator = chunks
        return response
    ok = 200 <= response.status_code < 300
    record = await metered.finish(int(entry.cost or 0) if ok else 0)
    if not ok:
        await idem.abort()
        return response
    receipt = gate.receipt(record, grant.challenge_id, cost=metered.cost)
    response.headers["payment-receipt"] = format_receipt(receipt)
    response.headers["payment-session"] = cid
    kept = [(k, v) for k, v in response.headers.items() if k != "content-length"]
    idem.complete(response.status_code, kept, bytes(response.body))
    return response


async def _kept(chunks: AsyncIterator[bytes], metered: Metered, idem: _Idem, headers: list[tuple[str, str]]
                ) -> AsyncIterator[bytes]:
    """Pass ``chunks`` through; with an ``Idempotency-Key``, store them when the stream ends (an
    answer that charged nothing is not stored: its retry runs again)."""
    if idem.key is None:
        async for chunk in chunks:
            yield chunk
        return
    sent: list[bytes] = []
    try:
        async for chunk in chunks:
            sent.append(chunk)
            yield chunk
    finally:
        if metered.cost > 0:
            idem.complete(200, headers, b"".join(sent))
        else:
            await idem.abort()


async def _after_voucher(gate: SessionGate, metered: Metered, need: dict[str, str], amount: int,
                         serve: Callable[[], Awaitable[Response]], anthropic: bool, idem: _Idem,
                         headers: list[tuple[str, str]]) -> AsyncIterator[bytes]:
    """A stream the channel cannot cover yet: ``payment-need-voucher``, then the answer once a
    voucher makes room, or an error frame after ``voucher_wait`` seconds or when the channel
    closes meanwhile (nothing charged)."""
    try:
        yield sse_frame("payment-need-voucher", need)
        try:
            record = await gate.wait_and_hold(metered.channel_id, metered.request_id, amount,
                                              gate.settings.voucher_wait)
        except (ChannelClosing, ChannelFinalized) as exc:  # a forced close or a close meanwhile
            await idem.abort()
            yield error_frame(f"{exc.detail}; nothing was charged", "channel_closed", anthropic=anthropic)
            return
        if record is None:
            await idem.abort()
            yield error_frame(f"no voucher for {need['requiredCumulative']} arrived in time; nothing was "
                              "charged", "insufficient_balance", anthropic=anthropic)
            return
        try:
            response = await serve()
        except BaseException:
            await metered.finish(0)
            raise
        if isinstance(response, StreamingResponse):
            async for chunk in _kept(metered.stream(response.body_iterator),  # type: ignore[arg-type]
                                     metered, idem, headers):
                yield chunk
            return
        await metered.finish(0)  # an error answer after the hold: nothing charged
        await idem.abort()
        body = bytes(response.body)
        yield (b"event: error\ndata: " + body + b"\n\n") if anthropic \
            else (b"data: " + body + b"\n\n" + DONE_FRAME)
    except BaseException:
        await idem.abort()
        raise
