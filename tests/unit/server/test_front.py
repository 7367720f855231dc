"""PaidApp's short way for POST on the paid paths answers exactly as the Starlette stack does.

Each request is sent twice in one lifespan: through ``app.middleware_stack`` (Starlette's own
walk: error middleware, access log, exception middleware, router) and through ``app`` (the
short way).  Statuses, headers, bodies, access-log lines and metrics must be the same.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sqlite3
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from redis.exceptions import ConnectionError as RedisConnectionError
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import Route

from mpp_claude.errors import BadRequest, MalformedCredentialProblem, PaymentRequired
from mpp_claude.server.app import AccessLog, create_app
from mpp_claude.server.config import build_config
from mpp_claude.server.front import PaidApp
from mpp_claude.server.observability import Metrics
from mpp_claude.server.stores import MemoryStore
from mpp_claude.server.upstreams import LocalUpstream

CHAT = json.dumps({"model": "claude-haiku-4-5", "messages": [{"role": "user", "content": "hi"}],
                   "max_tokens": 100}).encode()
MESSAGES = json.dumps({"model": "claude-haiku-4-5", "messages": [{"role": "user", "content": "hi"}],
                       "max_tokens": 100}).encode()
ASGI = Callable[[Any, Any, Any], Awaitable[None]]


class FakeRpc:
    async def chain_id(self) -> int:
        return 31337


def _config(**flags: Any) -> Any:
    return build_config(flags={"secret_key": "k" * 40, "recipient": "0x" + "cd" * 20, "rpc_url": "http://x",
                               "chain_id": 31337, "store": "memory://", "realm": "unit.test",
                               "max_body_bytes": 4096, "metrics": True, **flags})


def _app() -> Any:
    return create_app(_config(), store=MemoryStore(), upstream=LocalUpstream(seed=b"front"),
                      rpc=FakeRpc(), clock=lambda: 1_900_000_000.0, nonce=lambda: "fixed")  # type: ignore[arg-type]


def _scope(app: Any, path: str, headers: list[tuple[bytes, bytes]], method: str = "POST") -> dict[str, Any]:
    return {"type": "http", "asgi": {"version": "3.0", "spec_version": "2.4"}, "http_version": "1.1",
            "method": method, "scheme": "http", "path": path, "raw_path": path.encode(), "query_string": b"",
            "root_path": "", "headers": headers, "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 80),
            "state": {}, "app": app}


async def _call(asgi: ASGI, scope: dict[str, Any], body: bytes) -> list[dict[str, Any]]:
    sent: list[dict[str, Any]] = []
    chunks = [{"type": "http.request", "body": body, "more_body": False}]

    async def receive() -> dict[str, Any]:
        return chunks.pop(0) if chunks else {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await asgi(scope, receive, send)
    return sent


def _both(app: Any, path: str, body: bytes, headers: list[tuple[bytes, bytes]], method: str = "POST"
          ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    async def run() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        async with app.router.lifespan_context(app):
            await _call(app, _scope(app, "/health", [], "GET"), b"")  # builds the stacks
            starlette = await _call(app.middleware_stack, _scope(app, path, list(headers), method), body)
            direct = await _call(app, _scope(app, path, list(headers), method), body)
            return starlette, direct

    return asyncio.run(run())


def _log_lines(caplog: pytest.LogCaptureFixture) -> list[dict[str, Any]]:
    lines = [json.loads(r.getMessage()) for r in caplog.records if r.name == "mpp_claude.server.access"]
    for line in lines:
        line.pop("latency_ms")
    return lines


def _json(n: int) -> list[tuple[bytes, bytes]]:
    return [(b"content-type", b"application/json"), (b"content-length", str(n).encode())]


CASES = [
    ("/v1/chat/completions", CHAT, []),  # 402: no credential
    ("/v1/messages", MESSAGES, []),
    ("/v1/chat/completions", CHAT, [(b"authorization", b"Payment not-base64!")]),  # 402: malformed
    ("/v1/chat/completions", CHAT, [(b"authorization", b"Payment a"), (b"authorization", b"Payment b")]),
    ("/v1/chat/completions", b"{not json", []),  # 400 (OpenAI error)
    ("/v1/messages", b"[]", []),  # 400 (Anthropic error)
    ("/v1/messages", json.dumps({"model": "claude-haiku-4-5", "max_tokens": 1, "messages": [],
                                 "mcp_servers": []}).encode(), []),
    ("/v1/chat/completions", b"{" + b" " * 5000 + b"}", []),  # 413
    ("/v1/chat/completions", json.dumps({"model": "nope", "messages": []}).encode(), []),
]


@pytest.mark.parametrize(("path", "body", "extra"), CASES)
def test_paid_paths_answer_as_the_starlette_stack(path: str, body: bytes, extra: list[tuple[bytes, bytes]],
                                                  caplog: pytest.LogCaptureFixture) -> None:
    """The same status, headers, body and access-log line, whichever way the request went."""
    app = _app()
    with caplog.at_level(logging.INFO, logger="mpp_claude.server.access"):
        starlette, direct = _both(app, path, body, _json(len(body)) + extra)
    assert app._direct.keys() == {"/v1/chat/completions", "/v1/messages"}  # the short way was taken
    assert {type(a).__name__ for a in app._direct.values()} == {"_Fused"}
    assert direct == starlette
    assert starlette[0]["status"] in (400, 402, 404, 413)
    health, first, second = _log_lines(caplog)
    assert health["route"] == "/health" and first == second and first["status"] == starlette[0]["status"]


def test_metrics_count_both_ways_alike() -> None:
    """Each way counts its request once in the Prometheus counters (same route, outcome, status)."""
    app = _app()
    _both(app, "/v1/chat/completions", CHAT, _json(len(CHAT)))
    text = app.state.services.metrics.render()
    counted = 'mpp_requests_total{route="/v1/chat/completions",outcome="payment_required",status="402"} 2'
    assert counted in text


@pytest.mark.parametrize("method", ["GET", "PUT", "HEAD"])
def test_other_methods_go_through_starlette(method: str) -> None:
    """Only POST takes the short way; other methods meet the router (a 405 with Allow: POST)."""
    app = _app()
    starlette, direct = _both(app, "/v1/chat/completions", b"", [], method)
    assert direct == starlette and direct[0]["status"] == 405
    assert (b"allow", b"POST") in direct[0]["headers"]


def test_sessions_keep_the_starlette_stack() -> None:
    """With the session intent the paid routes' endpoints are wrapped: no short way for them."""
    from mpp_claude.server.sessions import SessionSettings, enable_sessions

    app = enable_sessions(_app(), SessionSettings(payee_key="0x" + "33" * 32, escrow="0x" + "44" * 20,
                                                  fee_token="0x20c0000000000000000000000000000000000000"))
    app.build_middleware_stack()
    assert app._direct == {}


