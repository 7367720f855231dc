"""``create_app(config)``: the Starlette application, every route and handler in one place.

Resources (the pooled JSON-RPC client, the store, the upstream) are opened in the lifespan and
closed when it ends; nothing lives at module level, so tests can build as many apps as they
like.  Startup fails with ``ConfigError`` when the RPC serves another chain than configured.

Middleware is pure ASGI (``AccessLog``): it never buffers bodies, so SSE answers stream.
"""

from __future__ import annotations

import contextlib
import logging
import secrets
import sqlite3
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..convert.types import ConvertOptions
from ..errors import ConfigError, ConversionError, PaymentRequired, VerificationError
from ..protocol.accept import select_challenges
from ..tempo.rpc import AsyncRpcClient
from ..tempo.settle import AsyncChargeVerifier
from ..tempo.signer import LocalSigner
from ..tempo.verify import SponsorPolicy
from . import routes
from .chain import SyncBroadcastRpc
from .config import ServerConfig
from .front import PaidApp
from .observability import Metrics, RequestLog, emit
from .payments import PaymentGate
from .pricing import PriceTable
from .rendering import client_error, http_error, payment_problem
from .serving import Services
from .stores import open_store
from .stores.base import Store
from .upstreams.base import Upstream

log = logging.getLogger("mpp_claude.server")

PAID_PATHS = {"/v1/chat/completions", "/v1/messages"}
KNOWN_PATHS = PAID_PATHS | {"/v1/models", "/openapi.json", "/llms.txt", "/health", "/metrics"}


class AccessLog:
    """Pure ASGI middleware: one structured log line (and metrics count) per HTTP request."""

    def __init__(self, app: ASGIApp, metrics: Metrics | None) -> None:
        self.app = app
        self.metrics = metrics

    def begin(self, scope: Scope) -> tuple[RequestLog, float]:
        """Start the entry of an HTTP request (put in ``scope["state"]["log"]``); returns it and
        the start time for ``end``."""
        path = scope.get("path", "")
        entry = RequestLog(method=scope.get("method", ""), route=path if path in KNOWN_PATHS else "other")
        scope.setdefault("state", {})["log"] = entry
        return entry, time.perf_counter()

    def end(self, entry: RequestLog, start: float) -> None:
        """Finish the entry (latency; 500 when no answer started; 4xx outcome) and emit it."""
        entry.latency_ms = round((time.perf_counter() - start) * 1000, 3)
        if entry.status == 0:
            entry.status = 500
        if entry.outcome == "error" and 400 <= entry.status < 500 and entry.status != 402:
            entry.outcome = "bad_request"
        emit(entry, self.metrics)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        entry, start = self.begin(scope)

        async def send_logged(message: Message) -> None:
            if message["type"] == "http.response.start":
                entry.status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_logged)
        finally:
            self.end(entry, start)


def _is_anthropic(request: Request) -> bool:
    return request.url.path == "/v1/messages"


def _entry(request: Request) -> RequestLog | None:
    return getattr(request.state, "log", None)


async def _on_verification(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, VerificationError)
    svc: Services = request.app.state.services
    terms = getattr(request.state, "terms", None)
    challenges = svc.gate.challenges(terms) if terms is not None else []
    accept = request.headers.getlist("accept-payment")
    challenges = select_challenges(challenges, accept or None)  # all of them if none/no match
    entry = _entry(request)
    if entry is not None:
        entry.outcome = "payment_required" if isinstance(exc, PaymentRequired) else "rejected"
        entry.problem = exc.problem
    return payment_problem(exc, challenges)


async def _on_client_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ConversionError)
    return client_error(exc, anthropic=_is_anthropic(request))


async def _on_store_down(request: Request, exc: Exception) -> Response:
    """The replay/idempotency store failed (database locked too long, Redis unreachable): a 503.

    Claims fail closed, so nothing was broadcast on this request unless it had already been
    served; the operator sees the cause in the log, the client a retryable error.
    """
    log.error("store unavailable on %s: %s: %s", request.url.path, type(exc).__name__, exc)
    return http_error(503, "the payment store is temporarily unavailable; retry shortly",
                      anthropic=_is_anthropic(request), headers={"retry-after": "1"})


def _store_errors() -> dict[type[BaseException], Any]:
    errors: dict[type[BaseException], Any] = {sqlite3.Error: _on_store_down}
    try:
        from redis.exceptions import RedisError
    except ImportError:  # the redis extra is optional
        return errors
    errors[RedisError] = _on_store_down
    return errors


