"""``mpp-claude quote "prompt"``: the price a chat completion would cost, paying nothing.

The request is sent in the client's dry-run mode: the server's 402 challenge is read and
checked like a real payment, then nothing is signed.  The quote never unlocks your wallet
(a throwaway in-memory key stands in for it), so no password is asked.
"""

from __future__ import annotations

import argparse
import json
import secrets
from typing import Any

from ..errors import ClientPaymentError
from ._codes import EXIT_OK
from ._request import add_request_arguments, create_kwargs, open_client, server_error
from ._term import Progress, out

NO_CAP = 10**18  # a quote is never paid: report any price, however high


def register(sub: Any) -> None:
    """Add the ``quote`` subcommand to ``sub`` (an argparse subparsers object)."""
    quote = sub.add_parser(
        "quote", help="show what a chat completion would cost, without paying",
        description="Send the request in dry-run mode and print the price of the server's 402 challenge "
                    "(an upper bound for --max-tokens output tokens).  Nothing is signed or paid; no "
                    "wallet is needed.")
    add_request_arguments(quote)
    quote.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Print the quote (or that the request is free)."""
    import openai

    from ..client import Wallet

    kwargs = create_kwargs(args)
    oai, http = open_client(args, Wallet.from_private_key(secrets.token_bytes(32)), {"max_payment": NO_CAP},
                            None)
    try:
        with Progress("asking the server for its price", enabled=not getattr(args, "quiet", False)):
            quote = http.quote(lambda: oai.chat.completions.create(**kwargs))
    except ClientPaymentError:
        raise
    except openai.OpenAIError as exc:
        raise server_error(exc) from None
    finally:
        oai.close()
        http.close()
    if quote is None:
        out(json.dumps({"free": True}) if args.json else "free: the server did not ask for a payment")
        return EXIT_OK
    if args.json:
        out(json.dumps({"free": False, "amount": quote.amount, "display": quote.display_amount,
                        "symbol": quote.symbol, "currency": quote.currency, "decimals": quote.decimals,
                        "payee": quote.payee, "chain_id": quote.chain_id, "origin": quote.origin,
                        "path": quote.path, "intent": quote.intent, "expires": quote.expires,
                        "description": quote.description, "max_tokens": args.max_tokens}))
        return EXIT_OK
    out(f"price:   {quote.display_amount} {quote.symbol} (upper bound for {args.max_tokens} output tokens)")
    out(f"payee:   {quote.payee} on chain {quote.chain_id}")
    out(f"for:     {quote.intent} {quote.origin}{quote.path}")
    if quote.description:
        out(f"server:  {quote.description}")
    return EXIT_OK
