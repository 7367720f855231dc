"""The ``mpp-claude`` command line.  Parses arguments, calls library functions, prints results.

Exit codes scripts can rely on: 0 success, 1 a library error (message on stderr),
2 usage error, 3 payment declined by policy or budget, 130 interrupted.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable, Sequence

from . import __version__
from .errors import MppError, PaymentDeclined

EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_DECLINED, EXIT_INTERRUPTED = 0, 1, 2, 3, 130

Handler = Callable[[argparse.Namespace], int]


def _cmd_devnet(args: argparse.Namespace) -> int:
    from .devnet import Devnet, find_anvil
    from .tempo import tip20

    binary = find_anvil(install=True)
    if args.install:
        print(f"anvil ready: {binary}", file=sys.stderr)
        return EXIT_OK
    with Devnet.start(anvil=binary) as net:
        print(f"RPC URL:  {net.rpc_url}")
        print(f"chain id: {net.chain_id}")
        print(f"pathUSD:  {tip20.PATH_USD}")
        for addr in args.fund or ():
            net.fund(addr, tip20.from_display(args.amount))
            print(f"funded {addr} with {args.amount} pathUSD")
        print("devnet running; Ctrl-C to stop", file=sys.stderr, flush=True)
        try:
            while net.running:
                time.sleep(0.5)
        except KeyboardInterrupt:
            print("stopping devnet", file=sys.stderr)
    return EXIT_OK


def _cmd_serve(args: argparse.Namespace) -> int:
    from .server.cli import run

    return run(args)


def _cmd_spend(args: argparse.Namespace) -> int:
    from .client.report import spend_report

    since = time.time() - args.days * 86_400 if args.days is not None else None
    fmt = "json" if args.json else "csv" if args.csv else "table"
    print(spend_report(args.ledger, fmt=fmt, wallet=args.wallet, since=since))
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mpp-claude", description=(
        "Pay per request for LLM calls over MPP (HTTP 402) on the Tempo chain."))
    parser.add_argument("--version", action="version", version=f"mpp-claude {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log what happens (keys never logged)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    dev = sub.add_parser("devnet", help="run a local Tempo devnet (anvil 1.7.1, hardfork T4)",
                         description="Start anvil in Tempo mode on a free loopback port until Ctrl-C.")
    dev.add_argument("--install", action="store_true", help="only make sure anvil is installed, then exit")
    dev.add_argument("--fund", action="append", metavar="ADDRESS", help="fund this address (repeatable)")
    dev.add_argument("--amount", default="100", help="pathUSD per funded address (default 100)")
    dev.set_defaults(handler=_cmd_devnet)

    from .server.cli import add_arguments as _serve_arguments

    serve = sub.add_parser("serve", help="run the paid OpenAI-compatible proxy (Starlette + uvicorn)",
                           description="Serve /v1/chat/completions and /v1/messages, paid per request.")
    _serve_arguments(serve)
    serve.set_defaults(handler=_cmd_serve)

    spend = sub.add_parser("spend", help="show the client's payment ledger",
                           description="Print the spend ledger (one row per payment): table, JSON or CSV.")
    spend.add_argument("--ledger", metavar="PATH", help="ledger file (default: the user data dir's)")
    spend.add_argument("--wallet", metavar="ADDRESS", help="only this wallet's payments")
    spend.add_argument("--days", type=float, metavar="N", help="only the last N days")
    out = spend.add_mutually_exclusive_group()
    out.add_argument("--json", action="store_true", help="JSON (amounts in base units)")
    out.add_argument("--csv", action="store_true", help="CSV with a header line")
    spend.set_defaults(handler=_cmd_spend)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
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
        return EXIT_INTERRUPTED
    except PaymentDeclined as exc:
        print(f"mpp-claude: payment declined: {exc}", file=sys.stderr)
        return EXIT_DECLINED
    except MppError as exc:
        print(f"mpp-claude: {exc}", file=sys.stderr)
        return EXIT_ERROR


if __name__ == "__main__":
    sys.exit(main())
