"""``mpp-claude serve``: the paid OpenAI-compatible proxy (arguments live in ``server.cli``)."""

from __future__ import annotations

import argparse
from typing import Any


def register(sub: Any) -> None:
    """Add the ``serve`` subcommand to ``sub`` (an argparse subparsers object)."""
    from ..server.cli import add_arguments

    serve = sub.add_parser("serve", help="run the paid OpenAI-compatible proxy (Starlette + uvicorn)",
                           description="Serve /v1/chat/completions and /v1/messages, paid per request.")
    add_arguments(serve)
    serve.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Run the server until it stops; returns its exit code."""
    from ..server.cli import run as serve

    return serve(args)
