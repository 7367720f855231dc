"""Paid proxy throughput and latency: mpp_claude's server vs a pympp server, same devnet, same run.

Scenarios:

1. paid requests: ``mpp-claude serve`` (memory store, offline local upstream) and a pympp 0.16
   server doing the same paid work (``bench/_pympp_server.py``), each in its own process,
   driven by the same minimal client (402 -> build + sign a Tempo charge -> paid retry); the
   two servers run side by side and are measured in alternating rounds.
   a. latency: sequential paid requests on an automine devnet (a block per payment, the
      quickest confirmation there is).
   b. throughput: 32 concurrent payers on a devnet that mines a block every 20 ms with many
      payments in it, as a chain does.  On automine every payment costs anvil a fresh block
      (~2.5 ms of CPU, ~5 ms under load), which on a 2-CPU machine takes the CPU the servers
      need and caps both at the chain's rate; with interval blocks anvil costs ~0.5 ms per
      payment and the servers' own work decides.  The server's CPU per paid request (402 +
      paid retry, from /proc) is printed too, with the shared costs (anvil, load generator).
   Goal: mpp_claude >= 3x pympp's requests/s.  Also each SDK as a pair (its own async paying
   client against its own server, automine), which is what a user of either stack gets.
2. translation overhead: converting an OpenAI request to Anthropic and the answer back (JSON
   and SSE), compared with calling the local upstream directly with the Anthropic body, in
   process.  Goal: <= 1 ms.

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
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx2
from eth_account import Account

from mpp_claude.convert.request import chat_request_to_messages
from mpp_claude.convert.response import message_to_chat_completion
from mpp_claude.convert.sse import SseParser
from mpp_claude.convert.stream import StreamTranslator
from mpp_claude.devnet import Devnet
from mpp_claude.protocol.challenge import parse_challenges
from mpp_claude.protocol.credential import Credential, format_credential
from mpp_claude.server.upstreams import LocalUpstream
from mpp_claude.tempo.charge import build_charge_transaction, sign_charge
from mpp_claude.tempo.request import ChargeRequest
from mpp_claude.tempo.rpc import RpcClient
from mpp_claude.tempo.signer import LocalSigner

HERE = Path(__file__).resolve().parent
PATH_USD = "0x20c0000000000000000000000000000000000000"
ROUNDS = 3  # latency rounds
THROUGHPUT_ROUNDS = 5
SEQUENTIAL = 15
CLIENTS = 32  # concurrent payers in the throughput phase
PER_CLIENT = 8
PAIR_CLIENTS = 8  # each SDK's own async clients
BLOCK_TIME = 0.02  # seconds between blocks in the throughput phase
BODY = json.dumps({"model": "claude-haiku-4-5", "max_tokens": 64,
                   "messages": [{"role": "user", "content": "benchmark me"}]}).encode()
HEADERS = {"content-type": "application/json"}
IDLE_S = 1.0  # a kept-alive connection idle longer is replaced (node and uvicorn close them at 5 s)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (Linux ``/proc``)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@contextmanager
def process(cmd: list[str], url: str, ready: Callable[[httpx2.Response], bool], env: dict[str, str]
            ) -> Iterator[int]:
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=HERE.parent)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if ready(httpx2.post(url + "/v1/chat/completions", content=BODY, headers=HEADERS, timeout=2)):
                    break
            except httpx2.TransportError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                err = proc.stderr.read().decode() if proc.stderr and proc.poll() is not None else ""
                raise RuntimeError(f"{cmd[2]} did not start: {err[-2000:]}")
            time.sleep(0.05)
        yield proc.pid
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()


class Head:
    """Response headers of a ``RawConnection`` exchange (names lower-cased, repeats kept)."""

    def __init__(self, pairs: list[tuple[str, str]]) -> None:
        self.pairs = pairs

    def get_all(self, name: str) -> list[str]:
        return [v for k, v in self.pairs if k == name]

    def __contains__(self, name: object) -> bool:
        return any(k == name for k, _ in self.pairs)


class RawConnection:
    """One kept-alive HTTP/1.1 connection that POSTs ``BODY`` in one write and reads one answer
    framed by Content-Length or chunked (uvicorn sends the first, node the second).  The load
    generator must not be what limits the servers: ``httpx2`` costs ~0.7 ms of CPU per request,
    ``http.client`` ~0.4 ms (its header parser), this a fraction of that."""

    def __init__(self, netloc: str) -> None:
        host, _, port = netloc.rpartition(":")
        self.sock = socket.create_connection((host, int(port)), timeout=60)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.host = netloc
        self.buf = b""

    def post(self, path: str, headers: dict[str, str]) -> tuple[int, Head, bytes]:
        lines = [f"POST {path} HTTP/1.1", f"host: {self.host}", f"content-length: {len(BODY)}"]
        lines += [f"{k}: {v}" for k, v in headers.items()]
        self.sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + BODY)
        while (end := self.buf.find(b"\r\n\r\n")) < 0:
            self.buf += self._recv()
        head, self.buf = self.buf[:end].decode("latin-1").split("\r\n"), self.buf[end + 4:]
        pairs = [(k.strip().lower(), v.strip()) for k, _, v in (line.partition(":") for line in head[1:])]
        length = next((int(v) for k, v in pairs if k == "content-length"), None)
        body = self._read(length) if length is not None else self._read_chunked()
        return int(head[0].split(" ", 2)[1]), Head(pairs), body

    def _read(self, length: int) -> bytes:
        while len(self.buf) < length:
            self.buf += self._recv()
        data, self.buf = self.buf[:length], self.buf[length:]
        return data

    def _read_chunked(self) -> bytes:  # node answers chunked (no trailers here)
        parts = []
        while True:
            while (end := self.buf.find(b"\r\n")) < 0:
                self.buf += self._recv()
            size, self.buf = int(self.buf[:end].split(b";")[0], 16), self.buf[end + 2:]
            parts.append(self._read(size + 2)[:size])
            if size == 0:
                return b"".join(parts)

    def _recv(self) -> bytes:
        data = self.sock.recv(65536)
        if not data:
            raise ConnectionError("the server closed the connection")
        return data

    def close(self) -> None:
        self.sock.close()


class Payer:
    """The same minimal paying client for both servers: one kept-alive ``RawConnection`` per
    server and one pooled RPC client."""

    gas_limit: int | None = None  # None: the library's default

    def __init__(self, account: Any, rpc_url: str) -> None:
        self.signer = LocalSigner.from_account(account)
        self.rpc = RpcClient(rpc_url)
        self._conns: dict[str, tuple[RawConnection, float]] = {}

    def _post(self, url: str, headers: dict[str, str]) -> tuple[int, Head, bytes]:
        parts = urlsplit(url)
        conn, last = self._conns.get(parts.netloc, (None, 0.0))
        if conn is not None and time.monotonic() - last > IDLE_S:  # servers drop idle connections
            conn.close()
            conn = None
        if conn is None:
            conn = RawConnection(parts.netloc)
        result = conn.post(parts.path, headers)
        self._conns[parts.netloc] = (conn, time.monotonic())
        return result

    def paid_post(self, url: str) -> None:
        status, headers, body = self._post(url, HEADERS)
        assert status == 402, body
        challenge = parse_challenges(headers.get_all("www-authenticate") or [])[0]
        request = ChargeRequest.from_request(challenge.request_data)
        expires = int(challenge.expires_at.timestamp()) if challenge.expires_at else None
        gas = {} if self.gas_limit is None else {"gas_limit": self.gas_limit}
        tx = build_charge_transaction(request, challenge_id=challenge.id, realm=challenge.realm,
                                      now=int(time.time()), expires=expires,
                                      max_fee_per_gas=max(2 * self.rpc.base_fee(), 1), **gas)
        signed = sign_charge(tx, self.signer)
        credential = Credential(challenge=challenge, payload=signed.payload(), source=signed.source)
        auth = format_credential(credential)
        status, headers, body = self._post(url, {**HEADERS, "authorization": auth})
        assert status == 200 and "payment-receipt" in headers, body

    def close(self) -> None:
        for conn, _ in self._conns.values():
            conn.close()
        self.rpc.close()


def sequential_ms(payer: Payer, url: str) -> list[float]:
    for _ in range(3):
        payer.paid_post(url)
    samples = []
    for _ in range(SEQUENTIAL):
        t0 = time.perf_counter()
        payer.paid_post(url)
        samples.append((time.perf_counter() - t0) * 1e3)
    return samples


def throughput(payers: list[Payer], url: str, per_client: int = PER_CLIENT) -> float:
    errors: list[BaseException] = []

    def run(p: Payer) -> None:
        try:
            for _ in range(per_client):
                p.paid_post(url)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(p,)) for p in payers]
    # A payer whose answer arrived waits for the GIL; at the default 5 ms switch interval those
    # waits, not the servers, set the pace of 32 payer threads.
    switch = sys.getswitchinterval()
    sys.setswitchinterval(0.0005)
    t0 = time.perf_counter()
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        sys.setswitchinterval(switch)
    elapsed = time.perf_counter() - t0
    if errors:
        raise errors[0]
    return len(payers) * per_client / elapsed


def _ours_client(account: Any, rpc_url: str, origin: str) -> Any:
    from mpp_claude.client import AsyncMppClient, Policy, Wallet

    policy = Policy([origin], max_per_minute=100_000, max_per_day="1000", max_per_client="1000")
    return AsyncMppClient(Wallet.from_private_key(bytes(account.key)), rpc_url=rpc_url, policy=policy,
                          ledger=None, timeout=60)


def _pympp_client(account: Any, rpc_url: str, chain_id: int) -> Any:
    from mpp.client.transport import Mpp as PymppClient
    from mpp.methods.tempo import client as tempo_client
    from mpp.methods.tempo.account import TempoAccount

    tempo_client.EXPIRING_NONCE_VALID_BEFORE_SECS = 25  # the T4 devnet's window is 30 s (pympp.md)
    method = tempo_client.charge(account=TempoAccount.from_key("0x" + bytes(account.key).hex()),
                                 chain_id=chain_id, rpc_url=rpc_url, currencies=[PATH_USD])
    return PymppClient(methods=[method]).client(timeout=60)


async def pair_run(clients: list[Any], url: str) -> tuple[list[float], float]:
    """Each SDK's own async client against its own server: sequential latencies, then req/s."""
    async def paid(client: Any) -> None:
        r = await client.post(url, content=BODY, headers=HEADERS)
        assert r.status_code == 200, r.text

    for _ in range(3):
        await paid(clients[0])
    samples: list[float] = []
    for _ in range(SEQUENTIAL):
        t0 = time.perf_counter()
        await paid(clients[0])
        samples.append((time.perf_counter() - t0) * 1e3)

    async def run(client: Any) -> None:
        for _ in range(PER_CLIENT):
            await paid(client)

    t0 = time.perf_counter()
    await asyncio.gather(*(run(c) for c in clients))
    return samples, len(clients) * PER_CLIENT / (time.perf_counter() - t0)


