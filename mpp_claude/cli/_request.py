"""What ``chat`` and ``quote`` share: their arguments, the paying client, the request body."""

from __future__ import annotations

import argparse
import sys
from typing import Any
from urllib.parse import urlsplit

from ..errors import ConfigError
from ._net import URL_ENV, add_rpc_argument, rpc_url, server_url

DEFAULT_MODEL = "claude-sonnet-5-5"


class CommandFailed(Exception):
    """A failure outside the library's error tree (the server's HTTP error): exit code 1."""


def dollars(text: str) -> str:
    """argparse type for a USD amount such as ``0.05`` (at most 6 decimals, not negative)."""
    from ..client.policy import usd

    try:
        usd(text)
    except ConfigError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def add_request_arguments(parser: argparse.ArgumentParser) -> None:
    """The request options of ``chat`` and ``quote``."""
    parser.add_argument("prompt", help="the user message ('-' reads it from stdin)")
    parser.add_argument("--model", default=DEFAULT_MODEL, help=f"model name (default {DEFAULT_MODEL})")
    parser.add_argument("--system", metavar="TEXT", help="system prompt")
    parser.add_argument("--max-tokens", type=int, default=1024, metavar="N",
                        help="output token ceiling; the price is an upper bound for it (default 1024)")
    parser.add_argument("--url", metavar="URL",
                        help=f"the paid server, e.g. https://proxy.example or http://127.0.0.1:8402 "
                             f"(default ${URL_ENV})")
    add_rpc_argument(parser)
    parser.add_argument("--timeout", type=float, default=600.0, metavar="SECONDS",
                        help="HTTP timeout (default 600)")
    parser.add_argument("--json", action="store_true", help="machine-readable output on stdout")


def messages(args: argparse.Namespace) -> list[dict[str, str]]:
    """The chat messages: the optional ``--system`` prompt, then the user prompt.

    Raises:
        ConfigError: the prompt is empty or ``--max-tokens`` is not positive.
    """
    text = sys.stdin.read() if args.prompt == "-" else args.prompt
    if not text.strip():
        raise ConfigError("the prompt is empty")
    if args.max_tokens <= 0:
        raise ConfigError(f"--max-tokens must be positive, got {args.max_tokens}")
    msgs = [{"role": "system", "content": args.system}] if args.system else []
    return [*msgs, {"role": "user", "content": text}]


def open_client(args: argparse.Namespace, wallet: Any, policy_kw: dict[str, Any], ledger: Any
                ) -> tuple[Any, Any]:
    """``(openai.OpenAI, MppClient)``: the unmodified openai SDK over the paying HTTP client.

    The server's origin is the only origin this client pays.

    Raises:
        ConfigError: a missing or malformed server URL or RPC URL.
    """
    import openai

    from ..client import MppClient, Policy

    base = server_url(args)
    parts = urlsplit(base)
    policy = Policy([f"{parts.scheme}://{parts.netloc}"], **policy_kw)
    http = MppClient(wallet, rpc_url=rpc_url(args), policy=policy, ledger=ledger, timeout=args.timeout)
    oai = openai.OpenAI(base_url=base, api_key="mpp-paid", http_client=http, timeout=args.timeout)
    return oai, http


def create_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    """The ``chat.completions.create`` keyword arguments of this command line."""
    return {"model": args.model, "messages": messages(args), "max_tokens": args.max_tokens}


def server_error(exc: Exception) -> CommandFailed:
    """An openai SDK error as a one-line ``CommandFailed`` (status and the server's message)."""
    status = getattr(exc, "status_code", None)
    body = getattr(exc, "body", None)
    message = body.get("message") if isinstance(body, dict) else None
    message = message if isinstance(message, str) and message else getattr(exc, "message", None) or str(exc)
    where = f"the server answered {status}" if status else "the request failed"
    return CommandFailed(f"{where}: {message}")
