"""``mpp-claude devnet``: run a local Tempo devnet (anvil) until Ctrl-C."""

from __future__ import annotations

import argparse
import time
from typing import Any

from ._codes import EXIT_OK
from ._term import note, out


def register(sub: Any) -> None:
    """Add the ``devnet`` subcommand to ``sub`` (an argparse subparsers object)."""
    dev = sub.add_parser("devnet", help="run a local Tempo devnet (anvil 1.7.1, hardfork T4)",
                         description="Start anvil in Tempo mode on a free loopback port until Ctrl-C.")
    dev.add_argument("--install", action="store_true", help="only make sure anvil is installed, then exit")
    dev.add_argument("--fund", action="append", metavar="ADDRESS", help="fund this address (repeatable)")
    dev.add_argument("--amount", default="100", help="pathUSD per funded address (default 100)")
    dev.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Start the devnet, print its RPC URL and chain id, fund addresses, wait for Ctrl-C."""
    from ..devnet import Devnet, find_anvil
    from ..tempo import tip20

    binary = find_anvil(install=True)
    if args.install:
        note(f"anvil ready: {binary}")
        return EXIT_OK
    with Devnet.start(anvil=binary) as net:
        out(f"RPC URL:  {net.rpc_url}")
        out(f"chain id: {net.chain_id}")
        out(f"pathUSD:  {tip20.PATH_USD}")
        for addr in args.fund or ():
            net.fund(addr, tip20.from_display(args.amount))
            out(f"funded {addr} with {args.amount} pathUSD")
        note("devnet running; Ctrl-C to stop")
        try:
            while net.running:
                time.sleep(0.5)
        except KeyboardInterrupt:
            note("stopping devnet")
    return EXIT_OK