def translation_overhead() -> tuple[float, float]:
    """Median extra ms per request of the OpenAI<->Anthropic translation (JSON, SSE)."""
    openai_body = json.loads(BODY)
    upstream = LocalUpstream(seed=b"bench")
    mreq = chat_request_to_messages(openai_body)
    anthropic_body = dict(mreq.body)

    async def direct(stream: bool) -> None:
        up = await upstream.send(anthropic_body, stream=stream)
        if stream and up.stream is not None:
            async for _ in up.stream:
                pass

    async def translated(stream: bool) -> None:
        req = chat_request_to_messages(openai_body)
        up = await upstream.send(dict(req.body), stream=stream)
        if stream and up.stream is not None:
            parser, tr = SseParser(), StreamTranslator(model=req.requested_model, created=0, request=req)
            async for chunk in up.stream:
                for event in parser.feed(chunk):
                    tr.feed(event)
            tr.close()
        else:
            message_to_chat_completion(up.json, model=req.requested_model, created=0, request=req)

    async def median(fn: Callable[[bool], Any], stream: bool, n: int = 400) -> float:
        for _ in range(50):
            await fn(stream)
        samples = []
        for _ in range(n):
            t0 = time.perf_counter()
            await fn(stream)
            samples.append((time.perf_counter() - t0) * 1e3)
        return statistics.median(samples)

    async def both() -> tuple[float, float]:
        out = []
        for stream in (False, True):
            out.append(await median(translated, stream) - await median(direct, stream))
        return out[0], out[1]

    return asyncio.run(both())


