"""The client's own cost of paying a streamed completion from a session channel (no server, no chain).

``bench/_session_e2e.py`` (run by ``session_bench.py``) measures the whole per-request overhead
(client, server, SQLite on both sides) and moves with the machine's load; this one isolates the
client: the openai SDK streams the same completion (12 SSE chunks) from an in-process
``MockTransport`` through

* ``MppClient`` without sessions, on an unpaid route (the baseline: same SDK, same bytes);
* ``MppClient(session=SessionPolicy(...))`` with an open channel and a cached challenge, the server
  answering with a session receipt header and an ``event: payment-receipt`` frame, as the reference
  server does, with the default policy (sign-ahead) and with ``headroom=0`` (a new voucher for every
  request: signing, budgets, a ledger row and a channel-store write).

Both ledgers and the channel store are SQLite files, as by default.  Requests take turns; the
median CPU time of this thread per request (``time.thread_time``: everything runs in it, and it
moves less than wall time when other processes load the machine).
Run it on another checkout with ``PYTHONPATH=<checkout> python bench/session_client_bench.py``
to compare versions (``--json`` prints the medians only).
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import httpx2
import openai

from mpp_claude.client import MppClient, Policy, SessionPolicy, Wallet
from mpp_claude.client.channels import StoredChannel
from mpp_claude.client.session import SessionOffer
from mpp_claude.protocol.challenge import new_challenge
from mpp_claude.protocol.receipt import Receipt, format_receipt
from mpp_claude.tempo import tip20
from mpp_claude.tempo.session import PayerChannel

N = int(os.environ.get("SESSION_CLIENT_BENCH_N", "400"))
WARM = 20
PRICE = 1_000  # base units a request may cost (the voucher step without sign-ahead)
USED = 333     # what the server charges per request
ORIGIN, PATH = "https://llm.bench", "/v1/chat/completions"
PAYEE, ESCROW, CID = "0x" + "ab" * 20, "0x" + "cd" * 20, "0x" + "5e" * 32
KEY = "0x" + "42" * 32


def chunk(i: int) -> bytes:
    data = {"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1, "model": "claude-haiku-4-5",
            "choices": [{"index": 0, "delta": {"content": f"word{i} "}, "finish_reason": None}]}
    return b"data: " + json.dumps(data).encode() + b"\n\n"


BODY = b"".join(chunk(i) for i in range(12))


def paid_response(spent: int) -> tuple[dict[str, str], bytes]:
    """What the reference server sends for a session-paid stream: receipt header, frames, receipt frame."""
    extra = {"intent": "session", "challengeId": "c", "channelId": CID, "acceptedCumulative": str(spent),
             "spent": str(spent)}
    receipt = Receipt(status="success", timestamp="2026-11-25T00:00:00Z", reference=CID, method="tempo",
                      extra=extra)
    frame = b"event: payment-receipt\ndata: " + json.dumps(receipt.to_wire_dict()).encode() + b"\n\n"
    headers = {"content-type": "text/event-stream", "payment-receipt": format_receipt(receipt)}
    return headers, BODY + frame + b"data: [DONE]\n\n"


class Server:
    """The paid route answers a voucher with a session receipt; the free route streams the same text.
    Responses are built before the run, so only the client's work is timed."""

    def __init__(self) -> None:
        self.paid = [paid_response((i + 1) * USED) for i in range(WARM + N + 1)]
        self.served = 0

    def __call__(self, request: httpx2.Request) -> httpx2.Response:
        if request.url.path.startswith("/free/"):
            return httpx2.Response(200, headers={"content-type": "text/event-stream"},
                                   content=BODY + b"data: [DONE]\n\n")
        assert request.headers["authorization"].startswith("Payment ")
        headers, body = self.paid[min(self.served, len(self.paid) - 1)]
        self.served += 1
        return httpx2.Response(200, headers=headers, content=body)


def session_client(tmp: Path, name: str, **session: Any) -> MppClient:
    client = MppClient(Wallet.from_private_key(KEY), rpc_url="http://127.0.0.1:1", allowed_origins=[ORIGIN],
                       transport=httpx2.MockTransport(Server()), ledger=tmp / f"{name}.sqlite3",
                       policy=Policy(max_per_minute=10**9, max_per_client=10**12, max_per_day=10**12),
                       session=SessionPolicy(max_deposit=10**9, **session))
    core: Any = client.session  # type: ignore[attr-defined]
    request = {"amount": str(PRICE), "currency": tip20.PATH_USD, "recipient": PAYEE,
               "methodDetails": {"chainId": 31337, "escrowContract": ESCROW}}
    expires = (datetime.now(timezone.utc) + timedelta(hours=1)).replace(microsecond=0)
    challenge = new_challenge("bench-secret-that-is-at-least-32-bytes-long", realm="llm.bench",
                              method="tempo", intent="session", request=request, expires=expires)
    core.remember(ORIGIN + PATH, SessionOffer(challenge, PRICE, tip20.PATH_USD, PAYEE, 31337, ESCROW, 0))
    channel = PayerChannel(CID, ESCROW, 31337, PAYEE, tip20.PATH_USD, 10**9)
    core.save(StoredChannel(channel, core.wallet_address, ORIGIN, PATH))
    return client


def streamer(client: MppClient, base: str) -> Callable[[], None]:
    oai = openai.OpenAI(base_url=base, api_key="unused", http_client=client, max_retries=0)

    def run() -> None:
        chunks: Any = oai.chat.completions.create(model="claude-haiku-4-5", max_tokens=40, stream=True,
                                                  messages=[{"role": "user", "content": "hello"}])
        assert "".join((c.choices[0].delta.content or "") for c in chunks if c.choices)
    return run


def measure() -> dict[str, float]:
    tmp = Path(tempfile.mkdtemp(prefix="mpp-session-client-bench-"))
    plain = MppClient(Wallet.from_private_key(KEY), rpc_url="http://127.0.0.1:1", allowed_origins=[ORIGIN],
                      transport=httpx2.MockTransport(Server()), ledger=tmp / "plain.sqlite3")
    fns = {"unpaid": streamer(plain, ORIGIN + "/free/v1"),
           "default": streamer(session_client(tmp, "default"), ORIGIN + "/v1"),
           "voucher each request": streamer(session_client(tmp, "each", headroom=0), ORIGIN + "/v1")}
    samples: dict[str, list[float]] = {k: [] for k in fns}
    for i in range(WARM + N):
        for name, fn in fns.items():
            t0 = time.thread_time()
            fn()
            if i >= WARM:
                samples[name].append((time.thread_time() - t0) * 1e3)
    return {k: statistics.median(v) for k, v in samples.items()}


def main() -> int:
    m = measure()
    if "--json" in sys.argv:
        print(json.dumps(m))
        return 0
    default, each = m["default"] - m["unpaid"], m["voucher each request"] - m["unpaid"]
    print(f"streamed completion through MppClient, client side only, CPU ms, n={N}, taking turns: unpaid "
          f"{m['unpaid']:.3f} ms, session default {m['default']:.3f} ms, a voucher every request "
          f"{m['voucher each request']:.3f} ms")
    print(f"  client's own session cost per request: default {default:.3f} ms, voucher every request "
          f"{each:.3f} ms")
    print()
    print(f"| session client cost per streamed request (default) | {default:.3f} ms | voucher every request "
          f"{each:.3f} ms | {each / max(default, 1e-3):.1f}x less |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
