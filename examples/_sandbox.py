"""Where the examples get a paid server, a Tempo RPC node and a funded wallet.

* With ``MPP_CLAUDE_URL`` (the paid server), ``MPP_RPC_URL`` and ``MPP_PRIVATE_KEY`` set, the
  examples use them: your proxy, your chain, your key.
* Otherwise they start a throwaway sandbox, as ``python -m mpp_claude.demo`` does: a local Tempo
  devnet (anvil), the reference server with the offline upstream (no Anthropic key needed),
  and a fresh wallet funded from the devnet faucet.  Everything stops when the block ends.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from mpp_claude.client import Wallet


@dataclass(frozen=True)
class Sandbox:
    base_url: str   # the paid server's OpenAI base URL, ending in /v1
    rpc_url: str    # Tempo JSON-RPC
    wallet: Wallet  # the paying wallet

    @property
    def origin(self) -> str:
        """``scheme://host:port`` of the server: the one origin the examples allow to charge."""
        return self.base_url.removesuffix("/v1")


@contextmanager
def local_server(rpc_url: str, chain_id: int, *, prices: Mapping[str, Any] | None = None) -> Iterator[str]:
    """The reference server (offline upstream) on a free loopback port; yields its base URL."""
    from eth_account import Account

    from mpp_claude.server.app import create_app
    from mpp_claude.server.background import serve_in_thread
    from mpp_claude.server.config import build_config

    config = build_config(flags={
        "realm": "localhost", "recipient": Account.create().address, "rpc_url": rpc_url,
        "chain_id": chain_id, "upstream": "local", "store": "memory://",
        "secret_key": secrets.token_hex(32), "prices": dict(prices or {})})
    with serve_in_thread(create_app(config)) as url:
        yield url


@contextmanager
def sandbox(fund: str = "10", **server: Any) -> Iterator[Sandbox]:
    """The environment's server, chain and key, or a local sandbox (see the module docstring)."""
    url, rpc_url = os.environ.get("MPP_CLAUDE_URL", ""), os.environ.get("MPP_RPC_URL", "")
    if url and rpc_url and os.environ.get("MPP_PRIVATE_KEY"):
        yield Sandbox(url.rstrip("/").removesuffix("/v1") + "/v1", rpc_url, Wallet.from_env(remove=True))
        return
    from eth_account import Account

    from mpp_claude.devnet import Devnet
    from mpp_claude.tempo import tip20

    print("starting a local Tempo devnet and the reference server ...", flush=True)
    with Devnet.start() as net, local_server(net.rpc_url, net.chain_id, **server) as url:
        acct = Account.create()
        net.fund(acct.address, tip20.from_display(fund))
        yield Sandbox(url + "/v1", net.rpc_url, Wallet.from_private_key(acct.key))
