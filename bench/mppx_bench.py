"""mppx (the reference TypeScript MPP SDK, run through node) as a peer: client, server and pair.

All on one devnet, in one run, with the same request body and the same charge flow
(402 -> sign a Tempo charge -> paid retry; the server broadcasts and waits for the receipt):

1. clients: our ``AsyncMppClient`` and mppx's client (``bench/_mppx/client.mjs``, ``Mppx.create``
   + ``tempo.charge``) paying ``mpp-claude serve`` (memory store, offline local upstream), and
   both paying an mppx server (``bench/_mppx/server.mjs``, ``Mppx.create`` + ``tempo.charge``,
   fixed JSON answer): median latency of sequential paid requests, paid requests/s from 8
   concurrent clients.
2. servers: ``mpp-claude serve`` and the mppx server driven by the same minimal Python payer
   (``server_bench.Payer``'s flow): median latency, requests/s, server CPU per paid request.
3. pairs: each SDK's client against its own server (what a user of either stack gets).

Both servers run as their own processes (ours exactly as ``mpp-claude serve`` starts it), so
neither shares an interpreter with a client and server CPU can be read from ``/proc``.

Devnet notes (tempo-chain.md, "stale block time"): the mppx server simulates each payment with
``eth_call`` before broadcasting; ``server.mjs`` adds the block override ``time = now`` to it.
anvil's ``eth_call`` also demands far more gas for an expiring-nonce transfer than mining it
costs (about 784k when the recipient is new), so a transaction signed with less than that fails
mppx's simulation with "intrinsic gas too high"; our client therefore signs with at least 1M
(``tempo.charge.MIN_GAS``), and the minimal payers here use ``MPPX_GAS`` (1M; both servers accept
up to 2M).  The default client is tried once against the mppx server and the outcome printed.

Skipped (exit 0, with a message) when node/npm is missing or ``npm install`` fails.
Only ratios against the peer in the same run mean anything; absolute numbers depend on the machine.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import shutil
import statistics
import subprocess
import sys
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from eth_account import Account
from server_bench import (
    BODY,
    CLIENTS,
    HEADERS,
    PER_CLIENT,
    SEQUENTIAL,
    Payer,
    _free_port,
    cpu_seconds,
    pair_run,
    process,
    sequential_ms,
    throughput,
)

from mpp_claude.client import AsyncMppClient, MppClient, Policy, Wallet
from mpp_claude.client.payer import AsyncPayer
from mpp_claude.devnet import Devnet
from mpp_claude.tempo.rpc import AsyncRpcClient

HERE = Path(__file__).resolve().parent
MPPX_DIR = HERE / "_mppx"
ROUNDS = 2
WARMUP = 3
MPPX_GAS = 1_000_000
MPPX_PRICE = "0.001"  # pathUSD per paid POST on the mppx server
PATH = "/v1/chat/completions"


def npm_install() -> str | None:
    """Install mppx into ``bench/_mppx/node_modules``; returns why it could not, or ``None``."""
    for tool in ("node", "npm"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed"
    try:
        proc = subprocess.run(["npm", "install", "--no-audit", "--no-fund", "--loglevel=error"], cwd=MPPX_DIR,
                              capture_output=True, text=True, timeout=600)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"npm install failed: {exc}"
    if proc.returncode != 0:
        return f"npm install failed (exit {proc.returncode}): {proc.stderr.strip()[-1500:]}"
    return None


class GasPayer(Payer):
    """``server_bench.Payer`` signing with an explicit gas limit (see the module docstring)."""

    gas_limit = MPPX_GAS


def _key(account: Any) -> str:
    return "0x" + bytes(account.key).hex()


def mppx_client(url: str, accounts: list[Any], net: Devnet) -> tuple[list[float], float]:
    """Run ``client.mjs`` once: sequential latencies (ms) of the first account, then req/s of all."""
    env = {**os.environ, "MPPX_BENCH_KEYS": ",".join(_key(a) for a in accounts)}
    cmd = ["node", str(MPPX_DIR / "client.mjs"), url, net.rpc_url, str(net.chain_id), BODY.decode(),
           str(WARMUP), str(SEQUENTIAL), str(PER_CLIENT)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    if proc.returncode != 0:
        raise RuntimeError(f"mppx client failed (exit {proc.returncode}): {proc.stderr.strip()[-2000:]}")
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    return [float(x) for x in out["sequential_ms"]], float(out["requests_per_second"])


async def ours_client(url: str, accounts: list[Any], net: Devnet, origin: str, gas_limit: int | None
                      ) -> tuple[list[float], float]:
    """Our ``AsyncMppClient`` (one per account): sequential latencies (ms), then req/s of all."""
    policy = Policy([origin], max_per_minute=100_000, max_per_day="1000", max_per_client="1000")
    rpcs: list[AsyncRpcClient] = []
    clients = []
    for account in accounts:
        wallet = Wallet.from_private_key(bytes(account.key))
        payer = None
        if gas_limit is not None:
            rpcs.append(AsyncRpcClient(net.rpc_url))
            payer = AsyncPayer(wallet, rpcs[-1], gas_limit=gas_limit)
        clients.append(AsyncMppClient(wallet, rpc_url=net.rpc_url, policy=policy, ledger=None, timeout=60,
                                      payer=payer))
    try:
        return await pair_run(clients, url)
    finally:
        for c in clients:
            await c.aclose()
        for rpc in rpcs:
            await rpc.aclose()


def default_client_vs_mppx(url: str, account: Any, net: Devnet, origin: str) -> str:
    """Outcome of one paid request from a default ``MppClient`` (default gas limit) to the mppx server."""
    policy = Policy([origin], max_per_day="1000", max_per_client="1000")
    with MppClient(Wallet.from_private_key(bytes(account.key)), rpc_url=net.rpc_url, policy=policy,
                   ledger=None, timeout=60) as client:
        try:
            r = client.post(url, content=BODY, headers=HEADERS)
        except Exception as exc:  # the outcome is what we report, whatever it is
            return f"raised {type(exc).__name__}: {str(exc)[:300]}"
        detail = r.text[:200].replace("\n", " ")
        return f"HTTP {r.status_code}, receipt {'yes' if 'payment-receipt' in r.headers else 'no'}: {detail}"


def _faster(ours: float, theirs: float) -> str:
    """Ratio for a lower-is-better figure (latency, CPU)."""
    return f"{theirs / ours:.2f}x faster" if ours <= theirs else f"{ours / theirs:.2f}x slower"


def _more(ours: float, theirs: float) -> str:
    """Ratio for a higher-is-better figure (requests/s)."""
    return f"{ours / theirs:.2f}x more" if ours >= theirs else f"{theirs / ours:.2f}x fewer"


Results = dict[str, dict[Any, float]]


def _commands(net: Devnet, ports: dict[str, int]) -> dict[str, list[str]]:
    return {
        "ours": [sys.executable, "-m", "mpp_claude.cli", "serve", "--store", "memory://",
                 "--recipient", Account.create().address, "--rpc-url", net.rpc_url,
                 "--chain-id", str(net.chain_id), "--realm", "bench.ours", "--upstream", "local",
                 "--log-level", "warning", "--port", str(ports["ours"])],
        "mppx": ["node", str(MPPX_DIR / "server.mjs"), str(ports["mppx"]), net.rpc_url, str(net.chain_id),
                 Account.create().address, MPPX_PRICE],
    }


def measure(net: Devnet) -> tuple[Results, str]:
    """Every measurement, interleaved round by round; medians keyed as in ``report``."""
    groups = {name: [net.new_funded_account(500 * 10**6) for _ in range(CLIENTS)]
              for name in ("ours", "mppx", "payer")}
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MPP_", "ANTHROPIC_"))}
    env["MPP_SECRET_KEY"] = secrets.token_hex(32)
    env["MPPX_BENCH_SECRET"] = secrets.token_hex(32)
    ports = {"ours": _free_port(), "mppx": _free_port()}
    cmds = _commands(net, ports)
    origins = {name: f"http://127.0.0.1:{port}" for name, port in ports.items()}
    raw: dict[str, dict[Any, list[float]]] = {k: {} for k in ("lat", "rps", "srv_lat", "srv_rps", "srv_cpu")}

    def add(kind: str, key: Any, values: list[float]) -> None:
        raw[kind].setdefault(key, []).extend(values)

    with ExitStack() as stack:
        pids = {name: stack.enter_context(process(cmd, origins[name], lambda r: r.status_code == 402, env))
                for name, cmd in cmds.items()}
        payers: list[Payer] = [GasPayer(a, net.rpc_url) for a in groups["payer"]]
        for p in payers:
            stack.callback(p.close)
        outcome = default_client_vs_mppx(origins["mppx"] + PATH, groups["ours"][0], net, origins["mppx"])
        # Interleave everything round by round, so drifting machine load hits all alike.
        for _ in range(ROUNDS):
            for server in cmds:
                url = origins[server] + PATH
                gas = MPPX_GAS if server == "mppx" else None
                samples, rate = asyncio.run(ours_client(url, groups["ours"], net, origins[server], gas))
                add("lat", ("ours", server), samples)
                add("rps", ("ours", server), [rate])
                samples, rate = mppx_client(url, groups["mppx"], net)
                add("lat", ("mppx", server), samples)
                add("rps", ("mppx", server), [rate])
                add("srv_lat", server, sequential_ms(payers[0], url))
                before = cpu_seconds(pids[server])
                add("srv_rps", server, [throughput(payers, url)])
                add("srv_cpu", server, [(cpu_seconds(pids[server]) - before) * 1e3 / (CLIENTS * PER_CLIENT)])
    return {kind: {k: statistics.median(v) for k, v in d.items()} for kind, d in raw.items()}, outcome


def report(res: Results, outcome: str) -> None:
    """Print the readable summary, then one Markdown row per comparison."""
    lat, rps = res["lat"], res["rps"]
    node = subprocess.run(["node", "--version"], capture_output=True, text=True).stdout.strip()
    print(f"mppx 0.11.0 on node {node}; {ROUNDS} rounds, each: {WARMUP} warm-up + {SEQUENTIAL} sequential "
          f"paid requests, then {CLIENTS} concurrent clients x {PER_CLIENT}")
    for (client, server), v in sorted(lat.items()):
        print(f"client {client:4s} -> server {server:4s}: paid request median {v:7.2f} ms, "
              f"{rps[(client, server)]:7.1f} paid requests/s ({CLIENTS} clients)")
    for server in ("ours", "mppx"):
        print(f"same minimal payer -> server {server:4s}: median {res['srv_lat'][server]:7.2f} ms, "
              f"{res['srv_rps'][server]:7.1f} paid requests/s, "
              f"server CPU {res['srv_cpu'][server]:.2f} ms per paid request (402 + paid retry)")
    print(f"default MppClient (default gas limit) -> mppx server: {outcome}")
    print()
    for server, label in (("ours", "mpp_claude server"), ("mppx", f"mppx server, gas {MPPX_GAS // 1000}k")):
        o, t = lat[("ours", server)], lat[("mppx", server)]
        print(f"| client paid request median ({label}) | {o:.2f} ms | mppx client {t:.2f} ms | "
              f"{_faster(o, t)} |")
        o, t = rps[("ours", server)], rps[("mppx", server)]
        print(f"| client paid requests/s, {CLIENTS} clients ({label}) | {o:.1f}/s | mppx client {t:.1f}/s | "
              f"{_more(o, t)} |")
    o, t = res["srv_lat"]["ours"], res["srv_lat"]["mppx"]
    print(f"| server paid request median (same minimal payer) | {o:.2f} ms | mppx server {t:.2f} ms | "
          f"{_faster(o, t)} |")
    o, t = res["srv_rps"]["ours"], res["srv_rps"]["mppx"]
    print(f"| server paid requests/s, {CLIENTS} clients (same minimal payer) | {o:.1f}/s | "
          f"mppx server {t:.1f}/s | {_more(o, t)} |")
    o, t = res["srv_cpu"]["ours"], res["srv_cpu"]["mppx"]
    print(f"| server CPU per paid request (402 + paid retry) | {o:.2f} ms | mppx server {t:.2f} ms | "
          f"{_faster(o, t)} |")
    o, t = lat[("ours", "ours")], lat[("mppx", "mppx")]
    print(f"| pair (own client + own server) paid request median | {o:.2f} ms | mppx pair {t:.2f} ms | "
          f"{_faster(o, t)} |")
    o, t = rps[("ours", "ours")], rps[("mppx", "mppx")]
    print(f"| pair (own client + own server) paid requests/s, {CLIENTS} clients | {o:.1f}/s | "
          f"mppx pair {t:.1f}/s | {_more(o, t)} |")
    print()
    print("Client rows: the same server, only the paying client differs (ours: Python asyncio, mppx: node).\n"
          "Server rows: the same minimal Python payer drives both servers; CPU is the server process's own.\n"
          "Both servers broadcast with eth_sendRawTransactionSync, so a paid request includes one devnet\n"
          "block; the mppx server also simulates each payment with eth_call first.  Payers of the mppx\n"
          f"server sign with a {MPPX_GAS // 1000}k gas limit (anvil's eth_call asks ~784k; mining <400k).")


def main() -> int:
    reason = npm_install()
    if reason is not None:
        print(f"mppx benchmark skipped: {reason}")
        return 0
    with Devnet.start() as net:
        res, outcome = measure(net)
    report(res, outcome)
    return 0


if __name__ == "__main__":
    sys.exit(main())
