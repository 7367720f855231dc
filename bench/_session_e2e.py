"""Per-request overhead of a session-paid streamed completion, beside the charge intent, same run.

One devnet, one reference server (``bench/_session_server.py``: ``create_app`` + ``enable_sessions``,
local upstream, SQLite store) in a process of its own, as in a deployment: a server in a thread of
this process would share the client's GIL, and every C call that releases it (SQLite, signing,
socket I/O) could leave the other thread waiting up to the 5 ms switch interval, which inflates
exactly the small differences measured here.  Three ways to get the same streamed chat
completion through the openai SDK (``stream=True``, read to the end), taking turns request
by request so load on the machine hits all three alike:

* unpaid: a free twin of ``/v1/chat/completions`` on the same server (same parsing,
  conversion, upstream and streaming; no payment step), with the openai SDK's own client and
  through ``MppClient`` (its fixed per-request cost, paid or not);
* session: ``MppClient`` with ``SessionPolicy``'s defaults, channel already open and challenge
  cached: a voucher rides on the request (a new one, signed and reserved in the budgets and the
  ledger, about every ten requests, the default sign-ahead; the others re-send the last one), the
  server verifies it, holds the quote and charges the exact usage in SQLite, a receipt frame ends
  the stream;
* session with more sign-ahead (``headroom``): the same, but a new voucher only every ~60
  requests;
* charge: ``MppClient`` paying each request with a Tempo transaction (402, sign, broadcast,
  receipt), the existing intent.

Reported: medians, and session/charge minus unpaid (the per-request overhead; goal for the
session: <= 2 ms); where the overhead goes: the client thread's CPU (``time.thread_time``) and
the server process's CPU (read from the server just before and after each request; the reads'
own cost is the same for every kind and cancels in the differences), the rest being waits
(wake-ups, fsyncs, scheduling, the other processes on the machine; negative when client and
server work at the same time on two cores).  Then, without HTTP or a client:
the server's two channel-book writes per session-paid request (hold, then charge the usage) in
SQLite, as one compare-and-set statement each on the cached record, against a read-modify-write
transaction per write (what another worker's write in between forces; every write before the
row versions).

``SESSION_SERVER_PROFILE=FILE`` profiles the server process (cProfile stats written to FILE when
it stops; the timings of such a run mean nothing).
"""

from __future__ import annotations

import http.client
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx2
import openai
from eth_account import Account

from mpp_claude.client import MppClient, Policy, SessionPolicy, Wallet
from mpp_claude.devnet import Devnet
from mpp_claude.tempo import tip20

HERE = Path(__file__).resolve().parent
N = int(os.environ.get("SESSION_BENCH_N", "60"))
WARM = 5
GOAL_MS = 2.0
HEADROOM = 20_000  # base units signed ahead ($0.02, ~60 requests of this size): one voucher per ~60 requests
MSG: Any = [{"role": "user", "content": "hello"}]
FEE = tip20.ALPHA_USD
PROBE = b'{"model":"claude-haiku-4-5","max_tokens":8,"messages":[{"role":"user","content":"hi"}]}'


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def server(net: Devnet, payee: Any, store: Path) -> Iterator[str]:
    """``bench/_session_server.py`` in its own process until the block ends (SIGTERM: uvicorn's
    clean shutdown, the sweeper stopped and the books closed); yields its URL.  The challenge
    secret and the payee key go through its environment, never its command line."""
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MPP_", "ANTHROPIC_"))}
    env["MPP_SECRET_KEY"] = "bench-session-secret-0123456789abcdefgh"
    env["MPP_SESSION_PAYEE_KEY"] = payee.key.hex()
    cmd = [sys.executable, str(HERE / "_session_server.py"), str(port), net.rpc_url, str(net.chain_id),
           payee.address, net.escrow_address, FEE, str(store)]
    log = store.with_name("server.log")  # a file, not a pipe nobody reads while the server runs
    with log.open("wb") as err:
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=err, cwd=HERE.parent)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx2.post(url + "/v1/chat/completions", content=PROBE,
                               headers={"content-type": "application/json"}, timeout=2).status_code == 402:
                    break
            except httpx2.TransportError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                tail = log.read_text(errors="replace")[-2000:]
                raise RuntimeError(f"the session server did not start: {tail}")
            time.sleep(0.05)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


class ServerCpu:
    """The server process's CPU seconds so far, read over one kept-alive stdlib connection (opened
    again if the server closed it: uvicorn drops a connection idle for 5 s)."""

    def __init__(self, url: str) -> None:
        self.conn = http.client.HTTPConnection(url.removeprefix("http://"), timeout=10)

    def __call__(self) -> float:
        for attempt in (1, 2):
            try:
                self.conn.request("GET", "/bench/cpu")
                return float(self.conn.getresponse().read())
            except (http.client.RemoteDisconnected, ConnectionError):
                self.conn.close()
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def close(self) -> None:
        self.conn.close()


