"""Server for ``_session_e2e.py`` (run by ``session_bench.py``): the reference app with sessions,
in a process of its own.

``python bench/_session_server.py PORT RPC_URL CHAIN_ID RECIPIENT ESCROW FEE_TOKEN STORE_PATH``

Secrets come from the environment, never from argv (which ``ps`` shows) and are never printed:
``MPP_SECRET_KEY`` (challenge secret) and ``MPP_SESSION_PAYEE_KEY`` (the recipient's key).

The app is ``create_app`` (SQLite store at ``STORE_PATH``, offline local upstream) with
``enable_sessions``, plus two bench-only routes:

* ``POST /free/v1/chat/completions``: the unpaid twin of the chat route (same parsing,
  conversion, upstream and streaming; no payment step);
* ``GET /bench/cpu``: this process's CPU seconds so far (``time.process_time``, all threads), so
  the benchmark can tell server CPU per request from client CPU.

``SESSION_SERVER_PROFILE=FILE``: run under ``cProfile`` and write the stats to FILE when the
server stops (SIGTERM or SIGINT); for finding where the server's time goes, not for timings.
"""

from __future__ import annotations

import os
import sys
import time

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from mpp_claude.convert.request import chat_request_to_messages
from mpp_claude.protocol.receipt import Receipt
from mpp_claude.server.app import create_app
from mpp_claude.server.config import build_config
from mpp_claude.server.payments import Paid
from mpp_claude.server.routes import access_log, parse_object, read_body, services
from mpp_claude.server.serving import serve_chat
from mpp_claude.server.sessions import SessionSettings, enable_sessions
from mpp_claude.server.stores import SQLiteStore

REALM = "bench.session"


async def free_chat(request: Request) -> Response:
    """The unpaid twin of the chat route: same conversion and upstream, no payment."""
    svc, entry = services(request), access_log(request)
    body = await read_body(request, svc.config.max_body_bytes)
    mreq = chat_request_to_messages(parse_object(body), options=svc.convert_options, now=svc.clock())
    paid = Paid(challenge_id="free", amount=0, currency=svc.config.currencies[0], payer="-", reference="free",
                receipt=Receipt(status="success", timestamp="2026-01-01T00:00:00Z", reference="free"))
    return await serve_chat(svc, mreq, paid, entry)


async def cpu(request: Request) -> Response:
    """CPU seconds of this process so far (every thread)."""
    return PlainTextResponse(repr(time.process_time()))


def build(argv: list[str], env: dict[str, str]) -> Starlette:
    """The app from the command line ``argv`` (see the module docstring) and the secrets in ``env``.

    Raises:
        ValueError: wrong number of arguments or a missing secret.
        ConfigError: invalid configuration (from ``build_config`` / the session gate).
    """
    if len(argv) != 7:
        raise ValueError("usage: _session_server.py PORT RPC_URL CHAIN_ID RECIPIENT ESCROW FEE_TOKEN "
                         "STORE_PATH")
    _port, rpc_url, chain_id, recipient, escrow, fee_token, store_path = argv
    secret, payee_key = env.get("MPP_SECRET_KEY"), env.get("MPP_SESSION_PAYEE_KEY")
    if not secret or not payee_key:
        raise ValueError("MPP_SECRET_KEY and MPP_SESSION_PAYEE_KEY must be set")
    config = build_config(flags=dict(secret_key=secret, recipient=recipient, rpc_url=rpc_url,
                                     chain_id=int(chain_id), store="memory://", realm=REALM))
    app = create_app(config, store=SQLiteStore(store_path))
    enable_sessions(app, SessionSettings(payee_key=payee_key, escrow=escrow, fee_token=fee_token))
    app.router.routes.append(Route("/free/v1/chat/completions", free_chat, methods=["POST"]))
    app.router.routes.append(Route("/bench/cpu", cpu, methods=["GET"]))
    return app


def main() -> int:
    argv = sys.argv[1:]
    try:
        app = build(argv, dict(os.environ))
    except ValueError as exc:
        sys.stderr.write(f"{exc}\n")
        return 2
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=int(argv[0]), log_level="warning",
                                           access_log=False, lifespan="on"))
    profile = os.environ.get("SESSION_SERVER_PROFILE")
    if not profile:
        server.run()
        return 0
    import cProfile
    import signal

    # uvicorn re-raises the SIGTERM it caught once it has shut down: with the default handler the
    # process would die before the stats are written
    signal.signal(signal.SIGTERM, lambda _sig, _frame: None)
    profiler = cProfile.Profile()
    profiler.enable()
    try:
        server.run()
    finally:
        profiler.disable()
        profiler.dump_stats(profile)
    return 0


if __name__ == "__main__":
    sys.exit(main())