async def _pair(name: str, accounts: list[Any], net: Devnet, url: str) -> tuple[list[float], float]:
    if name == "mpp_claude":
        clients = [_ours_client(a, net.rpc_url, url) for a in accounts]
    else:
        clients = [_pympp_client(a, net.rpc_url, net.chain_id) for a in accounts]
    try:
        return await pair_run(clients, url + "/v1/chat/completions")
    finally:
        for c in clients:
            await c.aclose()


@contextmanager
def servers(net: Devnet) -> Iterator[tuple[dict[str, str], dict[str, int]]]:
    """Both servers on ``net``, each in its own process: ``(urls, pids)`` by name."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MPP_", "ANTHROPIC_"))}
    env["MPP_SECRET_KEY"] = "bench-ours-secret-0123456789abcdefghijkl"
    ports = {"mpp_claude": _free_port(), "pympp": _free_port()}
    cmds = {
        "mpp_claude": [sys.executable, "-m", "mpp_claude.cli", "serve", "--store", "memory://",
                       "--recipient", Account.create().address, "--rpc-url", net.rpc_url,
                       "--chain-id", str(net.chain_id), "--realm", "bench.ours", "--upstream", "local",
                       "--log-level", "warning", "--port", str(ports["mpp_claude"])],
        "pympp": [sys.executable, str(HERE / "_pympp_server.py"), str(ports["pympp"]), net.rpc_url,
                  str(net.chain_id), Account.create().address],
    }
    urls = {name: f"http://127.0.0.1:{port}" for name, port in ports.items()}
    with ExitStack() as stack:
        pids = {name: stack.enter_context(process(cmd, urls[name], lambda r: r.status_code == 402, env))
                for name, cmd in cmds.items()}
        yield urls, pids


def latency_phase() -> tuple[dict[str, list[float]], dict[str, tuple[list[float], float]]]:
    """Automine devnet (a block per payment, the quickest confirmation): sequential latency of
    both servers with the same payer, then each SDK's own client against its own server."""
    latencies: dict[str, list[float]] = {"mpp_claude": [], "pympp": []}
    net = Devnet.start()
    try:
        accounts = [net.new_funded_account(500 * 10**6) for _ in range(PAIR_CLIENTS)]
        with servers(net) as (urls, _), ExitStack() as stack:
            payer = Payer(accounts[0], net.rpc_url)
            stack.callback(payer.close)
            for _ in range(ROUNDS):  # alternate, so drifting machine load hits both alike
                for name, url in urls.items():
                    latencies[name] += sequential_ms(payer, url + "/v1/chat/completions")
            pairs = {name: asyncio.run(_pair(name, accounts, net, urls[name])) for name in urls}
    finally:
        net.stop()
    return latencies, pairs


