"""The endpoints.  Thin: read and validate the body, quote, pass the payment gate, serve.

A paid route's upstream call may start while its payment settles (``early.py``): ``_pay``
starts it from the gate's ``on_claimed`` and abandons it when the payment fails.

Paid routes validate the request *before* asking for money, so a request that cannot be
served (bad JSON, unknown model, too large) gets a 4xx and never a 402 (nobody pays for a
request that would fail).  Endpoints raise; ``app.py``'s handlers render.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from starlette.requests import ClientDisconnect, Request
from starlette.responses import PlainTextResponse, Response

from ..convert.models import resolve_model
from ..convert.request import chat_request_to_messages
from ..convert.types import MessagesRequest
from ..errors import BadRequest, ConversionError
from ..protocol.encoding import decode_json
from .discovery import llms_txt, models_list, openapi
from .early import UpstreamCall
from .observability import RequestLog
from .payments import Paid, Replayed
from .pricing import Quote, count_parts, estimate_prompt_tokens, quote
from .rendering import json_response
from .serving import Services, chat_call, guarded, messages_call, serve_chat, serve_messages

log = logging.getLogger("mpp_claude.server")

# Top-level fields /v1/messages forwards; anything else (server tools' containers, MCP servers,
# a priority service tier…) could cost more than the quote covers, so it is refused before payment.
CHAT = "/v1/chat/completions"
MESSAGES = "/v1/messages"

_MESSAGES_FIELDS = frozenset({"model", "messages", "max_tokens", "system", "stop_sequences", "stream",
                              "temperature", "top_p", "top_k", "tools", "tool_choice", "metadata",
                              "thinking", "output_config"})


def scope_of(request: Request) -> str:
    """The route scope a challenge binds: method, path and query (``POST /v1/messages?x=1``).

    Our routes take no query parameters, but binding the query too means a credential is
    only ever accepted for the exact resource it was issued for (flow ``query_replay``).
    """
    scope = request.scope  # the raw scope: building ``request.url`` costs ~10 us
    query = scope.get("query_string", b"").decode("latin-1")
    return f"{scope['method']} {scope['path']}" + (f"?{query}" if query else "")


def services(request: Request) -> Services:
    """The app's shared services (set in the lifespan)."""
    svc: Services = request.app.state.services
    return svc


def access_log(request: Request) -> RequestLog:
    """This request's access-log entry (created by the ``AccessLog`` middleware)."""
    entry: RequestLog = request.state.log
    return entry