@dataclass
class Samples:
    """Per request, in ms: wall time, the client thread's CPU, the server process's CPU."""

    wall: list[float] = field(default_factory=list)
    client: list[float] = field(default_factory=list)
    server: list[float] = field(default_factory=list)

    def medians(self) -> tuple[float, float, float]:
        return statistics.median(self.wall), statistics.median(self.client), statistics.median(self.server)


def interleaved(fns: list[Callable[[], Any]], n: int, warm: int, server_cpu: Callable[[], float]
                ) -> list[Samples]:
    """Run ``fns`` in turns, request by request, ``warm`` rounds unmeasured then ``n`` measured."""
    for _ in range(warm):
        for fn in fns:
            fn()
    samples = [Samples() for _ in fns]
    for _ in range(n):
        for fn, out in zip(fns, samples, strict=True):
            s0 = server_cpu()
            t0, c0 = time.perf_counter(), time.thread_time()
            fn()
            t1, c1 = time.perf_counter(), time.thread_time()
            s1 = server_cpu()
            out.wall.append((t1 - t0) * 1e3)
            out.client.append((c1 - c0) * 1e3)
            out.server.append((s1 - s0) * 1e3)
    return samples


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
        accounts = [net.new_funded_account(20 * tip20.UNIT) for _ in range(3)]
        for acct in accounts:
            net.fund(acct.address, 5 * tip20.UNIT, token=FEE, native=False)
        with server(net, payee, tmp / "server.sqlite3") as url:
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

            server_cpu = ServerCpu(url)
            try:
                idle, unpaid, mpp, session, sign_ahead, paid = interleaved(
                    [lambda: None, stream(plain), stream(free_mpp), stream(oai_s), stream(oai_a),
                     stream(oai_c)], N, WARM, server_cpu)
            finally:
                server_cpu.close()
            sess.close_sessions()
            ahead.close_sessions()
    finally:
        net.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    (unpaid_ms, unpaid_c, unpaid_s), (mpp_ms, mpp_c, mpp_s) = unpaid.medians(), mpp.medians()
    (session_ms, session_c, session_s), (ahead_ms, ahead_c, ahead_s) = session.medians(), sign_ahead.medians()
    charge_ms, charge_c, charge_s = paid.medians()
    probe_s = idle.medians()[2]
    s_over, a_over, c_over = session_ms - unpaid_ms, ahead_ms - unpaid_ms, charge_ms - unpaid_ms
    print(f"server in its own process; streamed completion median, n={N} each, taking turns: "
          f"unpaid {unpaid_ms:.2f} ms (through MppClient {mpp_ms:.2f} ms), "
          f"session-paid {session_ms:.2f} ms (sign-ahead {ahead_ms:.2f} ms), charge-paid {charge_ms:.2f} ms")
    print(f"  per-request overhead: session {s_over:.2f} ms, with headroom {HEADROOM} {a_over:.2f} ms "
          f"(goal <= {GOAL_MS} ms), charge {c_over:.2f} ms")
    print(f"  session overhead beyond MppClient's own (unpaid through the same client): "
          f"{session_ms - mpp_ms:.2f} ms, sign-ahead {ahead_ms - mpp_ms:.2f} ms")
    print(f"CPU per request, median ms (client thread / server process; the server's CPU-probe requests, "
          f"{probe_s:.2f} ms, taken off):")
    rows = (("unpaid, openai's client", unpaid_ms, unpaid_c, unpaid_s),
            ("unpaid, through MppClient", mpp_ms, mpp_c, mpp_s),
            ("session", session_ms, session_c, session_s),
            ("session, sign-ahead", ahead_ms, ahead_c, ahead_s),
            ("charge", charge_ms, charge_c, charge_s))
    for label, wall, client_cpu, server_cpu_ms in rows:
        print(f"  {label:26s} wall {wall:6.2f}  client {client_cpu:5.2f}  "
              f"server {server_cpu_ms - probe_s:5.2f}")
    for label, wall, client_cpu, server_cpu_ms in rows[2:]:
        dc, ds = client_cpu - unpaid_c, server_cpu_ms - unpaid_s
        print(f"  {label} minus unpaid: wall {wall - unpaid_ms:+.2f} = client CPU {dc:+.2f} + server CPU "
              f"{ds:+.2f} + waits {wall - unpaid_ms - dc - ds:+.2f}")
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