Rates = dict[str, list[float]]


def throughput_phase() -> tuple[Rates, Rates, dict[str, list[tuple[float, float]]]]:
    """A devnet mining a block every BLOCK_TIME s with many payments in each, like a chain
    (automine spends ~2.5 ms of anvil CPU on a fresh block per payment, 5 ms under load, on the
    CPUs the servers need): CLIENTS concurrent payers, alternating rounds.  Returns paid
    requests/s, server CPU ms per paid request, and (anvil, load generator) CPU ms per request."""
    rates: dict[str, list[float]] = {"mpp_claude": [], "pympp": []}
    cpu: dict[str, list[float]] = {"mpp_claude": [], "pympp": []}
    shared: dict[str, list[tuple[float, float]]] = {"mpp_claude": [], "pympp": []}
    net = Devnet.start(extra_args=("--block-time", str(BLOCK_TIME)))
    try:
        accounts = [net.new_funded_account(500 * 10**6) for _ in range(CLIENTS)]
        with servers(net) as (urls, pids), ExitStack() as stack:
            payers = [Payer(a, net.rpc_url) for a in accounts]
            for p in payers:
                stack.callback(p.close)
            for url in urls.values():  # warm up: connections, caches
                throughput(payers, url + "/v1/chat/completions", per_client=2)
            n = CLIENTS * PER_CLIENT
            for _ in range(THROUGHPUT_ROUNDS):
                for name, url in urls.items():
                    before = cpu_seconds(pids[name]), cpu_seconds(net.proc.pid), time.process_time()
                    rates[name].append(throughput(payers, url + "/v1/chat/completions"))
                    cpu[name].append((cpu_seconds(pids[name]) - before[0]) * 1e3 / n)
                    shared[name].append(((cpu_seconds(net.proc.pid) - before[1]) * 1e3 / n,
                                         (time.process_time() - before[2]) * 1e3 / n))
    finally:
        net.stop()
    return rates, cpu, shared