def _too_big(limit: int) -> BadRequest:
    return BadRequest(f"request body is larger than {limit} bytes", status=413, code="request_too_large")


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, refusing more than ``limit`` bytes (413) before reading it all.

    Raises:
        BadRequest: 413 when the declared or actual size exceeds ``limit``.
    """
    declared = None
    for name, value in request.scope["headers"]:
        if name == b"content-length":
            declared = value
            break
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise _too_big(limit)
    chunks: list[bytes] = []
    size = 0
    receive = request.receive
    while True:  # the ASGI messages themselves (``request.stream()`` adds ~10 us of generator)
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientDisconnect()
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise _too_big(limit)
        chunks.append(chunk)
        if not message.get("more_body", False):
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def parse_object(body: bytes) -> dict[str, Any]:
    """The body as a JSON object.

    Raises:
        BadRequest: 400 when it is not JSON or not an object.
    """
    if not body.strip():
        raise BadRequest("request body is empty; expected a JSON object", status=400, code="invalid_json")
    try:
        value = decode_json(body)
    except ValueError as exc:
        raise BadRequest(f"request body is not valid JSON: {exc}", status=400, code="invalid_json") from None
    if not isinstance(value, dict):
        raise BadRequest("request body must be a JSON object", status=400, code="invalid_json")
    return value


def _replay(replayed: Replayed, entry: RequestLog) -> Response:
    entry.outcome, entry.payer = "replayed", replayed.payer
    stored = replayed.response
    response = Response(stored.body, status_code=stored.status)
    response.raw_headers = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in stored.headers
                            if k.lower() != "content-length"]
    response.raw_headers += [(b"content-length", str(len(stored.body)).encode()),
                             (b"idempotent-replayed", b"true")]
    return response


def _quote(svc: Services, body: bytes, payload: dict[str, Any], model: str, max_tokens: int) -> Quote:
    """The upper-bound price of this request (``ConversionError`` for a model without prices)."""
    messages, images = count_parts(payload.get("messages"))
    return quote(svc.prices, model, max_tokens=max_tokens,
                 prompt_tokens=estimate_prompt_tokens(body, messages=messages, images=images))


def _offers_payment(authorizations: list[str]) -> bool:
    """Whether the request carries a ``Payment`` credential (as ``PaymentGate.authorize`` reads it)."""
    return any(v.strip().lower().startswith("payment") for v in authorizations)


async def _pay(request: Request, svc: Services, entry: RequestLog, body: bytes, price: Quote,
               authorizations: list[str], call: UpstreamCall) -> Paid | Replayed:
    """Pass the payment gate for ``price`` (raises for a 402).

    ``call`` is started once the credential's claims are made (unless the configuration keeps
    the strict order), so the upstream works while the payment settles; if the settlement then
    fails, or the request is cancelled, the call is abandoned before the error goes on.
    """
    entry.amount = price.amount
    terms = svc.gate.terms(scope_of(request), body, price)
    request.state.terms = terms  # the error handler issues fresh challenges from these terms
    try:
        grant = await svc.gate.authorize(terms, body, authorizations, request.headers.get("idempotency-key"),
                                         on_claimed=call.start if svc.config.upstream_during_settlement
                                         else None)
    except BaseException as exc:
        if await call.abandon():
            log.info("upstream call on %s abandoned: the payment failed after its claims (%s)",
                     entry.route, type(exc).__name__)
            if svc.metrics is not None:
                svc.metrics.upstream_abandoned()
        raise
    if isinstance(grant, Paid):
        entry.payer, entry.amount, entry.reference = grant.payer, grant.amount, grant.reference
    return grant


async def chat_completions(request: Request) -> Response:
    """``POST /v1/chat/completions``: OpenAI-compatible, paid per request (JSON or SSE)."""
    svc, entry = services(request), access_log(request)
    body = await read_body(request, svc.config.max_body_bytes)
    authorizations = request.headers.getlist("authorization")

    def analyse() -> tuple[MessagesRequest, Quote]:
        payload = parse_object(body)
        # No thinking store is given: the conversion is pure in (body, options), as ``Analyses`` needs.
        mreq = chat_request_to_messages(payload, options=svc.convert_options, now=svc.clock())
        entry.model, entry.stream = mreq.model.id, mreq.stream  # logged also when the quote refuses
        return mreq, _quote(svc, body, payload, mreq.model.id, int(mreq.body["max_tokens"]))

    mreq, price = svc.analyses.reuse(CHAT, body, paying=_offers_payment(authorizations), analyse=analyse)
    entry.model, entry.stream = mreq.model.id, mreq.stream  # (a kept analysis)
    call = chat_call(svc, mreq)
    grant = await _pay(request, svc, entry, body, price, authorizations, call)
    if isinstance(grant, Replayed):
        return _replay(grant, entry)
    return await guarded(svc, grant, entry, mreq.model.id, anthropic=False,
                         serve=lambda: serve_chat(svc, mreq, grant, entry, call))


def _messages_request(payload: dict[str, Any]) -> tuple[str, int, bool]:
    """Validate a /v1/messages body before payment; returns (model id, max_tokens, stream)."""
    unknown = sorted(set(payload) - _MESSAGES_FIELDS)
    if unknown:
        raise BadRequest(f"fields not offered by this proxy: {', '.join(unknown)}", status=400,
                         param=unknown[0], code="unsupported_parameter")
    info = resolve_model(payload.get("model"))
    max_tokens = payload.get("max_tokens")
    if not isinstance(max_tokens, int) or isinstance(max_tokens, bool) or max_tokens < 1:
        raise BadRequest("max_tokens: required, a positive integer", status=400, param="max_tokens")
    if max_tokens > info.max_output_tokens:
        raise BadRequest(f"max_tokens: {max_tokens} > {info.max_output_tokens}, the maximum allowed for "
                         f"{info.id}", status=400, param="max_tokens")
    thinking = payload.get("thinking")
    budget = thinking.get("budget_tokens") if isinstance(thinking, dict) else None
    if isinstance(budget, int) and budget >= max_tokens:
        raise BadRequest("thinking.budget_tokens must be less than max_tokens", status=400,
                         param="thinking.budget_tokens")
    if not isinstance(payload.get("messages"), list) or not payload["messages"]:
        raise BadRequest("messages: required, a non-empty array", status=400, param="messages")
    for tool in payload.get("tools") or []:
        if isinstance(tool, dict) and tool.get("type") not in (None, "custom"):
            raise BadRequest(f"tools: server tool {tool.get('type')!r} is not offered by this proxy",
                             status=400, param="tools")
    stream = payload.get("stream", False)
    if not isinstance(stream, bool):
        raise BadRequest("stream: expected a boolean", status=400, param="stream")
    return info.id, max_tokens, stream


async def messages(request: Request) -> Response:
    """``POST /v1/messages``: Anthropic Messages passthrough, paid per request."""
    svc, entry = services(request), access_log(request)
    body = await read_body(request, svc.config.max_body_bytes)
    authorizations = request.headers.getlist("authorization")

    def analyse() -> tuple[dict[str, Any], str, bool, Quote]:
        payload = parse_object(body)
        model, max_tokens, stream = _messages_request(payload)
        entry.model, entry.stream = model, stream  # logged also when the quote refuses
        return payload, model, stream, _quote(svc, body, payload, model, max_tokens)

    payload, model, stream, price = svc.analyses.reuse(MESSAGES, body, paying=_offers_payment(authorizations),
                                                       analyse=analyse)
    entry.model, entry.stream = model, stream  # (a kept analysis)
    call = messages_call(svc, payload, stream)
    grant = await _pay(request, svc, entry, body, price, authorizations, call)
    if isinstance(grant, Replayed):
        return _replay(grant, entry)
    return await guarded(svc, grant, entry, model, anthropic=True,
                         serve=lambda: serve_messages(svc, payload, model, stream, grant, entry, call))


async def list_models(request: Request) -> Response:
    """``GET /v1/models``: free; every model with its prices."""
    access_log(request).outcome = "free"
    return json_response(models_list(services(request).prices), 200, {"cache-control": "max-age=300"})


def _base_url(request: Request) -> str:
    return str(request.base_url).rstrip("/")


async def openapi_json(request: Request) -> Response:
    """``GET /openapi.json``: the discovery document (draft-payment-discovery)."""
    access_log(request).outcome = "free"
    cfg = services(request).config
    doc = openapi(base_url=_base_url(request), realm=cfg.realm, currencies=cfg.currencies)
    return Response(json.dumps(doc, separators=(",", ":")).encode(), media_type="application/json",
                    headers={"cache-control": "max-age=300", "access-control-allow-origin": "*"})


async def llms(request: Request) -> Response:
    """``GET /llms.txt``: how an agent pays and which models exist."""
    access_log(request).outcome = "free"
    svc = services(request)
    text = llms_txt(base_url=_base_url(request), realm=svc.config.realm, currencies=svc.config.currencies,
                    table=svc.prices)
    return PlainTextResponse(text, headers={"cache-control": "max-age=300"})


async def health(request: Request) -> Response:
    """``GET /health``: liveness (no chain or upstream call)."""
    access_log(request).outcome = "free"
    return json_response({"status": "ok"}, 200)


async def metrics(request: Request) -> Response:
    """``GET /metrics``: Prometheus counters (only when enabled)."""
    access_log(request).outcome = "free"
    registry = services(request).metrics
    if registry is None:
        raise ConversionError("metrics are disabled", status=404, code="not_found")
    return PlainTextResponse(registry.render(), media_type="text/plain; version=0.0.4")
