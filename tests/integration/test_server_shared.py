"""Two ``mpp-claude serve`` processes sharing one store: a credential is accepted exactly once.

Each server is a real OS process (the CLI, uvicorn) with the same realm and secret, so a
challenge issued by one verifies on the other; only the shared store (Redis, or one SQLite
file) stops the second acceptance.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import httpx2
import pytest
from eth_account import Account
from paying_transport import pay_challenge

from mpp_claude.devnet import Devnet
from mpp_claude.protocol.challenge import parse_challenges
from mpp_claude.protocol.problem import Problem
from mpp_claude.tempo.signer import LocalSigner

pytestmark = pytest.mark.devnet

SECRET = "shared-store-test-secret-0123456789abcdef"
BODY = json.dumps({"model": "claude-haiku-4-5", "messages": [{"role": "user", "content": "shared"}],
                   "max_tokens": 64}).encode()
HEADERS = {"content-type": "application/json"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def serve_process(devnet: Devnet, store: str, recipient: str) -> Iterator[str]:
    """``python -m mpp_claude.cli serve`` on a free port; yields its URL once /health answers."""
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MPP_", "ANTHROPIC_"))}
    env["MPP_SECRET_KEY"] = SECRET
    cmd = [sys.executable, "-m", "mpp_claude.cli", "serve", "--port", str(port), "--store", store,
           "--recipient", recipient, "--rpc-url", devnet.rpc_url, "--chain-id", str(devnet.chain_id),
           "--realm", "shared.test", "--upstream", "local", "--log-level", "warning"]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx2.get(url + "/health", timeout=1).status_code == 200:
                    break
            except httpx2.TransportError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                err = proc.stderr.read().decode() if proc.stderr and proc.poll() is not None else ""
                raise RuntimeError(f"mpp-claude serve did not start: {err[-2000:]}")
            time.sleep(0.05)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _pair(devnet: Devnet, store: str) -> Iterator[tuple[str, str]]:
    recipient = Account.create().address
    with ExitStack() as stack:
        a = stack.enter_context(serve_process(devnet, store, recipient))
        b = stack.enter_context(serve_process(devnet, store, recipient))
        yield a, b


def _accepted_once(a: str, b: str, devnet: Devnet, account: Any) -> None:
    signer = LocalSigner.from_account(account)
    with httpx2.Client(timeout=30) as http:
        r = http.post(a + "/v1/chat/completions", content=BODY, headers=HEADERS)
        assert r.status_code == 402
        challenge = parse_challenges(r.headers.get_list("www-authenticate"))[0]
        auth, _ = pay_challenge(challenge, signer, devnet.rpc)
        # issued by A, accepted by B (stateless HMAC, same realm and secret) ...
        ok = http.post(b + "/v1/chat/completions", content=BODY, headers={**HEADERS, "authorization": auth})
        assert ok.status_code == 200, ok.text
        # ... and then refused by A and by B: the shared store remembers it
        for url in (a, b):
            again = http.post(url + "/v1/chat/completions", content=BODY,
                              headers={**HEADERS, "authorization": auth})
            assert again.status_code == 402
            assert Problem.from_json(again.content).suffix == "invalid-challenge"


@pytest.mark.redis
def test_two_servers_share_redis(devnet: Devnet, redis_url: str, funded_account: Any) -> None:
    """Two server processes on one Redis: a credential accepted by one is refused by both after."""
    for a, b in _pair(devnet, redis_url):
        _accepted_once(a, b, devnet, funded_account)


def test_two_servers_share_sqlite(devnet: Devnet, tmp_path: Path, funded_account: Any) -> None:
    """Two server processes on one SQLite file: the same single-use guarantee."""
    for a, b in _pair(devnet, f"sqlite:///{tmp_path / 'shared.sqlite3'}"):
        _accepted_once(a, b, devnet, funded_account)
