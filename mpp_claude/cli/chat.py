"""``mpp-claude chat "prompt"``: pay for one chat completion and print the answer and its cost.

The answer goes to stdout (streamed with ``--stream``); the cost line goes to stderr, so
``answer=$(mpp-claude chat ...)`` captures only the answer.  ``--json`` prints both on stdout.
``--max-price`` caps this one payment: a higher price is declined before anything is signed
(exit code 3).
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from ..errors import ClientPaymentError
from ._codes import EXIT_OK
from ._keys import add_key_arguments, load_wallet
from ._request import add_request_arguments, create_kwargs, dollars, open_client, server_error
from ._term import Progress, note, out, paint


def register(sub: Any) -> None:
    """Add the ``chat`` subcommand to ``sub`` (an argparse subparsers object)."""
    chat = sub.add_parser(
        "chat", help="pay for one chat completion and print the answer and its cost",
        description="Send one prompt to a paid OpenAI-compatible server, pay its 402 challenge from your "
                    "wallet, print the answer (stdout) and what it cost (stderr).  Exit code 3 when the "
                    "price is above --max-price or another limit: nothing is paid then.")
    add_request_arguments(chat)
    chat.add_argument("--stream", action="store_true", help="print the answer as it is generated")
    chat.add_argument("--max-price", type=dollars, metavar="USD",
                      help="most this one request may cost, e.g. 0.05 (default: the policy's $1.00)")
    chat.add_argument("--ledger", metavar="PATH", help="spend ledger file (default: the user data dir's)")
    add_key_arguments(chat)
    chat.set_defaults(handler=run)


def _usage(usage: Any) -> dict[str, int] | None:
    if usage is None:
        return None
    return {"prompt_tokens": usage.prompt_tokens, "completion_tokens": usage.completion_tokens}


def _cost_line(paid: Any, usage: dict[str, int] | None) -> str:
    if paid is None:
        return "not charged: the server did not ask for a payment"
    tokens = f"; {usage['prompt_tokens']} in + {usage['completion_tokens']} out tokens" if usage else ""
    return (f"paid {paid.display_amount} {paid.symbol} to {paid.payee} on chain {paid.chain_id}{tokens}; "
            f"tx {paid.tx_hash}")


def run(args: argparse.Namespace) -> int:
    """Pay for and print one completion."""
    import openai

    from ..client import receipt_of

    kwargs = create_kwargs(args)
    wallet, source = load_wallet(args)
    quiet = bool(getattr(args, "quiet", False))
    if source.startswith("$") and not quiet:  # agent-payments-ux.md §4.6: supported, with a warning
        note(f"paying with the raw key in {source}; an encrypted keystore is safer (mpp-claude wallet new)")
    policy_kw = {"max_payment": args.max_price} if args.max_price is not None else {}
    oai, http = open_client(args, wallet, policy_kw, args.ledger or "default")
    answer, usage, finish = "", None, None
    try:
        with Progress(f"asking {args.model} (paying the server's 402)", enabled=not quiet) as progress:
            if args.stream:
                raw = oai.chat.completions.with_raw_response.create(
                    **kwargs, stream=True, stream_options={"include_usage": True})
                paid = receipt_of(raw)
                for chunk in raw.parse():
                    if chunk.choices:
                        delta = chunk.choices[0].delta.content or ""
                        finish = chunk.choices[0].finish_reason or finish
                        if delta:
                            progress.stop()
                            answer += delta
                            if not args.json:
                                out(delta, end="")
                    usage = _usage(chunk.usage) or usage
            else:
                raw = oai.chat.completions.with_raw_response.create(**kwargs)
                paid = receipt_of(raw)
                completion = raw.parse()
                answer = (completion.choices[0].message.content or "") if completion.choices else ""
                finish = completion.choices[0].finish_reason if completion.choices else None
                usage = _usage(completion.usage)
    except ClientPaymentError:
        raise
    except openai.OpenAIError as exc:
        raise server_error(exc) from None
    finally:
        oai.close()
        http.close()
    if args.json:
        payment = None if paid is None else {
            "amount": paid.amount, "display": paid.display_amount, "symbol": paid.symbol,
            "currency": paid.currency, "payee": paid.payee, "chain_id": paid.chain_id,
            "tx_hash": paid.tx_hash, "reference": paid.reference, "ledger_id": paid.ledger_id}
        out(json.dumps({"model": args.model, "answer": answer, "finish_reason": finish, "usage": usage,
                        "payment": payment}))
        return EXIT_OK
    if args.stream:
        out()
    else:
        out(answer)
    note(paint(_cost_line(paid, usage), "green", sys.stderr))
    return EXIT_OK
