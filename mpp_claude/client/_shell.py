"""The I/O loop every transport runs, written once for httpx and httpx2 (same API).

A shell only converts its library's request and response objects to plain values, sends,
and carries out the engine's actions; it has no ``if`` about money (style.md "client/").
``mod`` is the ``httpx`` or ``httpx2`` module.
"""

from __future__ import annotations

from typing import Any

from ._engine import EXT_FIRST_ORIGIN, IDEMPOTENCY_HEADER, AsyncEngine, SyncEngine
from ._flow import Deliver, Resend
from ._logical import Attempt
from .receipts import EXT_RECEIPT


def _start(engine: SyncEngine | AsyncEngine, request: Any) -> tuple[Attempt, Any]:
    url = request.url
    att = engine.start(request.method, str(url), url.scheme, url.host, url.port, url.path, request.headers,
                       request.content, request.extensions.get(EXT_FIRST_ORIGIN))
    credential = None
    for name, value in att.set_headers:
        if name == IDEMPOTENCY_HEADER:
            request.headers[name] = value  # not a secret: set in place, no copy on the hot path
        else:
            credential = Resend(name, value)
    return att, credential


def _pairs(headers: Any) -> list[tuple[str, str]]:
    """``headers.multi_items()`` with the names as sent: the encoding is looked up once, not twice
    per header (the flow compares names case-insensitively)."""
    enc = headers.encoding
    return [(k.decode(enc), v.decode(enc)) for k, v in headers.raw]


def _with_credential(mod: Any, request: Any, credential: Resend) -> Any:
    """A new request carrying the credential (the caller's request object never holds it).

    Built as httpx copies a request for a redirect: the same (already read) byte stream and the
    headers as they are, so the body is not encoded again (a third of the cost).
    """
    headers = request.headers.copy()
    headers[credential.header] = credential.value  # replaces ``Authorization: Bearer …``
    state = getattr(request, "__dict__", None)
    if state is None or "_content" not in state:  # not the plain, read request of httpx/httpx2
        new = mod.Request(request.method, request.url, headers=headers, stream=request.stream,
                          extensions=request.extensions)
        new.read()  # ``content`` available to inner transports, as on the caller's request
        return new
    # What ``Request(method, url, headers=, stream=, extensions=)`` + ``read()`` give, for a read
    # request, without parsing the URL and copying the headers again: its attributes, new headers.
    new = object.__new__(type(request))
    new.__dict__.update(state)
    new.headers = headers
    new.extensions = dict(request.extensions)
    return new


def handle_sync(engine: SyncEngine, inner: Any, request: Any, mod: Any) -> Any:
    """Send ``request`` through ``inner``, paying one 402 at most.  Returns the final response."""
    request.read()
    att, credential = _start(engine, request)
    req = request if credential is None else _with_credential(mod, request, credential)
    while True:
        try:
            response = inner.handle_request(req)
        except mod.TransportError:
            resend = engine.lost(att)
            if resend is None:
                raise
            req = _with_credential(mod, request, resend)
            continue
        body = b""
        if att.flow.needs_body(response.status_code):
            try:
                body = response.read()
            finally:
                response.close()
        action = engine.on_response(att, response.status_code, _pairs(response.headers), body)
        if isinstance(action, Deliver):
            receipt = engine.deliver(att, action)
            if receipt is not None:
                response.extensions[EXT_RECEIPT] = receipt
            return response
        req = _with_credential(mod, request, engine.pay(att, action))


async def handle_async(engine: AsyncEngine, inner: Any, request: Any, mod: Any) -> Any:
    """The async twin of :func:`handle_sync`."""
    await request.aread()
    att, credential = _start(engine, request)
    req = request if credential is None else _with_credential(mod, request, credential)
    while True:
        try:
            response = await inner.handle_async_request(req)
        except mod.TransportError:
            resend = await engine.lost(att)
            if resend is None:
                raise
            req = _with_credential(mod, request, resend)
            continue
        body = b""
        if att.flow.needs_body(response.status_code):
            try:
                body = await response.aread()
            finally:
                await response.aclose()
        action = await engine.on_response(att, response.status_code, _pairs(response.headers), body)
        if isinstance(action, Deliver):
            receipt = engine.deliver(att, action)
            if receipt is not None:
                response.extensions[EXT_RECEIPT] = receipt
            return response
        req = _with_credential(mod, request, await engine.pay(att, action))