def test_debug_mode_keeps_the_starlette_stack() -> None:
    """Debug answers (tracebacks) come from Starlette's own error middleware: no short way."""
    app = _app()
    app.debug = True
    app.build_middleware_stack()
    assert app._direct == {}


# --- every exception class a handler maps, on a bare PaidApp with create_app's handlers ------------------


class _PassThrough:
    """A user middleware without ``begin``/``end``: the short way keeps Starlette's layering."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        await self.app(scope, receive, send)


def _raising_app(exc: BaseException, layered: bool = False) -> PaidApp:
    async def endpoint(request: Request) -> Response:
        request.state.log.model = "m"
        raise exc

    handlers = dict(_app().exception_handlers)
    app = PaidApp(routes=[Route("/pay", endpoint, methods=["POST"])], exception_handlers=handlers,
                  direct={"/pay": endpoint})
    if layered:
        app.add_middleware(_PassThrough)
    app.add_middleware(AccessLog, metrics=Metrics())
    app.state.services = None  # _on_verification reads it; no terms were set, so no challenges
    return app


async def _one(asgi: ASGI, app: PaidApp) -> tuple[list[dict[str, Any]], BaseException | None]:
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    try:
        await asgi(_scope(app, "/pay", []), receive, send)
    except BaseException as exc:
        return sent, exc
    return sent, None


@pytest.mark.parametrize("exc", [
    PaymentRequired("pay"), MalformedCredentialProblem("bad"), BadRequest("no", status=422, code="x"),
    HTTPException(418, "teapot"), HTTPException(404), sqlite3.OperationalError("database is locked"),
    RedisConnectionError("down"), RuntimeError("bug"), ClientDisconnect(), KeyError("k"),
], ids=lambda e: type(e).__name__)
@pytest.mark.parametrize("layered", [False, True], ids=["fused", "layered"])
def test_each_exception_class_is_rendered_alike(exc: BaseException, layered: bool,
                                                caplog: pytest.LogCaptureFixture) -> None:
    """402 problems, 4xx errors, 503 for the store, and the bare 500 (re-raised to the server), with
    the access log alone (one fused frame) or beside another middleware (Starlette's layering)."""
    app = _raising_app(exc, layered)
    app.middleware_stack = app.build_middleware_stack()
    assert type(app._direct["/pay"]).__name__ == ("ServerErrorMiddleware" if layered else "_Fused")

    async def run() -> tuple[Any, Any]:
        assert app.middleware_stack is not None
        return await _one(app.middleware_stack, app), await _one(app, app)

    with caplog.at_level(logging.INFO, logger="mpp_claude.server.access"):
        (starlette, raised_s), (direct, raised_d) = asyncio.run(run())
    assert direct == starlette
    assert type(raised_d) is type(raised_s)
    if raised_s is not None:  # unhandled: the 500 is sent, then the exception goes on to uvicorn
        assert starlette[0]["status"] == 500 and starlette[1]["body"] == b"Internal Server Error"
    first, second = _log_lines(caplog)
    assert first == second and first["status"] == starlette[0]["status"]
