"""An agent loop with tool calls, paid per request, that stops cleanly when its budget runs out.

Each model call is one step with its own sub-budget (``--step-budget``); all steps of all tasks
draw from one run budget (``--budget``).  A step whose quoted price does not fit either cap
raises ``BudgetExceeded`` before anything is signed, and the agent stops there.

    python examples/budget_agent.py                  # local devnet + reference server
    MPP_CLAUDE_URL=... MPP_RPC_URL=... MPP_PRIVATE_KEY=... python examples/budget_agent.py
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from _sandbox import sandbox
from openai import OpenAI

from mpp_claude.client import MppClient, receipt_of
from mpp_claude.errors import BudgetExceeded

TOOLS: Any = [{"type": "function", "function": {
    "name": "get_weather", "description": "Current weather for a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}]
CITIES = ["Paris", "Lagos", "Osaka", "Lima", "Oslo", "Cairo", "Quito", "Perth"]


def get_weather(city: str) -> str:
    """The local tool the model may call."""
    return f"{city}: {12 + len(city)} degrees C, light wind"


def run_task(client: OpenAI, http: MppClient, city: str, args: argparse.Namespace) -> int:
    """One task: ask, run the tool calls the model asks for, repeat until it answers.  Returns steps."""
    messages: Any = [{"role": "user", "content": f"What is the weather in {city}? Use the get_weather tool."}]
    for step in range(1, args.max_steps + 1):
        with http.budget(args.step_budget, name="step budget"):
            raw = client.chat.completions.with_raw_response.create(
                model=args.model, messages=messages, tools=TOOLS, max_tokens=args.max_tokens)
        reply = raw.parse().choices[0].message
        paid = receipt_of(raw)
        print(f"  step {step}: paid {paid.display_amount if paid else 0} USD")
        if not reply.tool_calls:
            print(f"  answer: {reply.content}")
            return step
        messages.append(reply.model_dump(exclude_none=True))
        for call in reply.tool_calls:
            assert call.type == "function"
            result = get_weather(**json.loads(call.function.arguments))
            print(f"  tool {call.function.name}({call.function.arguments}) -> {result}")
            messages.append({"role": "tool", "tool_call_id": call.id, "content": result})
    return int(args.max_steps)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--budget", default="0.02", help="USD for the whole run (default 0.02)")
    parser.add_argument("--step-budget", default="0.005", help="USD per model call (default 0.005)")
    parser.add_argument("--model", default="claude-haiku-4-5")
    parser.add_argument("--max-tokens", type=int, default=400)
    parser.add_argument("--max-steps", type=int, default=4)
    args = parser.parse_args()
    with sandbox() as env:
        # ledger=None keeps the spend ledger in memory; "default" shares the user's SQLite ledger
        http = MppClient(env.wallet, rpc_url=env.rpc_url, allowed_origins=[env.origin], ledger=None)
        client = OpenAI(base_url=env.base_url, api_key="paid-per-request", http_client=http)
        done = 0
        try:
            with http.budget(args.budget, name="run budget"):
                for city in CITIES:
                    print(f"task: weather in {city}")
                    run_task(client, http, city, args)
                    done += 1
        except BudgetExceeded as exc:
            print(f"stopped cleanly: {exc.limit} reached ({exc})")
        print(f"{done} task(s) done, {len(http.receipts)} payment(s), spent {http.spent / 1e6:.6f} USD")
        http.close()


if __name__ == "__main__":
    main()
