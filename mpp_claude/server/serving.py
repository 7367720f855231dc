"""Serving a paid request: call the upstream, answer the client, record usage and credits.

Everything here runs *after* the payment settled (``payments.Paid``), so every answer, success
or failure, is stored for ``Idempotency-Key`` replays and every error carries
``x-should-retry: false`` (a retry would meet a fresh 402 and pay again).  The upstream call
itself may have started while the payment settled (``early.UpstreamCall``): its answer is
taken here, after ``Paid`` exists, and nothing of it was sent before.

Credit policy (what happens to the money when the upstream fails after payment):

* the payer always keeps the quoted amount's worth of value on record: each paid request
  writes a ``usage`` row (quoted amount, actual cost from the upstream's ``usage``, tokens,
  tx hash, payer);
* if the upstream fails before producing anything (connection error, timeout, an error
  status, an invalid message), a ``credit`` row for the **full** amount is written, and the
  client gets an OpenAI-shaped (or Anthropic-shaped) error with the tx hash and the credited
  amount in ``error.payment``;
* if a stream breaks off mid-way, the credit is the quoted amount minus the cost of what was
  delivered;
* credits are records for the operator (refund or reconcile out of band); nothing is sent
  back on chain automatically, and a credit is never redeemed by re-using a credential.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import anyio
from starlette.responses import Response, StreamingResponse

from ..convert.error_map import anthropic_error_to_openai
from ..convert.response import message_to_chat_completion
from ..convert.sse import SseEvent, SseParser
from ..convert.stream import StreamTranslator
from ..convert.types import ConvertOptions, MessagesRequest
from ..errors import ConversionError, UpstreamError
from ..protocol.encoding import loads_bounded
from .analysis import Analyses
from .config import ServerConfig
from .early import UpstreamCall
from .observability import Metrics, RequestLog
from .payments import Paid, PaymentGate
from .pricing import PriceTable, Usage, usage_cost
from .rendering import anthropic_error_body, compact_json
from .stores.base import Store, StoredResponse
from .upstreams.base import Upstream, UpstreamResponse

log = logging.getLogger("mpp_claude.server")

SSE_HEADERS = {"content-type": "text/event-stream; charset=utf-8", "x-accel-buffering": "no"}


@dataclass
class Services:
    """What the endpoints share; built in the app's lifespan (no module-level state)."""

    config: ServerConfig
    prices: PriceTable
    gate: PaymentGate
    upstream: Upstream
    store: Store
    clock: Callable[[], float]
    metrics: Metrics | None = None
    convert_options: ConvertOptions = field(default_factory=ConvertOptions)
    analyses: Analyses = field(default_factory=Analyses)  # each 402's analysis, for its paid retry


