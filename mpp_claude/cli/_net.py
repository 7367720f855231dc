"""Endpoints shared by the subcommands: the Tempo RPC URL and the paid server's URL."""

from __future__ import annotations

import argparse
import os
from urllib.parse import urlsplit

from ..errors import ConfigError

RPC_ENV = "MPP_RPC_URL"
URL_ENV = "MPP_CLAUDE_URL"
#: ``--rpc-url`` shortcuts (tempo-chain.md §1).
NETWORKS = {"mainnet": "https://rpc.tempo.xyz", "testnet": "https://rpc.moderato.tempo.xyz",
            "moderato": "https://rpc.moderato.tempo.xyz"}


def add_rpc_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--rpc-url", metavar="URL",
                        help=f"Tempo JSON-RPC URL, or mainnet / testnet (default ${RPC_ENV})")


def rpc_url(args: argparse.Namespace) -> str:
    """``--rpc-url`` (aliases resolved), else ``MPP_RPC_URL``.

    Raises:
        ConfigError: neither given, or not an http(s) URL.
    """
    value: str = getattr(args, "rpc_url", None) or os.environ.get(RPC_ENV, "")
    if not value:
        raise ConfigError(f"a Tempo RPC endpoint is needed: pass --rpc-url URL (or mainnet / testnet) or set "
                          f"{RPC_ENV}; for a local devnet run `mpp-claude devnet`")
    value = NETWORKS.get(value.lower(), value)
    if urlsplit(value).scheme not in ("http", "https"):
        raise ConfigError(f"RPC URL {value!r} must start with http:// or https://")
    return value


def server_url(args: argparse.Namespace) -> str:
    """The paid server's OpenAI base URL (``.../v1``) from ``--url`` or ``MPP_CLAUDE_URL``.

    ``http://host:port`` and ``http://host:port/v1`` are both accepted.

    Raises:
        ConfigError: neither given, or not an absolute http(s) URL.
    """
    value: str = getattr(args, "url", None) or os.environ.get(URL_ENV, "")
    if not value:
        raise ConfigError(f"the paid server's URL is needed: pass --url URL or set {URL_ENV}")
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ConfigError(f"server URL {value!r} must be an absolute http:// or https:// URL")
    value = value.rstrip("/")
    return value if value.endswith("/v1") else value + "/v1"
