"""The paying client: unpaid overhead, paid latency on the devnet, and the pympp client, same run.

1. unpaid overhead: a free request through ``MppClient`` vs a plain ``httpx2.Client`` on the same
   in-memory ``MockTransport`` (no network, so the difference is the client's own work).
   Goal: <= 0.1 ms.
2. paid latency: sequential paid ``POST /v1/chat/completions`` against ``mpp-claude serve`` on the
   devnet (separate process, memory store, local upstream), with our sync and async clients, and
   with the pympp 0.16 async client (``Mpp(...).client()``) against the same server.
   Goals: our paid median <= 8 ms; our client >= 5x faster than pympp's.

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
from mpp_claude.client.ledger import Ledger
from mpp_claude.devnet import Devnet
from mpp_claude.tempo import tip20

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
    """Adds up the time spent in the network transport, to separate the client's own work."""

    def __init__(self) -> None:
        self.inner = httpx2.HTTPTransport()
        self.spent = 0.0

    def handle_request(self, request: httpx2.Request) -> httpx2.Response:
        t0 = time.perf_counter()
        response = self.inner.handle_request(request)
        response.read()
        self.spent += time.perf_counter() - t0
        return response

    def close(self) -> None:
        self.inner.close()


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


def ours_sync(url: str, key: bytes, rpc_url: str, ledger: Path) -> tuple[float, float]:
    """(paid median ms, median ms of the client's own work per paid request: total minus network)."""
    timed = TimedTransport()
    client = MppClient(Wallet.from_private_key(key), rpc_url=rpc_url, allowed_origins=[url], policy=_policy(),
                       ledger=Ledger(ledger), transport=timed)
    own: list[float] = []

    def paid() -> None:
        before = timed.spent
        t0 = time.perf_counter()
        r = client.post(url + "/v1/chat/completions", content=BODY, headers=HEADERS)
        own.append((time.perf_counter() - t0 - (timed.spent - before)) * 1e3)
        assert r.status_code == 200 and client.last_receipt is not None, r.text

    try:
        total = _median_ms(paid, N_PAID, WARM)
        return total, statistics.median(own[WARM:])
    finally:
        client.close()


def bare_sync(url: str, key: bytes, rpc_url: str) -> float:
    """The floor: a minimal payer (402 -> build + sign -> retry; no policy, budgets or ledger)."""
    from mpp_claude.protocol.challenge import parse_challenges
    from mpp_claude.protocol.credential import Credential, format_credential
    from mpp_claude.tempo.pay import ChargePayer
    from mpp_claude.tempo.request import ChargeRequest
    from mpp_claude.tempo.rpc import RpcClient
    from mpp_claude.tempo.signer import LocalSigner

    rpc, http = RpcClient(rpc_url), httpx2.Client(timeout=60)
    payer = ChargePayer(rpc, LocalSigner(key))

    def paid() -> None:
        r = http.post(url + "/v1/chat/completions", content=BODY, headers=HEADERS)
        ch = parse_challenges(r.headers.get_list("www-authenticate"))[0]
        expires = int(ch.expires_at.timestamp()) if ch.expires_at else None
        cc = payer.credential(ChargeRequest.from_request(ch.request_data), challenge_id=ch.id, realm=ch.realm,
                              expires=expires)
        auth = format_credential(Credential(challenge=ch, payload=cc.payload, source=cc.source))
        r = http.post(url + "/v1/chat/completions", content=BODY, headers={**HEADERS, "authorization": auth})
        assert r.status_code == 200, r.text

    try:
        return _median_ms(paid, N_PAID, WARM)
    finally:
        http.close()
        rpc.close()


def ours_async(url: str, key: bytes, rpc_url: str, ledger: Path) -> float:
    async def run() -> float:
        async with AsyncMppClient(Wallet.from_private_key(key), rpc_url=rpc_url, allowed_origins=[url],
                                  policy=_policy(), ledger=Ledger(ledger)) as client:
            async def paid() -> None:
                r = await client.post(url + "/v1/chat/completions", content=BODY, headers=HEADERS)
                assert r.status_code == 200, r.text

            return await _amedian_ms(paid, N_PAID, WARM)

    return asyncio.run(run())