def main() -> int:
    json_ms, sse_ms = translation_overhead()
    latencies, pairs = latency_phase()
    rates, cpu, shared = throughput_phase()
    names = ("mpp_claude", "pympp")
    summary = {name: (statistics.median(latencies[name]), statistics.median(rates[name]),
                      statistics.median(cpu[name])) for name in names}
    for name, (latency, rps, cpu_ms) in summary.items():
        anvil_ms = statistics.median(a for a, _ in shared[name])
        load_ms = statistics.median(b for _, b in shared[name])
        print(f"{name:10s} paid request median {latency:7.2f} ms (sequential, automine, "
              f"n={len(latencies[name])}); {rps:7.1f} paid requests/s ({CLIENTS} clients x {PER_CLIENT}, "
              f"{BLOCK_TIME * 1e3:.0f} ms blocks, median of {THROUGHPUT_ROUNDS} rounds); "
              f"server CPU {cpu_ms:.2f} ms per paid request (shared: anvil {anvil_ms:.2f} ms, "
              f"load generator {load_ms:.2f} ms; {os.cpu_count()} CPUs in all)")
    ours, peer = summary["mpp_claude"], summary["pympp"]
    print(f"throughput ratio mpp_claude / pympp: {ours[1] / peer[1]:.2f}x (goal >= 3x); "
          f"latency ratio pympp / mpp_claude: {peer[0] / ours[0]:.2f}x; "
          f"server CPU ratio pympp / mpp_claude: {peer[2] / ours[2]:.2f}x "
          f"(paid requests per CPU second: {1e3 / ours[2]:.0f} vs {1e3 / peer[2]:.0f})")
    print(f"translation overhead: JSON {json_ms:.3f} ms, SSE {sse_ms:.3f} ms per request (goal <= 1 ms)")
    for name, (samples, rps) in pairs.items():
        print(f"{name:10s} own client + server: paid request median {statistics.median(samples):7.2f} ms; "
              f"{rps:7.1f} paid requests/s ({PAIR_CLIENTS} async clients, automine)")
    ours_pair, peer_pair = pairs["mpp_claude"], pairs["pympp"]
    print()
    print(f"| server paid requests/s, {CLIENTS} clients | {ours[1]:.1f}/s | pympp {peer[1]:.1f}/s | "
          f"{ours[1] / peer[1]:.2f} |")
    print(f"| server paid requests per CPU second (1 / CPU per paid request) | {1e3 / ours[2]:.0f}/s | "
          f"pympp {1e3 / peer[2]:.0f}/s | {peer[2] / ours[2]:.2f} |")
    print(f"| server paid request median latency | {ours[0]:.2f} ms | pympp {peer[0]:.2f} ms | "
          f"{ours[0] / peer[0]:.2f} |")
    print(f"| server CPU per paid request (402 + paid retry) | {ours[2]:.2f} ms | pympp {peer[2]:.2f} ms | "
          f"{ours[2] / peer[2]:.2f} |")
    print(f"| client+server pair paid requests/s, {PAIR_CLIENTS} async clients | {ours_pair[1]:.1f}/s | "
          f"pympp pair {peer_pair[1]:.1f}/s | {ours_pair[1] / peer_pair[1]:.2f} |")
    print(f"| client+server pair paid request median latency | {statistics.median(ours_pair[0]):.2f} ms | "
          f"pympp pair {statistics.median(peer_pair[0]):.2f} ms | "
          f"{statistics.median(ours_pair[0]) / statistics.median(peer_pair[0]):.2f} |")
    print(f"| server translation overhead (JSON) | {json_ms:.3f} ms | goal 1 ms | {json_ms:.2f} |")
    print(f"| server translation overhead (SSE) | {sse_ms:.3f} ms | goal 1 ms | {sse_ms:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
