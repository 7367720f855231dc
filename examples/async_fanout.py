"""Many concurrent paid calls (AsyncOpenAI + AsyncMppClient) under one shared budget.

All calls start at once inside ``with http.budget(...)``; asyncio tasks inherit the scope, so
every payment is reserved against the same cap before it is signed.  Calls that would pass it
fail with ``BudgetExceeded`` and pay nothing; the others are paid and answered.

    python examples/async_fanout.py --calls 20 --budget 0.01     # local devnet + server
    MPP_CLAUDE_URL=... MPP_RPC_URL=... MPP_PRIVATE_KEY=... python examples/async_fanout.py
"""

from __future__ import annotations

import argparse
import asyncio
import time

from _sandbox import Sandbox, sandbox
from openai import AsyncOpenAI

from mpp_claude.client import AsyncMppClient
from mpp_claude.errors import BudgetExceeded


async def ask(client: AsyncOpenAI, i: int, args: argparse.Namespace) -> str:
    reply = await client.chat.completions.create(
        model=args.model, max_tokens=args.max_tokens,
        messages=[{"role": "user", "content": f"Question {i}: what is {i} squared?"}])
    return reply.choices[0].message.content or ""


async def fan_out(env: Sandbox, args: argparse.Namespace) -> None:
    http = AsyncMppClient(env.wallet, rpc_url=env.rpc_url, allowed_origins=[env.origin], ledger=None)
    client = AsyncOpenAI(base_url=env.base_url, api_key="paid-per-request", http_client=http)
    start = time.perf_counter()
    with http.budget(args.budget, name="fan-out budget"):
        results = await asyncio.gather(*(ask(client, i, args) for i in range(args.calls)),
                                       return_exceptions=True)
    elapsed = time.perf_counter() - start
    answered = [r for r in results if isinstance(r, str)]
    declined = [r for r in results if isinstance(r, BudgetExceeded)]
    failed = [r for r in results if isinstance(r, BaseException) and not isinstance(r, BudgetExceeded)]
    for exc in failed:
        print(f"failed: {type(exc).__name__}: {exc}")
    print(f"{args.calls} calls in {elapsed:.2f} s: {len(answered)} paid and answered, "
          f"{len(declined)} declined by the budget, {len(failed)} failed")
    print(f"spent {http.spent / 1e6:.6f} of {args.budget} USD in {len(http.receipts)} payment(s)")
    await http.aclose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--calls", type=int, default=20)
    parser.add_argument("--budget", default="0.01", help="USD shared by all calls (default 0.01)")
    parser.add_argument("--model", default="claude-haiku-4-5")
    parser.add_argument("--max-tokens", type=int, default=100)
    args = parser.parse_args()
    with sandbox() as env:
        asyncio.run(fan_out(env, args))


if __name__ == "__main__":
    main()
