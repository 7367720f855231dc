"""Session-paid routes: the endpoint wrapper, the session offers of a 402, and ``enable_sessions``.

``enable_sessions(app, settings)`` turns the session intent on for an app built by
``server.app.create_app``: every 402 of ``/v1/chat/completions`` and ``/v1/messages`` then
carries a session challenge next to the charge challenges, and a request whose
``Authorization: Payment`` credential is a session credential is served here; any other
request goes to the charge route unchanged.  Its lifespan also runs the settlement
``sweeper`` (and, with ``settle_on_shutdown``, settles every channel when the server stops) and
the ``closewatch`` (settles a channel at once when its payer requests a forced close).

What flows where (mpp-protocol.md §4.8):

* a content request (a JSON body) with an ``open`` or ``voucher`` credential
  (``paid.serve_session_paid``): the voucher is accepted, the request's quote is held from the
  channel, the upstream is called; the response carries the session ``Payment-Receipt``; the
  exact usage is charged when it ends (JSON: the receipt header already shows it; SSE: a final
  ``event: payment-receipt`` frame just before ``data: [DONE]``, or after ``message_stop`` on
  ``/v1/messages``);
* a stream whose channel is short: 200, then ``event: payment-need-voucher`` before any
  content; the stream resumes once an out-of-band voucher makes room, or ends with an error
  frame after ``voucher_wait`` seconds; a JSON request that is short gets a 402
  ``session/insufficient-balance`` with ``requiredCumulative``;
* a management request (``HEAD``, or ``POST`` with an empty body) with a ``voucher``,
  ``topUp``, ``close`` (or ``open``) credential: 204 with the receipt, no upstream call.
"""

from __future__ import annotations

import contextlib
import logging
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ...errors import (
    MalformedCredential,
    MalformedCredentialProblem,
    PaymentRequired,
    VerificationError,
)
from ...protocol.challenge import format_challenge
from ...protocol.credential import Credential, parse_credential
from ...protocol.receipt import format_receipt
from ...tempo.rpc import AsyncRpcClient
from ..routes import access_log, read_body, services
from .book import open_book
from .closewatch import CloseWatcher
from .gate import SessionGate
from .meter import safe_error
from .paid import MESSAGES_PATH, serve_session_paid
from .settings import SessionSettings
from .sweeper import Sweeper

log = logging.getLogger("mpp_claude.server.sessions")

CHAT_PATH = "/v1/chat/completions"
PATHS = (CHAT_PATH, MESSAGES_PATH)
Endpoint = Callable[[Request], Awaitable[Response]]


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


async def _manage(request: Request, gate: SessionGate, cred: Credential, route: str) -> Response:
    entry = access_log(request)
    grant = await gate.authorize(cred, route)
    entry.outcome, entry.payer, entry.reference = f"session_{grant.action}", grant.payer, grant.channel_id
    receipt = gate.receipt(grant.record, grant.challenge_id, tx_hash=grant.tx_hash)
    headers = {"payment-receipt": format_receipt(receipt), "cache-control": "private",
               "payment-session": grant.channel_id}
    return Response(status_code=204, headers=headers)


def session_endpoint(charge_endpoint: Endpoint, path: str = CHAT_PATH) -> Endpoint:
    """Wrap the charge endpoint of the paid route ``path``: session credentials are served here."""
    route = f"POST {path}"

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
            return await _manage(request, gate, cred, route)
        return await serve_session_paid(request, gate, cred, body, route)

    return endpoint


def _with_session_offers(handler: Callable[[Request, Exception], Awaitable[Response]]
                         ) -> Callable[[Request, Exception], Awaitable[Response]]:
    async def on_verification(request: Request, exc: Exception) -> Response:
        response = await handler(request, exc)
        gate = _gate(request)
        path = request.url.path
        if gate is None or response.status_code != 402 or path not in PATHS:
            return response
        amount = getattr(request.state, "session_quote", None)
        terms = getattr(request.state, "terms", None)
        if amount is None:
            amount = int(terms.requests[0]["amount"]) if terms is not None else 0
        description = terms.description if terms is not None else None
        for challenge in gate.offers(f"POST {path}", int(amount), description):
            response.raw_headers.append((b"www-authenticate", format_challenge(challenge).encode("latin-1")))
        return response

    return on_verification


def enable_sessions(app: Starlette, settings: SessionSettings, *,
                    rpc: AsyncRpcClient | None = None) -> Starlette:
    """Offer the session intent on ``/v1/chat/completions`` and ``/v1/messages`` of an app from
    ``create_app``, and run the settlement sweeper in its lifespan.

    Args:
        app: the app (not started yet).
        settings: the session settings (payee key, escrow, deposits, settlement schedule).
        rpc: a JSON-RPC client to use (not closed); default one for ``config.rpc_url``.
    Returns:
        ``app``, changed in place.
    """
    for i, route in enumerate(app.router.routes):
        if isinstance(route, Route) and route.path in PATHS:
            app.router.routes[i] = Route(route.path, session_endpoint(route.endpoint, route.path),
                                         methods=["POST", "HEAD"])
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
            sweeper = Sweeper(gate, settings.settle_every_seconds, svc.clock)
            if settings.settle_on_shutdown:
                stack.push_async_callback(_settle_all, sweeper)
            stack.push_async_callback(sweeper.stop)
            sweeper.start()
            watcher = CloseWatcher(gate, settings.close_watch_seconds, gate.fresh_state)
            stack.push_async_callback(watcher.stop)
            watcher.start()
            a.state.sessions = gate
            yield state

    app.router.lifespan_context = lifespan
    return app


async def _settle_all(sweeper: Sweeper) -> None:
    """``settle_on_shutdown``: settle every channel with unsettled spent (failures are logged)."""
    try:
        due = await sweeper.sweep(force=True)
    except Exception as exc:
        log.warning("settling at shutdown failed: %s", safe_error(exc))
        return
    if due:
        log.info("settled %d channel(s) at shutdown", len(due))