async def _on_http(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    headers = {k.lower(): v for k, v in (exc.headers or {}).items()}
    if exc.status_code == 405:
        headers.setdefault("allow", "POST" if request.url.path in PAID_PATHS else "GET")
        message = f"{request.method} is not allowed on {request.url.path}; use {headers['allow']}"
    elif exc.status_code == 404:
        message = f"no route {request.url.path}"
    else:
        message = str(exc.detail)
    return http_error(exc.status_code, message, anthropic=_is_anthropic(request), headers=headers)


def _make_upstream(config: ServerConfig) -> Upstream:
    if config.upstream == "anthropic":
        from .upstreams.anthropic import AnthropicUpstream

        # build_config guarantees the key is set for the anthropic upstream
        return AnthropicUpstream(config.anthropic_api_key or "", base_url=config.anthropic_base_url)
    from .upstreams.local import LocalUpstream

    return LocalUpstream()


def create_app(config: ServerConfig, *, store: Store | None = None, upstream: Upstream | None = None,
               rpc: AsyncRpcClient | None = None, clock: Callable[[], float] = time.time,
               nonce: Callable[[], str] | None = None, prices: PriceTable | None = None) -> Starlette:
    """Build the paid proxy.

    Args:
        config: validated configuration (see ``config.load_config``).
        store: use this store instead of opening ``config.store`` (it is not closed by the app).
        upstream: use this upstream instead of the configured one (not closed by the app).
        rpc: use this JSON-RPC client instead of one for ``config.rpc_url`` (not closed by the app).
        clock: Unix time source (tests may pass a fixed one).
        nonce: source of challenge nonces (default ``secrets.token_urlsafe(12)``).
        prices: the price table (default: ``convert``'s model table with config overrides).

    Returns:
        The Starlette app; its lifespan opens the RPC client, store and upstream.

    Raises:
        ConfigError: a price override for a model not in the table lacks input/output prices.
    """
    try:
        table = (prices or PriceTable.builtin()).with_overrides(config.prices)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    metrics = Metrics() if config.metrics else None
    make_nonce = nonce or (lambda: secrets.token_urlsafe(12))

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[dict[str, Any]]:
        async with contextlib.AsyncExitStack() as stack:
            chain = rpc
            if chain is None:
                chain = AsyncRpcClient(config.rpc_url)
                stack.push_async_callback(chain.aclose)
            served = await chain.chain_id()
            if served != config.chain_id:
                raise ConfigError(f"chain_id: configured {config.chain_id}, but {config.rpc_url} serves "
                                  f"chain {served}")
            st = store
            if st is None:
                st = open_store(config.store, clock=clock)
                stack.push_async_callback(st.close)
            up = upstream
            if up is None:
                up = _make_upstream(config)
                stack.push_async_callback(up.aclose)
            fee_payer = LocalSigner(config.fee_payer_key) if config.fee_payer_key else None
            broadcaster: Any = SyncBroadcastRpc(chain)  # duck-types AsyncRpcClient
            verifier = AsyncChargeVerifier(broadcaster, fee_payer=fee_payer, clock=clock,
                                           policy=SponsorPolicy(max_gas=config.sponsor_max_gas))
            gate = PaymentGate(config, st, verifier, clock=clock, nonce=make_nonce)
            app.state.services = Services(
                config=config, prices=table, gate=gate, upstream=up, store=st, clock=clock, metrics=metrics,
                convert_options=ConvertOptions(default_max_tokens=config.default_max_tokens))
            yield {}

    app_routes = [
        Route("/v1/chat/completions", routes.chat_completions, methods=["POST"]),
        Route("/v1/messages", routes.messages, methods=["POST"]),
        Route("/v1/models", routes.list_models, methods=["GET"]),
        Route("/openapi.json", routes.openapi_json, methods=["GET"]),
        Route("/llms.txt", routes.llms, methods=["GET"]),
        Route("/health", routes.health, methods=["GET"]),
    ]
    if metrics is not None:
        app_routes.append(Route("/metrics", routes.metrics, methods=["GET"]))
    app = PaidApp(
        routes=app_routes,
        direct={"/v1/chat/completions": routes.chat_completions, "/v1/messages": routes.messages},
        exception_handlers={VerificationError: _on_verification, ConversionError: _on_client_error,
                            HTTPException: _on_http, **_store_errors()},
        lifespan=lifespan,
    )
    app.add_middleware(AccessLog, metrics=metrics)
    if config.sessions is not None:  # the session intent, offered beside charge
        from .sessions import enable_sessions

        enable_sessions(app, config.sessions, rpc=rpc)
    return app
