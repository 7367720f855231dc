"""The paying client: unpaid overhead, paid latency on the devnet, and the pympp client, same run.

1. unpaid overhead: a free request through ``MppClient`` vs a plain ``httpx2.Client`` on the same
   in-memory ``MockTransport`` (no network, so the difference is the client's own work).
   Goal: <= 0.1 ms.
2. paid latency: sequential paid ``POST /v1/chat/completions`` against ``mpp-claude serve`` on the
   devnet (separate process, memory store, local upstream).  Clients take turns request by request
   so load on the machine hits them alike: ``MppClient`` with a bare payer (402 -> sign -> retry,
   no policy, budgets or ledger: the floor), and ``AsyncMppClient`` with the pympp 0.16 async
   client (``Mpp(...).client()``).
   Goals: our paid median <= 8 ms; our client >= 5x faster than pympp's.
3. own work per paid request: ``MppClient``'s time minus the time inside the network transport
   (wall clock, and the client thread's CPU time, which other processes on the machine disturb
   less), next to a plain ``httpx2.Client`` sending the same unpaid request through the same
   kind of timed transport (the HTTP client's own share, which every client pays).  Then where
   the payment work goes, per step (median per paid request, timers wrapped around the engine's
   steps of one more client; the wrappers add ~1 us each).  Goal: own work <= 1 ms.

pympp needs one shim on this devnet (pympp.md, "Using pympp 0.16 as a peer"): its expiring
nonce window is 60 s, anvil's T4 allows 30 s, so it is set to 25 s like ours.
Only ratios against the peer in the same run mean anything; absolute numbers depend on the machine.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx2
from eth_account import Account

from mpp_claude.client import AsyncMppClient, MppClient, Policy, Wallet
from mpp_claude.client._wire import default_transport
from mpp_claude.client.ledger import Ledger
from mpp_claude.devnet import Devnet
from mpp_claude.tempo import tip20
from mpp_claude.tempo.rpc import hex_int

HERE = Path(__file__).resolve().parent
N_UNPAID = 3000
N_PAID = 40
WARM = 5
BODY = json.dumps({"model": "claude-haiku-4-5", "max_tokens": 64,
                   "messages": [{"role": "user", "content": "benchmark me"}]}).encode()
HEADERS = {"content-type": "application/json"}
KEY = "0x" + "42" * 32


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _median_ms(fn: Callable[[], Any], n: int, warm: int) -> float:
    for _ in range(warm):
        fn()
    samples = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(samples)


async def _amedian_ms(fn: Callable[[], Awaitable[Any]], n: int, warm: int) -> float:
    for _ in range(warm):
        await fn()
    samples = []
    for _ in range(n):
        t0 = time.perf_counter()
        await fn()
        samples.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(samples)


def unpaid_overhead() -> tuple[float, float]:
    """(plain httpx2 median ms, MppClient median ms) for a free POST on a MockTransport.

    The two clients alternate request by request, so load on the machine hits both alike.
    """
    def handler(request: httpx2.Request) -> httpx2.Response:
        return httpx2.Response(200, content=b'{"ok":true}', headers={"content-type": "application/json"})

    plain = httpx2.Client(transport=httpx2.MockTransport(handler))
    ours = MppClient(Wallet.from_private_key(KEY), transport=httpx2.MockTransport(handler),
                     rpc_url="http://127.0.0.1:1", allowed_origins=["https://free.test"], ledger=None)
    url = "https://free.test/v1/chat/completions"
    a: list[float] = []
    b: list[float] = []
    for i in range(N_UNPAID + 200):
        for client, out in ((plain, a), (ours, b)) if i % 2 else ((ours, b), (plain, a)):
            t0 = time.perf_counter()
            client.post(url, content=BODY, headers=HEADERS)
            if i >= 200:
                out.append((time.perf_counter() - t0) * 1e3)
    plain.close()
    ours.close()
    return statistics.median(a), statistics.median(b)


class TimedTransport(httpx2.BaseTransport):
    """Adds up the time (wall and thread CPU) spent in the network transport (``inner``, default
    httpx2's own), to separate the client's own work."""

    def __init__(self, inner: httpx2.BaseTransport | None = None) -> None:
        self.inner = inner or httpx2.HTTPTransport()
        self.spent = 0.0
        self.cpu = 0.0

    def handle_request(self, request: httpx2.Request) -> httpx2.Response:
        t0, c0 = time.perf_counter(), time.thread_time()
        response = self.inner.handle_request(request)
        response.read()
        self.spent += time.perf_counter() - t0
        self.cpu += time.thread_time() - c0
        return response

    def close(self) -> None:
        self.inner.close()


class OwnWork:
    """Per request: wall and CPU time of a client call minus the time inside its TimedTransport."""

    def __init__(self, timed: TimedTransport) -> None:
        self.timed = timed
        self.wall: list[float] = []
        self.cpu: list[float] = []

    @contextmanager
    def measure(self) -> Iterator[None]:
        t = self.timed
        tw, tc, w0, c0 = t.spent, t.cpu, time.perf_counter(), time.thread_time()
        yield
        self.wall.append((time.perf_counter() - w0 - (t.spent - tw)) * 1e3)
        self.cpu.append((time.thread_time() - c0 - (t.cpu - tc)) * 1e3)

    def medians(self, skip: int) -> tuple[float, float]:
        return statistics.median(self.wall[skip:]), statistics.median(self.cpu[skip:])


@contextmanager
def server(net: Devnet) -> Iterator[str]:
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MPP_", "ANTHROPIC_"))}
    env["MPP_SECRET_KEY"] = "bench-client-secret-0123456789abcdefghij"
    cmd = [sys.executable, "-m", "mpp_claude.cli", "serve", "--store", "memory://", "--recipient",
           Account.create().address, "--rpc-url", net.rpc_url, "--chain-id", str(net.chain_id), "--realm",
           "bench.client", "--upstream", "local", "--log-level", "warning", "--port", str(port)]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=HERE.parent)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx2.post(url + "/v1/chat/completions", content=BODY, headers=HEADERS,
                               timeout=2).status_code == 402:
                    break
            except httpx2.TransportError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("mpp-claude serve did not start: "
                                   + (proc.stderr.read().decode()[-2000:] if proc.stderr else ""))
            time.sleep(0.05)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()


def _policy() -> Policy:
    # the benchmark pays ~45 times per client in a few seconds: raise the rate limit, keep the rest
    return Policy(max_per_minute=1000)


def _interleaved(fns: list[Callable[[], Any]], n: int, warm: int) -> list[float]:
    """Median ms of each callable, run in turns (order rotating) so machine load hits all alike."""
    samples: list[list[float]] = [[] for _ in fns]
    for i in range(warm + n):
        order = list(range(len(fns)))
        order = order[i % len(order):] + order[:i % len(order)]
        for k in order:
            t0 = time.perf_counter()
            fns[k]()
            if i >= warm:
                samples[k].append((time.perf_counter() - t0) * 1e3)
    return [statistics.median(x) for x in samples]


async def _ainterleaved(fns: list[Callable[[], Awaitable[Any]]], n: int, warm: int) -> list[float]:
    samples: list[list[float]] = [[] for _ in fns]
    for i in range(warm + n):
        order = list(range(len(fns)))
        order = order[i % len(order):] + order[:i % len(order)]
        for k in order:
            t0 = time.perf_counter()
            await fns[k]()
            if i >= warm:
                samples[k].append((time.perf_counter() - t0) * 1e3)
    return [statistics.median(x) for x in samples]


def sync_pair(url: str, keys: tuple[bytes, bytes, bytes], rpc_url: str, ledger: Path
              ) -> tuple[float, float, float, dict[str, float]]:
    """(MppClient median, MppClient-on-httpcore2 median, bare payer median, own-work figures),
    interleaved with a plain httpx2 client sending the unpaid request (the HTTP client's own share).

    ``MppClient`` runs on its default inner transport (``WireTransport``); the second one on
    ``httpx2.HTTPTransport`` (httpcore2), as before the lean transport, for comparison.
    The bare payer is the floor: 402 -> build + sign -> retry, no policy, budgets or ledger.
    Own work = MppClient's total time minus the time spent inside the network transport.
    """
    from mpp_claude.protocol.challenge import parse_challenges
    from mpp_claude.protocol.credential import Credential, format_credential
    from mpp_claude.tempo.pay import ChargePayer
    from mpp_claude.tempo.request import ChargeRequest
    from mpp_claude.tempo.rpc import RpcClient
    from mpp_claude.tempo.signer import LocalSigner

    timed = TimedTransport(default_transport())
    client = MppClient(Wallet.from_private_key(keys[0]), rpc_url=rpc_url, allowed_origins=[url],
                       policy=_policy(), ledger=Ledger(ledger), transport=timed)
    own = OwnWork(timed)

    def ours() -> None:
        with own.measure():
            r = client.post(url + "/v1/chat/completions", content=BODY, headers=HEADERS)
        assert r.status_code == 200 and client.last_receipt is not None, r.text

    on_httpcore = MppClient(Wallet.from_private_key(keys[2]), rpc_url=rpc_url, allowed_origins=[url],
                            policy=_policy(), ledger=Ledger(ledger.with_suffix(".h.db")),
                            transport=httpx2.HTTPTransport())

    def ours_httpcore() -> None:
        r = on_httpcore.post(url + "/v1/chat/completions", content=BODY, headers=HEADERS)
        assert r.status_code == 200 and on_httpcore.last_receipt is not None, r.text

    plain_timed = TimedTransport()
    plain = httpx2.Client(transport=plain_timed, timeout=60)
    floor = OwnWork(plain_timed)

    def unpaid() -> None:
        with floor.measure():
            r = plain.post(url + "/v1/chat/completions", content=BODY, headers=HEADERS)
        assert r.status_code == 402, r.text

    rpc, http = RpcClient(rpc_url), httpx2.Client(timeout=60)
    payer = ChargePayer(rpc, LocalSigner(keys[1]))

    def bare() -> None:
        r = http.post(url + "/v1/chat/completions", content=BODY, headers=HEADERS)
        ch = parse_challenges(r.headers.get_list("www-authenticate"))[0]
        expires = int(ch.expires_at.timestamp()) if ch.expires_at else None
        cc = payer.credential(ChargeRequest.from_request(ch.request_data), challenge_id=ch.id, realm=ch.realm,
                              expires=expires)
        auth = format_credential(Credential(challenge=ch, payload=cc.payload, source=cc.source))
        r = http.post(url + "/v1/chat/completions", content=BODY, headers={**HEADERS, "authorization": auth})
        assert r.status_code == 200, r.text

    try:
        ours_ms, httpcore_ms, bare_ms, _ = _interleaved([ours, ours_httpcore, bare, unpaid], N_PAID, WARM)
        wall, cpu = own.medians(WARM)
        floor_wall, floor_cpu = floor.medians(WARM)
        return ours_ms, httpcore_ms, bare_ms, {"wall": wall, "cpu": cpu, "floor_wall": floor_wall,
                                               "floor_cpu": floor_cpu}
    finally:
        client.close()
        on_httpcore.close()
        plain.close()
        http.close()
        rpc.close()


#: The engine's steps timed for the breakdown: (label, attribute of the engine or its payer).
#: The 200's receipt is parsed, and the ledger's outcome written, when the outcome write is applied: in
#: the next request's wait for the server (WireTransport), inside the transport's time, or in a
#: background thread (client/_writebehind.py), no longer in these steps.
STEPS = (("402 + policy, 200's headers", "on_response"), ("budgets + ledger reservation", "_reserve"),
         ("build + sign tx, credential", "payer.sign"), ("PaymentReceipt, outcome queued", "deliver"))


def breakdown(url: str, key: bytes, rpc_url: str, ledger: Path) -> tuple[dict[str, float], float]:
    """Median ms per paid request of each step in ``STEPS`` (wrapped on one client's engine), and
    that client's own-work median (wall) with the wrappers in place."""
    timed = TimedTransport(default_transport())
    client = MppClient(Wallet.from_private_key(key), rpc_url=rpc_url, allowed_origins=[url],
                       policy=_policy(), ledger=Ledger(ledger), transport=timed)
    engine = client._engine  # bench only: time the engine's steps without touching its code
    per: dict[str, list[float]] = {label: [] for label, _ in STEPS}
    current: dict[str, float] = {}

    def wrap(label: str, owner: Any, name: str) -> None:
        fn = getattr(owner, name)

        def timed_step(*args: Any, **kwargs: Any) -> Any:
            t0 = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                current[label] = current.get(label, 0.0) + time.perf_counter() - t0

        setattr(owner, name, timed_step)

    for label, attr in STEPS:
        owner, _, name = attr.rpartition(".")
        wrap(label, getattr(engine, owner) if owner else engine, name)
    own = OwnWork(timed)
    try:
        for i in range(WARM + N_PAID):
            current.clear()
            with own.measure():
                r = client.post(url + "/v1/chat/completions", content=BODY, headers=HEADERS)
            assert r.status_code == 200, r.text
            if i >= WARM:
                for label, _ in STEPS:
                    per[label].append(current.get(label, 0.0) * 1e3)
    finally:
        client.close()
    return {label: statistics.median(v) for label, v in per.items()}, own.medians(WARM)[0]


def async_pair(url: str, keys: tuple[bytes, bytes, bytes], rpc_url: str, chain_id: int, ledger: Path
               ) -> tuple[float, float, float]:
    """(AsyncMppClient median, AsyncMppClient-on-httpcore2 median, pympp client median), interleaved
    in one event loop.

    ``AsyncMppClient`` runs on its default inner transport (``AsyncWireTransport``); the second one
    on ``httpx2.AsyncHTTPTransport`` (httpcore2 over anyio), as before the lean transport.
    """
    import mpp.methods.tempo.client as tempo_client
    from mpp.client import Mpp
    from mpp.methods.tempo import TempoAccount

    tempo_client.EXPIRING_NONCE_VALID_BEFORE_SECS = 25  # T4 allows 30 s (see module docstring)

    async def run() -> tuple[float, float, float]:
        method = tempo_client.charge(account=TempoAccount.from_key("0x" + keys[1].hex()), chain_id=chain_id,
                                     rpc_url=rpc_url, currency=tip20.PATH_USD)
        async with AsyncMppClient(Wallet.from_private_key(keys[0]), rpc_url=rpc_url, allowed_origins=[url],
                                  policy=_policy(), ledger=Ledger(ledger)) as client, \
                AsyncMppClient(Wallet.from_private_key(keys[2]), rpc_url=rpc_url, allowed_origins=[url],
                               policy=_policy(), ledger=Ledger(ledger.with_suffix(".h.db")),
                               transport=httpx2.AsyncHTTPTransport()) as on_httpcore, \
                Mpp(methods=[method], allowed_origins=[url]) as mpp:
            http = mpp.client(timeout=60)

            async def ours() -> None:
                r = await client.post(url + "/v1/chat/completions", content=BODY, headers=HEADERS)
                assert r.status_code == 200, r.text

            async def ours_httpcore() -> None:
                r = await on_httpcore.post(url + "/v1/chat/completions", content=BODY, headers=HEADERS)
                assert r.status_code == 200, r.text

            async def peer() -> None:
                r = await http.post(url + "/v1/chat/completions", content=BODY, headers=HEADERS)
                assert r.status_code == 200, r.text

            try:
                ours_ms, httpcore_ms, peer_ms = await _ainterleaved([ours, ours_httpcore, peer], N_PAID, WARM)
            finally:
                await http.aclose()
            return ours_ms, httpcore_ms, peer_ms

    return asyncio.run(run())


def main() -> int:
    plain_ms, ours_ms = unpaid_overhead()
    overhead = ours_ms - plain_ms
    print(f"unpaid request: plain httpx2 {plain_ms:.4f} ms, MppClient {ours_ms:.4f} ms, "
          f"overhead {overhead:.4f} ms (goal <= 0.1 ms)")
    net = Devnet.start()
    try:
        keys = [bytes(net.new_funded_account(500 * 10**6).key) for _ in range(7)]
        with server(net) as url, tempfile.TemporaryDirectory() as tmp:
            first_block = hex_int(net.rpc.call("eth_blockNumber"))
            sync_ms, httpcore_ms, bare_ms, own = sync_pair(url, (keys[0], keys[1], keys[5]), net.rpc_url,
                                                           Path(tmp) / "a.db")
            blocks = (first_block, hex_int(net.rpc.call("eth_blockNumber")))
            steps, wrapped_own = breakdown(url, keys[4], net.rpc_url, Path(tmp) / "c.db")
            async_ms, async_httpcore_ms, peer_ms = async_pair(url, (keys[2], keys[3], keys[6]), net.rpc_url,
                                                              net.chain_id, Path(tmp) / "b.db")
    finally:
        net.stop()
    payment = own["wall"] - own["floor_wall"]
    print(f"paid request median, n={N_PAID} each, same server, clients taking turns:")
    print(f"  MppClient {sync_ms:.2f} ms vs a bare payer (no policy, budgets or ledger) {bare_ms:.2f} ms "
          f"(ratio {sync_ms / bare_ms:.2f}); MppClient on httpx2.HTTPTransport {httpcore_ms:.2f} ms")
    print(f"  (devnet blocks {blocks[0]}..{blocks[1]}: one per payment; anvil recomputes the whole state "
          f"root for each block, and the state grows by ~3 storage slots per payment, so each payment "
          f"costs anvil ~1 ms more per 100 blocks mined before it)")
    print(f"  AsyncMppClient {async_ms:.2f} ms vs the pympp client {peer_ms:.2f} ms: "
          f"{peer_ms / async_ms:.2f}x faster (goal >= 5x); AsyncMppClient on httpx2.AsyncHTTPTransport "
          f"{async_httpcore_ms:.2f} ms")
    print("own work per paid request (total minus time inside the network transport), median:")
    print(f"  MppClient {own['wall']:.3f} ms wall, {own['cpu']:.3f} ms CPU (goal <= 1 ms); a plain httpx2 "
          f"client sending the unpaid request: {own['floor_wall']:.3f} ms wall, "
          f"{own['floor_cpu']:.3f} ms CPU")
    print(f"  so the payment itself (402 parse, policy, budgets, ledger, signing, the retry's request): "
          f"{payment:.3f} ms wall")
    print(f"  per step (one more client, steps wrapped in timers; its own work {wrapped_own:.3f} ms):")
    for label, ms in steps.items():
        print(f"    {label:34s} {ms:.3f} ms")
    rest = wrapped_own - sum(steps.values())
    print(f"    {'HTTP client, shell, request copy':34s} {rest:.3f} ms")
    print()
    print(f"| client unpaid overhead vs httpx2 | {overhead:.4f} ms | goal 0.1 ms | {overhead / 0.1:.2f} |")
    print(f"| client paid median (async) vs pympp client | {async_ms:.2f} ms | pympp {peer_ms:.2f} ms | "
          f"{peer_ms / async_ms:.2f}x faster (goal 5x) |")
    print(f"| client paid median (sync) vs bare payer | {sync_ms:.2f} ms | bare {bare_ms:.2f} ms, "
          f"goal 8 ms | {sync_ms / bare_ms:.2f} |")
    print(f"| client paid median (sync): WireTransport vs httpx2.HTTPTransport inside | {sync_ms:.2f} ms | "
          f"httpcore2 {httpcore_ms:.2f} ms | {httpcore_ms / sync_ms:.2f}x faster |")
    print(f"| client paid median (async): AsyncWireTransport vs httpx2.AsyncHTTPTransport inside | "
          f"{async_ms:.2f} ms | httpcore2 {async_httpcore_ms:.2f} ms | "
          f"{async_httpcore_ms / async_ms:.2f}x faster |")
    for kind in ("wall", "cpu"):
        value = own[kind]
        print(f"| client own work per paid request ({kind}) | {value:.2f} ms | goal 1 ms | {value:.2f} |")
    print(f"| client own work minus plain httpx2's (payment work) | {payment:.2f} ms | httpx2 "
          f"{own['floor_wall']:.2f} ms | - |")
    # the machine's speed swings up to 2x for minutes: this ratio (same run) compares runs better
    print(f"| client own work per paid request, in plain httpx2's (wall, same run) | "
          f"{own['wall'] / own['floor_wall']:.2f}x | httpx2 {own['floor_wall']:.2f} ms | - |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
