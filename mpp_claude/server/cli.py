"""``mpp-claude serve``: arguments and the uvicorn runner (the top-level CLI only dispatches here).

Configuration comes from these flags, the environment (``MPP_*``, ``ANTHROPIC_API_KEY``) and an
optional TOML file (``--config``), in that precedence (see ``config.py``).  Secrets are never
flags: the challenge secret comes from ``MPP_SECRET_KEY``, a ``secret_file`` or the generated
development secret; the fee payer key from ``MPP_FEE_PAYER_KEY``.

With ``--workers N`` uvicorn starts N processes; each rebuilds the same config from the
flags (passed through ``MPP_CLAUDE_SERVE_FLAGS``), the environment and the files, so they share
the realm, the secret and the store (use SQLite or Redis, never ``memory://``).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path
from typing import Any

FLAGS_ENV = "MPP_CLAUDE_SERVE_FLAGS"
_FLAG_KEYS = ("realm", "recipient", "rpc_url", "chain_id", "currencies", "store", "upstream", "secret_file",
              "default_max_tokens", "max_body_bytes", "metrics", "host", "port", "workers", "modes",
              "upstream_during_settlement")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``serve`` options to ``parser`` (argparse only: importing this needs no server extra)."""
    parser.add_argument("--config", type=Path, metavar="FILE", help="TOML config file (or MPP_CONFIG)")
    parser.add_argument("--host", help="bind address (default 127.0.0.1)")
    parser.add_argument("--port", type=int, help="port (default 8402)")
    parser.add_argument("--workers", type=int, help="worker processes (default 1; needs sqlite or redis)")
    parser.add_argument("--realm", help="payment realm, normally the public host name (MPP_REALM)")
    parser.add_argument("--recipient", help="0x address that receives payments (MPP_RECIPIENT)")
    parser.add_argument("--rpc-url", dest="rpc_url", help="Tempo JSON-RPC URL (MPP_RPC_URL)")
    parser.add_argument("--chain-id", dest="chain_id", type=int, help="chain id (MPP_CHAIN_ID)")
    parser.add_argument("--currency", dest="currencies", action="append", metavar="TOKEN",
                        help="accepted TIP-20 token address (repeatable; default pathUSD)")
    parser.add_argument("--store", help="sqlite:///file.db (default) or redis://host:port/0 (MPP_STORE)")
    parser.add_argument("--upstream", choices=["anthropic", "local"],
                        help="anthropic (needs ANTHROPIC_API_KEY) or the offline local model")
    parser.add_argument("--secret-file", dest="secret_file", help="file holding the challenge secret")
    parser.add_argument("--default-max-tokens", dest="default_max_tokens", type=int,
                        help="output ceiling quoted when a request has no max_tokens (default 4096)")
    parser.add_argument("--max-body-bytes", dest="max_body_bytes", type=int, help="request size limit")
    parser.add_argument("--metrics", action="store_const", const=True, help="serve /metrics (Prometheus)")
    parser.add_argument("--upstream-after-settlement", dest="upstream_during_settlement",
                        action="store_const", const=False,
                        help="call the upstream only once the payment is settled on chain (default: the "
                             "call starts once the credential passed every check and is claimed, while "
                             "its transaction is mined; MPP_UPSTREAM_DURING_SETTLEMENT=false)")
    parser.add_argument("--session", dest="sessions", action="store_const", const=True,
                        help="also offer the session intent (payment channels; needs MPP_SESSION_PAYEE_KEY)")
    parser.add_argument("--log-level", dest="log_level", default="info",
                        choices=["debug", "info", "warning", "error"], help="log level (default info)")


def _flags(args: argparse.Namespace) -> dict[str, Any]:
    return {k: getattr(args, k) for k in _FLAG_KEYS if getattr(args, k, None) is not None}


def build_app_from_env() -> Any:
    """uvicorn factory for worker processes: the config from ``MPP_CLAUDE_SERVE_FLAGS`` + environment."""
    from .app import create_app
    from .config import load_config

    saved = json.loads(os.environ.get(FLAGS_ENV, "{}"))
    path = saved.pop("__config__", None)
    return create_app(load_config(flags=saved, config_path=Path(path) if path else None))


def check_chain(rpc_url: str, chain_id: int) -> None:
    """Fail before serving when the RPC is unreachable or serves another chain.

    Raises:
        ConfigError: one line naming the problem.
    """
    from ..errors import ChainError, ConfigError
    from ..tempo.rpc import RpcClient

    try:
        with RpcClient(rpc_url, timeout=5.0) as rpc:
            served = rpc.chain_id()
    except ChainError as exc:
        raise ConfigError(f"rpc_url: cannot reach {rpc_url}: {exc}") from None
    if served != chain_id:
        raise ConfigError(f"chain_id: configured {chain_id}, but {rpc_url} serves chain {served}")


def run(args: argparse.Namespace) -> int:
    """Validate the configuration, then serve with uvicorn until interrupted.

    Returns:
        0 after a clean shutdown.

    Raises:
        ConfigError: invalid configuration (one line per problem).
    """
    try:
        import starlette  # noqa: F401
        import uvicorn
    except ImportError:
        sys.stderr.write("mpp-claude serve needs the server extra: pip install 'mpp-claude[server]'\n")
        return 1
    from ._uvicorn import CoalescingProtocol
    from .app import create_app
    from .config import load_config

    flags = _flags(args)
    config = load_config(flags=flags, config_path=args.config)
    check_chain(config.rpc_url, config.chain_id)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s %(message)s")
    sys.stderr.write(f"mpp-claude serve: realm {config.realm}, recipient {config.recipient}, "
                     f"chain {config.chain_id}, upstream {config.upstream}, "
                     f"store {config.store.split('://')[0]}, http://{config.host}:{config.port}\n")
    if config.workers > 1:
        os.environ[FLAGS_ENV] = json.dumps({**flags, "__config__": str(args.config) if args.config else None})
        uvicorn.run("mpp_claude.server.cli:build_app_from_env", factory=True, host=config.host,
                    port=config.port, workers=config.workers, log_level=args.log_level, access_log=False,
                    http=CoalescingProtocol)
    else:
        uvicorn.run(create_app(config), host=config.host, port=config.port, log_level=args.log_level,
                    access_log=False, http=CoalescingProtocol)
    return 0