def paid_headers(paid: Paid, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """Headers of a successful paid answer: the receipt, ``Cache-Control: private``."""
    return {"payment-receipt": paid.receipt_header, "cache-control": "private", **(extra or {})}


def upstream_headers(beta: list[str]) -> dict[str, str]:
    """Headers for the upstream call: only ``anthropic-beta``.  The client's own headers (its
    payment credential above all) never travel upstream."""
    return {"anthropic-beta": ",".join(beta)} if beta else {}


async def _record(svc: Services, kind: str, row: dict[str, Any]) -> None:
    with anyio.CancelScope(shield=True):  # a client disconnect must not lose the money trail
        await svc.store.record(kind, row)


async def _usage_row(svc: Services, paid: Paid, entry: RequestLog, model: str, usage: Usage, *,
                     shielded: bool = False) -> int:
    """Write the request's usage row (``shielded``: the caller already shields it); returns the cost."""
    try:
        cost = int(usage_cost(svc.prices, model, usage))
    except ConversionError:
        cost = 0
    entry.input_tokens, entry.output_tokens, entry.cost = usage.prompt_tokens, usage.output_tokens, cost
    row = {"at": int(svc.clock()), "route": entry.route, "model": model, "payer": paid.payer,
           "reference": paid.reference, "challenge_id": paid.challenge_id, "currency": paid.currency,
           "quoted": paid.amount, "cost": cost, "input_tokens": usage.input_tokens,
           "output_tokens": usage.output_tokens, "cache_read_tokens": usage.cache_read_tokens,
           "cache_write_tokens": usage.cache_write_tokens, "outcome": entry.outcome}
    if shielded:
        await svc.store.record("usage", row)
    else:
        await _record(svc, "usage", row)
    return cost


async def _credit(svc: Services, paid: Paid, entry: RequestLog, model: str, amount: int, reason: str) -> None:
    entry.outcome = "upstream_error"
    await _record(svc, "credit", {
        "at": int(svc.clock()), "route": entry.route, "model": model, "payer": paid.payer,
        "reference": paid.reference, "challenge_id": paid.challenge_id, "currency": paid.currency,
        "amount": amount, "reason": reason})
    log.warning("paid request %s failed upstream (%s): credit %d recorded", paid.reference, reason, amount)


async def _paid_json(svc: Services, paid: Paid, entry: RequestLog, model: str,
                     answer: Mapping[str, Any] | None, headers: Mapping[str, str], raw: bytes) -> None:
    """After a JSON answer (``answer``: the upstream's message): its usage row, and the answer
    stored for ``Idempotency-Key`` replays (with a key), in one shielded step (a client
    disconnect must lose neither)."""
    entry.outcome = "paid"
    usage = Usage.from_anthropic((answer or {}).get("usage"))
    with anyio.CancelScope(shield=True):
        await _usage_row(svc, paid, entry, model, usage, shielded=True)
        if paid.idempotency_key is not None:
            await svc.gate.finish(paid, StoredResponse(200, tuple(headers.items()), raw))


async def failed_after_payment(svc: Services, paid: Paid, entry: RequestLog, model: str,
                               err: ConversionError, *, anthropic: bool) -> Response:
    """Answer an upstream failure that follows a settled payment (see the credit policy)."""
    await _credit(svc, paid, entry, model, paid.amount, err.code or err.type)
    await _usage_row(svc, paid, entry, model, Usage())  # every paid request has its usage row
    payment = {"reference": paid.reference, "amount": str(paid.amount), "credited": str(paid.amount)}
    if anthropic:
        body = anthropic_error_body(err.message, status=err.status)
        body["error"]["payment"] = payment
    else:
        body = err.to_openai()
        body["error"]["payment"] = payment
    raw = compact_json(body)
    headers = {**err.headers, "x-should-retry": "false", "cache-control": "no-store",
               "content-type": "application/json"}
    headers.pop("retry-after", None)
    stored = StoredResponse(err.status, tuple(headers.items()), raw)
    with anyio.CancelScope(shield=True):
        await svc.gate.finish(paid, stored)
    entry.status = err.status
    return Response(raw, status_code=err.status, headers=headers)


async def guarded(svc: Services, paid: Paid, entry: RequestLog, model: str, *, anthropic: bool,
                  serve: Callable[[], Awaitable[Response]]) -> Response:
    """Run ``serve`` for a paid request; a bug in it still answers with a credit and no retry.

    A paid request must never end in a bare 500 the openai SDK would retry (and pay again for):
    the exception is logged with its traceback (it is a bug) and answered like an upstream
    failure after payment.
    """
    try:
        return await serve()
    except Exception:
        log.exception("bug while serving paid request %s", paid.reference)
        err = ConversionError("internal error after payment; the amount was credited", status=500,
                              type="server_error", code="internal_error")
        return await failed_after_payment(svc, paid, entry, model, err, anthropic=anthropic)


def _upstream_failure(exc: UpstreamError) -> ConversionError:
    return ConversionError(f"upstream failed: {exc.message}", status=exc.status, type="server_error",
                           code=exc.code)


class _Kept(list[bytes]):
    """The frames sent to the client, kept only when an ``Idempotency-Key`` will store them."""

    def __init__(self, keep: bool) -> None:
        super().__init__()
        self._keep = keep

    def append(self, item: bytes) -> None:
        if self._keep:
            super().append(item)

    def body(self) -> bytes:
        return b"".join(self)


# --- chat completions ----------------------------------------------------------------------------


def chat_call(svc: Services, mreq: MessagesRequest) -> UpstreamCall:
    """The upstream call of a ``/v1/chat/completions`` request (not started); started early, it
    also renders a JSON answer as the client's body while the payment settles."""

    def render(up: UpstreamResponse) -> bytes | None:
        if mreq.stream or not up.ok or up.json is None:
            return None
        return _chat_body(svc, mreq, up.json)

    return UpstreamCall(svc.upstream, dict(mreq.body), stream=mreq.stream,
                        headers=upstream_headers(mreq.anthropic_beta), prepare=render)


def _chat_body(svc: Services, mreq: MessagesRequest, message: Any) -> bytes:
    """The chat completion body for the upstream's message (raises ``ConversionError``)."""
    return compact_json(message_to_chat_completion(message, model=mreq.requested_model,
                                                   created=int(svc.clock()), request=mreq,
                                                   expose_reasoning=svc.convert_options.expose_reasoning))


async def serve_chat(svc: Services, mreq: MessagesRequest, paid: Paid, entry: RequestLog,
                     call: UpstreamCall | None = None) -> Response:
    """Answer a paid ``/v1/chat/completions`` request (JSON or SSE).

    ``call``: its ``chat_call``, maybe started while the payment settled (default: one made now).
    """
    model = mreq.model.id
    call = call if call is not None else chat_call(svc, mreq)
    try:
        up = await call.result()
    except UpstreamError as exc:
        return await failed_after_payment(svc, paid, entry, model, _upstream_failure(exc), anthropic=False)
    if not up.ok or (not mreq.stream and up.json is None):
        await up.aclose()
        err = anthropic_error_to_openai(up.status, up.json, up.headers)
        return await failed_after_payment(svc, paid, entry, model, err, anthropic=False)
    if mreq.stream and up.stream is not None:
        translator = StreamTranslator(model=mreq.requested_model, created=int(svc.clock()),
                                      include_usage=mreq.include_usage, request=mreq,
                                      expose_reasoning=svc.convert_options.expose_reasoning)
        resp_headers = paid_headers(paid, {**mreq.response_headers(), **SSE_HEADERS})
        return StreamingResponse(_chat_stream(svc, paid, entry, model, up.stream, up.aclose, translator,
                                              resp_headers), headers=resp_headers)
    raw = call.prepared  # rendered while the payment settled, if the call started then
    if raw is None:
        try:
            raw = _chat_body(svc, mreq, up.json)
        except ConversionError as err:
            return await failed_after_payment(svc, paid, entry, model, err, anthropic=False)
    resp_headers = paid_headers(paid, {**mreq.response_headers(), "content-type": "application/json"})
    await _paid_json(svc, paid, entry, model, up.json, resp_headers, raw)
    return Response(raw, status_code=200, headers=resp_headers)


async def _chat_stream(svc: Services, paid: Paid, entry: RequestLog, model: str,
                       chunks: AsyncIterator[bytes], close: Callable[[], Any], translator: StreamTranslator,
                       resp_headers: Mapping[str, str]) -> AsyncIterator[bytes]:
    parser = SseParser()
    sent = _Kept(paid.idempotency_key is not None)  # the body is kept only for a replay
    usage: dict[str, Any] = {}
    interrupted: str | None = "upstream_stream_interrupted"
    try:
        try:
            async for chunk in chunks:
                for event in parser.feed(chunk):
                    interrupted = _observe(event, usage, interrupted)
                    out = translator.feed(event)
                    if out:
                        sent.append(out)
                        yield out
            out = translator.close()
        except UpstreamError as exc:
            interrupted = exc.code
            out = translator.fail(_upstream_failure(exc))
        except ConversionError as err:
            interrupted = err.code or err.type
            out = translator.fail(err)
        if out:
            sent.append(out)
            yield out
    except (GeneratorExit, asyncio.CancelledError):
        if interrupted is not None:
            interrupted = "client_disconnected"
        raise
    finally:
        with anyio.CancelScope(shield=True):
            await close()
            await _finish_stream(svc, paid, entry, model, usage, interrupted,
                                 StoredResponse(200, tuple(resp_headers.items()), sent.body()))


def _observe(event: SseEvent, usage: dict[str, Any], interrupted: str | None) -> str | None:
    """Note the usage an upstream event carries; return the stream's new interruption status
    (``None`` once ``message_stop`` arrived, ``upstream_error_event`` after an error event)."""
    _note_usage(event.event, event.data, usage)
    if event.event == "message_stop":
        return None
    if event.event == "error":
        return "upstream_error_event"
    return interrupted


def _note_usage(event: str, data: str, usage: dict[str, Any]) -> None:
    """Keep the latest Anthropic usage numbers seen in ``message_start``/``message_delta``."""
    if event not in ("message_start", "message_delta"):
        return
    try:
        payload = loads_bounded(data)
    except ValueError:
        return
    if not isinstance(payload, dict):
        return
    message = payload.get("message")
    raw = (message.get("usage") if isinstance(message, dict) else None) if event == "message_start" \
        else payload.get("usage")
    if isinstance(raw, dict):
        usage.update({k: v for k, v in raw.items() if isinstance(v, int)})


async def _finish_stream(svc: Services, paid: Paid, entry: RequestLog, model: str, usage: Mapping[str, Any],
                         interrupted: str | None, stored: StoredResponse) -> None:
    entry.outcome = "paid"
    cost = await _usage_row(svc, paid, entry, model, Usage.from_anthropic(usage))
    if interrupted:
        await _credit(svc, paid, entry, model, max(0, paid.amount - cost), interrupted)
    await svc.gate.finish(paid, stored)


# --- native /v1/messages passthrough -------------------------------------------------------------


def messages_call(svc: Services, body: dict[str, Any], stream: bool) -> UpstreamCall:
    """The upstream call of a ``/v1/messages`` request (not started)."""
    # The client's anthropic-beta header is not forwarded: a beta (1M context, new tools) can
    # change what a request costs beyond the price table the quote used.
    def render(up: UpstreamResponse) -> bytes | None:
        return None if stream or not up.ok or up.json is None else compact_json(up.json)

    return UpstreamCall(svc.upstream, body, stream=stream, headers=upstream_headers([]), prepare=render)


async def serve_messages(svc: Services, body: dict[str, Any], model: str, stream: bool, paid: Paid,
                         entry: RequestLog, call: UpstreamCall | None = None) -> Response:
    """Answer a paid ``/v1/messages`` request: the upstream's answer, unchanged.

    ``call``: its ``messages_call``, maybe started while the payment settled (default: one made now).
    """
    call = call if call is not None else messages_call(svc, body, stream)
    try:
        up = await call.result()
    except UpstreamError as exc:
        return await failed_after_payment(svc, paid, entry, model, _upstream_failure(exc), anthropic=True)
    if not up.ok or (not stream and up.json is None):
        await up.aclose()
        err = anthropic_error_to_openai(up.status, up.json, up.headers)
        err.status = up.status if up.status >= 400 else 502
        return await failed_after_payment(svc, paid, entry, model, err, anthropic=True)
    if stream and up.stream is not None:
        resp_headers = paid_headers(paid, SSE_HEADERS)
        return StreamingResponse(_passthrough(svc, paid, entry, model, up.stream, up.aclose, resp_headers),
                                 headers=resp_headers)
    raw = call.prepared or compact_json(up.json)  # rendered while the payment settled, if it could be
    resp_headers = paid_headers(paid, {"content-type": "application/json"})
    await _paid_json(svc, paid, entry, model, up.json, resp_headers, raw)
    return Response(raw, status_code=200, headers=resp_headers)


async def _passthrough(svc: Services, paid: Paid, entry: RequestLog, model: str, chunks: AsyncIterator[bytes],
                       close: Callable[[], Any], resp_headers: Mapping[str, str]) -> AsyncIterator[bytes]:
    parser = SseParser()
    sent = _Kept(paid.idempotency_key is not None)  # the body is kept only for a replay
    usage: dict[str, Any] = {}
    interrupted: str | None = "upstream_stream_interrupted"
    try:
        try:
            async for chunk in chunks:
                for event in parser.feed(chunk):
                    interrupted = _observe(event, usage, interrupted)
                sent.append(chunk)
                yield chunk
        except UpstreamError as exc:
            interrupted = exc.code
            frame = ("event: error\ndata: " + json.dumps(
                anthropic_error_body(exc.message, status=exc.status)) + "\n\n").encode()
            sent.append(frame)
            yield frame
    except (GeneratorExit, asyncio.CancelledError):
        if interrupted is not None:
            interrupted = "client_disconnected"
        raise
    finally:
        with anyio.CancelScope(shield=True):
            await close()
            await _finish_stream(svc, paid, entry, model, usage, interrupted,
                                 StoredResponse(200, tuple(resp_headers.items()), sent.body()))
