"""Per-request overhead of a session-paid streamed completion, beside the charge intent, same run.

One devnet, one reference server (uvicorn in a thread of this process, local upstream,
SQLite store) with the session intent on.  Three ways to get the same streamed chat
completion through the openai SDK (``stream=True``, read to the end), taking turns request
by request so load on the machine hits all three alike:

* unpaid: a free twin of ``/v1/chat/completions`` on the same server (same parsing,
  conversion, upstream and streaming; no payment step), with the openai SDK's own client and
  through ``MppClient`` (its fixed per-request cost, paid or not);
* session: ``MppClient`` with ``SessionPolicy``, channel already open and challenge cached:
  a new voucher for what the request may cost rides on it (signed, reserved in the budgets
  and the ledger), the server verifies it, holds the quote and charges the exact usage in
  SQLite, a receipt frame ends the stream;
* session with sign-ahead (``headroom``): the same, but a new voucher only every ~60
  requests; the others re-send the last voucher (no signing, no ledger write);
* charge: ``MppClient`` paying each request with a Tempo transaction (402, sign, broadcast,
  receipt), the existing intent.

Reported: medians, and session/charge minus unpaid (the per-request overhead; goal for the
session: <= 2 ms).  Then, without HTTP or a client thread: the server's two channel-book writes
per session-paid request (hold, then charge the usage) in SQLite, as one compare-and-set
statement each on the cached record, against a read-modify-write transaction per write (what
another worker's write in between forces; every write before the row versions).
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import openai
import uvicorn
from eth_account import Account
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from mpp_claude.client import MppClient, Policy, SessionPolicy, Wallet
from mpp_claude.convert.request import chat_request_to_messages
from mpp_claude.devnet import Devnet
from mpp_claude.protocol.receipt import Receipt
from mpp_claude.server.app import create_app
from mpp_claude.server.config import build_config
from mpp_claude.server.payments import Paid
from mpp_claude.server.routes import access_log, parse_object, read_body, services
from mpp_claude.server.serving import serve_chat
from mpp_claude.server.sessions import SessionSettings, enable_sessions
from mpp_claude.server.stores import SQLiteStore
from mpp_claude.tempo import tip20

N = int(os.environ.get("SESSION_BENCH_N", "60"))
WARM = 5
GOAL_MS = 2.0
HEADROOM = 20_000  # base units signed ahead ($0.02, ~60 requests of this size): one voucher per ~60 requests
MSG: Any = [{"role": "user", "content": "hello"}]
FEE = tip20.ALPHA_USD


async def free_chat(request: Request) -> Response:
    """The unpaid twin of the chat route: same conversion and upstream, no payment."""
    svc, entry = services(request), access_log(request)
    body = await read_body(request, svc.config.max_body_bytes)
    mreq = chat_request_to_messages(parse_object(body), options=svc.convert_options, now=svc.clock())
    paid = Paid(challenge_id="free", amount=0, currency=svc.config.currencies[0], payer="-", reference="free",
                receipt=Receipt(status="success", timestamp="2026-01-01T00:00:00Z", reference="free"))
    return await serve_chat(svc, mreq, paid, entry)


@contextmanager
def serve(app: Any) -> Iterator[str]:
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{server.servers[0].sockets[0].getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(10)


def interleaved(fns: list[Callable[[], Any]], n: int, warm: int) -> list[float]:
    for _ in range(warm):
        for fn in fns:
            fn()
    samples: list[list[float]] = [[] for _ in fns]
    for _ in range(n):
        for i, fn in enumerate(fns):
            t0 = time.perf_counter()
            fn()
            samples[i].append((time.perf_counter() - t0) * 1e3)
    return [statistics.median(s) for s in samples]


def book_writes(n: int = 2000) -> tuple[float, float]:
    """Median microseconds of hold + finish on one channel: compare-and-set, then transactions."""
    import asyncio
    from dataclasses import replace

    from mpp_claude.server.sessions import ChannelRecord, SQLiteBook
    from mpp_claude.tempo.session import ChannelAccount

    cid = "0x" + "11" * 32

    def hold(r: Any) -> Any:
        return replace(r, holds={**r.holds, "rq": (500, 1.0)})

    def finish(r: Any) -> Any:
        holds = dict(r.holds)
        holds.pop("rq", None)
        return replace(r, holds=holds, account=replace(r.account, spent=r.account.spent + 300))

    async def run(path: str, cached: bool) -> float:
        book = SQLiteBook(path)
        first = ChannelRecord(ChannelAccount(cid, 10**15, 0, 0, 10**15, b"\x01" * 65), payer="0x" + "22" * 20)
        await book.update(cid, lambda _r: first)
        samples = []
        for _ in range(n):
            if not cached:
                book._cache.clear()  # as if another worker had written: a transaction per write
            t0 = time.perf_counter()
            await book.update(cid, hold)
            if not cached:
                book._cache.clear()
            await book.update(cid, finish)
            samples.append((time.perf_counter() - t0) * 1e6)
        await book.close()
        return statistics.median(samples[n // 10:])

    with tempfile.TemporaryDirectory() as tmp:
        return asyncio.run(run(tmp + "/cas.sqlite3", True)), asyncio.run(run(tmp + "/tx.sqlite3", False))


def main() -> int:
    net = Devnet.start()
    tmp = Path(tempfile.mkdtemp(prefix="mpp-session-bench-"))
    try:
        payee = Account.create()
        net.fund(payee.address, 5 * tip20.UNIT, token=FEE, native=False)
        config = build_config(flags=dict(secret_key="bench-session-secret-0123456789abcdefgh",
                                         recipient=payee.address,
                                         rpc_url=net.rpc_url, chain_id=net.chain_id, store="memory://",
                                         realm="bench.session"))
        app = create_app(config, store=SQLiteStore(tmp / "server.sqlite3"))
        enable_sessions(app, SessionSettings(payee_key=payee.key.hex(), escrow=net.escrow_address,
                                             fee_token=FEE))
        app.router.routes.append(Route("/free/v1/chat/completions", free_chat, methods=["POST"]))
        accounts = [net.new_funded_account(20 * tip20.UNIT) for _ in range(3)]
        for acct in accounts:
            net.fund(acct.address, 5 * tip20.UNIT, token=FEE, native=False)
        with serve(app) as url:
            policy = Policy(max_per_minute=100_000)
            sess = MppClient(Wallet.from_private_key(bytes(accounts[0].key)), rpc_url=net.rpc_url,
                             allowed_origins=[url], ledger=tmp / "s.sqlite3", policy=policy,
                             session=SessionPolicy(max_deposit="5", deposit="2", fee_token=FEE,
                                                   escrows={net.chain_id: net.escrow_address}))
            ahead = MppClient(Wallet.from_private_key(bytes(accounts[2].key)), rpc_url=net.rpc_url,
                              allowed_origins=[url], ledger=tmp / "a.sqlite3", policy=policy,
                              session=SessionPolicy(max_deposit="5", deposit="2", fee_token=FEE,
                                                    headroom=HEADROOM,
                                                    escrows={net.chain_id: net.escrow_address}))
            charge = MppClient(Wallet.from_private_key(bytes(accounts[1].key)), rpc_url=net.rpc_url,
                               allowed_origins=[url], ledger=tmp / "c.sqlite3", policy=policy)
            plain = openai.OpenAI(base_url=url + "/free/v1", api_key="unused", max_retries=0)
            free_mpp = openai.OpenAI(base_url=url + "/free/v1", api_key="unused", http_client=charge,
                                     max_retries=0)
            oai_s = openai.OpenAI(base_url=url + "/v1", api_key="unused", http_client=sess, max_retries=0)
            oai_a = openai.OpenAI(base_url=url + "/v1", api_key="unused", http_client=ahead, max_retries=0)
            oai_c = openai.OpenAI(base_url=url + "/v1", api_key="unused", http_client=charge, max_retries=0)

            def stream(oai: openai.OpenAI) -> Callable[[], None]:
                def run() -> None:
                    chunks: Any = oai.chat.completions.create(model="claude-haiku-4-5", messages=MSG,
                                                         max_tokens=40,
                                                         stream=True)
                    text = "".join((c.choices[0].delta.content or "") for c in chunks if c.choices)
                    assert text  # read to the end, as an application does
                return run

            unpaid_ms, mpp_ms, session_ms, ahead_ms, charge_ms = interleaved(
                [stream(plain), stream(free_mpp), stream(oai_s), stream(oai_a), stream(oai_c)], N, WARM)
            sess.close_sessions()
            ahead.close_sessions()
    finally:
        net.stop()
    s_over, a_over, c_over = session_ms - unpaid_ms, ahead_ms - unpaid_ms, charge_ms - unpaid_ms
    print(f"streamed completion median, n={N} each, taking turns: unpaid {unpaid_ms:.2f} ms "
          f"(through MppClient {mpp_ms:.2f} ms), "
          f"session-paid {session_ms:.2f} ms (sign-ahead {ahead_ms:.2f} ms), charge-paid {charge_ms:.2f} ms")
    print(f"  per-request overhead: session {s_over:.2f} ms, with headroom {HEADROOM} {a_over:.2f} ms "
          f"(goal <= {GOAL_MS} ms), charge {c_over:.2f} ms")
    print(f"  session overhead beyond MppClient's own (unpaid through the same client): "
          f"{session_ms - mpp_ms:.2f} ms, sign-ahead {ahead_ms - mpp_ms:.2f} ms")
    print()
    print(f"| session-paid stream overhead, sign-ahead, vs unpaid via MppClient | "
          f"{ahead_ms - mpp_ms:.2f} ms | goal {GOAL_MS:.1f} ms | {(ahead_ms - mpp_ms) / GOAL_MS:.2f} |")
    print(f"| session-paid stream overhead, sign-ahead headroom (median) | {a_over:.2f} ms | "
          f"goal {GOAL_MS:.1f} ms | "
          f"{a_over / GOAL_MS:.2f} |")
    print(f"| session-paid stream overhead vs unpaid (median) | {s_over:.2f} ms | goal {GOAL_MS:.1f} ms | "
          f"{s_over / GOAL_MS:.2f} |")
    print(f"| session-paid vs charge-paid stream overhead | {s_over:.2f} ms | charge {c_over:.2f} ms | "
          f"{c_over / max(s_over, 1e-3):.1f}x less |")
    cas_us, tx_us = book_writes()
    print(f"| session book writes per request, hold + finish (SQLite, median) | {cas_us:.0f} us | "
          f"transaction per write {tx_us:.0f} us | {tx_us / cas_us:.1f}x faster |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
