"""``mpp-claude spend``: the payment ledger as a table, JSON or CSV, and totals per day/model/origin."""

from __future__ import annotations

import argparse
import time
from typing import Any

from ._codes import EXIT_OK
from ._term import out


def register(sub: Any) -> None:
    """Add the ``spend`` subcommand to ``sub`` (an argparse subparsers object)."""
    spend = sub.add_parser(
        "spend", help="show the client's payment ledger and totals",
        description="Print the spend ledger (one row per payment) followed by the totals per day (UTC), "
                    "model and origin; or, with --by, only the totals of one grouping.  Released rows "
                    "(provably not paid) are listed but never counted.")
    spend.add_argument("--ledger", metavar="PATH", help="ledger file (default: the user data dir's)")
    spend.add_argument("--wallet", metavar="ADDRESS", help="only this wallet's payments")
    spend.add_argument("--days", type=float, metavar="N", help="only the last N days")
    spend.add_argument("--by", choices=["day", "model", "origin"],
                       help="only the totals per day, model or origin")
    fmt = spend.add_mutually_exclusive_group()
    fmt.add_argument("--json", action="store_true", help="JSON (amounts in base units)")
    fmt.add_argument("--csv", action="store_true", help="CSV with a header line")
    spend.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Print the report."""
    from ..client.report import Format, spend_report

    since = time.time() - args.days * 86_400 if args.days is not None else None
    fmt: Format = "json" if args.json else "csv" if args.csv else "table"
    out(spend_report(args.ledger, fmt=fmt, wallet=args.wallet, since=since, by=args.by).rstrip("\n"))
    return EXIT_OK