def pympp_async(url: str, key: bytes, rpc_url: str, chain_id: int) -> float:
    import mpp.methods.tempo.client as tempo_client
    from mpp.client import Mpp
    from mpp.methods.tempo import TempoAccount

    tempo_client.EXPIRING_NONCE_VALID_BEFORE_SECS = 25  # T4 allows 30 s (see module docstring)

    async def run() -> float:
        method = tempo_client.charge(account=TempoAccount.from_key("0x" + key.hex()), chain_id=chain_id,
                                     rpc_url=rpc_url, currency=tip20.PATH_USD)
        async with Mpp(methods=[method], allowed_origins=[url]) as mpp:
            http = mpp.client(timeout=60)

            async def paid() -> None:
                r = await http.post(url + "/v1/chat/completions", content=BODY, headers=HEADERS)
                assert r.status_code == 200, r.text

            try:
                return await _amedian_ms(paid, N_PAID, WARM)
            finally:
                await http.aclose()

    return asyncio.run(run())


def main() -> int:
    plain_ms, ours_ms = unpaid_overhead()
    overhead = ours_ms - plain_ms
    print(f"unpaid request: plain httpx2 {plain_ms:.4f} ms, MppClient {ours_ms:.4f} ms, "
          f"overhead {overhead:.4f} ms (goal <= 0.1 ms)")
    net = Devnet.start()
    try:
        accounts = [net.new_funded_account(500 * 10**6) for _ in range(4)]
        with server(net) as url, tempfile.TemporaryDirectory() as tmp:
            sync_ms, own_ms = ours_sync(url, bytes(accounts[0].key), net.rpc_url, Path(tmp) / "a.db")
            async_ms = ours_async(url, bytes(accounts[1].key), net.rpc_url, Path(tmp) / "b.db")
            peer_ms = pympp_async(url, bytes(accounts[2].key), net.rpc_url, net.chain_id)
            bare_ms = bare_sync(url, bytes(accounts[3].key), net.rpc_url)
    finally:
        net.stop()
    print(f"paid request median (n={N_PAID}, same server): MppClient {sync_ms:.2f} ms, AsyncMppClient "
          f"{async_ms:.2f} ms, pympp client {peer_ms:.2f} ms (goal <= 8 ms)")
    print(f"floor: a bare payer with no policy, budgets or ledger: {bare_ms:.2f} ms "
          f"(MppClient / bare = {sync_ms / bare_ms:.2f})")
    print(f"of which MppClient's own work (402 parse, policy, budgets, ledger, signing): {own_ms:.2f} ms; "
          "the rest is the two HTTP round trips and the server's verification and settlement")
    print(f"speed-up vs pympp: sync {peer_ms / sync_ms:.2f}x, async {peer_ms / async_ms:.2f}x (goal >= 5x)")
    print()
    print(f"| client unpaid overhead vs httpx2 | {overhead:.4f} ms | goal 0.1 ms | {overhead / 0.1:.2f} |")
    print(f"| client paid median (sync) | {sync_ms:.2f} ms | pympp {peer_ms:.2f} ms, goal 8 ms | "
          f"{peer_ms / sync_ms:.2f}x faster |")
    print(f"| client paid median vs bare payer | {sync_ms:.2f} ms | bare {bare_ms:.2f} ms | "
          f"{sync_ms / bare_ms:.2f} |")
    print(f"| client own work per paid request | {own_ms:.2f} ms | (incl. SQLite ledger) | - |")
    print(f"| client paid median (async) | {async_ms:.2f} ms | pympp {peer_ms:.2f} ms, goal 8 ms | "
          f"{peer_ms / async_ms:.2f}x faster |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
