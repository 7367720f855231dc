"""The ``mpp-claude`` command line.  Parses arguments, calls library functions, prints results.

One module per subcommand (``devnet``, ``serve``, ``spend``, ``wallet``, ``chat``, ``quote``,
``channels``);
each has a ``register(subparsers)`` and handlers that call the library.  Command output goes
to stdout, messages and progress to stderr; colours only on a terminal and never with
``NO_COLOR``.  Keys are never printed.

Exit codes scripts can rely on: 0 success, 1 a library error (message on stderr),
2 usage error, 3 payment declined by policy or budget (nothing was paid), 130 interrupted.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

from .. import __version__
from ..errors import BudgetExceeded, MppError, PaymentDeclined
from . import channels, chat, devnet, quote, serve, spend, wallet
from ._codes import EXIT_DECLINED, EXIT_ERROR, EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE
from ._request import CommandFailed
from ._term import err

__all__ = ["EXIT_DECLINED", "EXIT_ERROR", "EXIT_INTERRUPTED", "EXIT_OK", "EXIT_USAGE", "build_parser",
           "main"]

Handler = Callable[[argparse.Namespace], int]
_LIMIT_NAMES = {"max_payment": "--max-price (max_payment)"}


def _add_common(parser: argparse.ArgumentParser, *, top: bool) -> None:
    """``-v`` and ``-q``, accepted before or after the subcommand name."""
    default = False if top else argparse.SUPPRESS
    parser.add_argument("-v", "--verbose", action="store_true", default=default,
                        help="log what happens on stderr (keys are never logged)")
    parser.add_argument("-q", "--quiet", action="store_true", default=default,
                        help="no progress messages on stderr")


def _walk(parser: argparse.ArgumentParser) -> list[argparse.ArgumentParser]:
    found = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in dict.fromkeys(action.choices.values()):
                found += [child, *_walk(child)]
    return found


def build_parser() -> argparse.ArgumentParser:
    """The ``mpp-claude`` argument parser with every subcommand."""
    parser = argparse.ArgumentParser(prog="mpp-claude", description=(
        "Pay per request for LLM calls over MPP (HTTP 402) on the Tempo chain.  Exit codes: 0 ok, "
        "1 error, 2 usage, 3 payment declined (nothing paid), 130 interrupted."))
    parser.add_argument("--version", action="version", version=f"mpp-claude {__version__}")
    _add_common(parser, top=True)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module in (devnet, serve, wallet, chat, quote, spend, channels):
        module.register(sub)
    for child in _walk(parser):
        _add_common(child, top=False)
    return parser


def _declined(exc: PaymentDeclined) -> str:
    if isinstance(exc, BudgetExceeded) and exc.limit:
        from ..client.receipts import display

        name = _LIMIT_NAMES.get(exc.limit, exc.limit)
        used = exc.details.get("used") or exc.details.get("spent")
        spent = f" with {display(int(used))} USD already spent" if used else ""
        return (f"payment declined: the price {display(exc.requested)} USD is above the limit {name} of "
                f"{display(exc.limit_value)} USD{spent}; nothing was paid")
    return f"payment declined: {exc}; nothing was paid"


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.verbose:
        import logging

        logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    handler: Handler | None = getattr(args, "handler", None)
    if handler is None:
        parser.print_help()
        return EXIT_USAGE
    try:
        return handler(args)
    except KeyboardInterrupt:
        err("interrupted")
        return EXIT_INTERRUPTED
    except PaymentDeclined as exc:
        err(_declined(exc), colour="red")
        return EXIT_DECLINED
    except (MppError, CommandFailed) as exc:
        err(str(exc), colour="red")
        return EXIT_ERROR


if __name__ == "__main__":
    sys.exit(main())
