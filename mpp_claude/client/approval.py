"""Ready-made approval callbacks for ``MppClient(approve=...)`` (agent-payments-ux.md §4.3).

* :func:`ask_in_terminal` asks a human at the terminal (interactive scripts);
* :func:`deny_all` refuses everything: every 402 becomes an ``ApprovalDenied`` whose
  ``details["quote"]`` an agent can show its human through its own channel, then retry
  with a client that approves.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import TextIO

from ._flow import printable
from .receipts import Quote


def _describe(quote: Quote) -> str:
    lines = [f"{quote.origin}{quote.path} asks for {quote.display_amount} {quote.symbol}",
             f"  payee {quote.payee} on chain {quote.chain_id} (challenge {quote.challenge_id})"]
    if quote.description:
        lines.append(f"  server says: {printable(quote.description, 120)}  (not verified)")
    for name, left in sorted(quote.budget_left.items()):
        lines.append(f"  {name}: {left / 10**quote.decimals:.6f} left after this payment")
    return "\n".join(lines)


def ask_in_terminal(quote: Quote, *, ask: Callable[[str], str] = input, out: TextIO | None = None) -> bool:
    """Show the quote and ask ``Pay? [y/N]``; only ``y``/``yes`` approves (EOF declines).

    Args:
        quote: the payment to approve.
        ask: reads the answer (default ``input``); out: where to print (default stderr).
    """
    print(_describe(quote), file=out or sys.stderr)
    try:
        answer = ask("Pay? [y/N] ")
    except EOFError:
        return False
    return answer.strip().lower() in ("y", "yes")


def deny_all(quote: Quote) -> bool:
    """Decline every payment (the ``ApprovalDenied`` raised carries the quote)."""
    return False
