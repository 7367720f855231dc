"""A pay-per-call experiment: every model x every prompt, one paid call each; cost, tokens and
latency per call go to a CSV file and a PNG chart (matplotlib).

    python examples/pay_per_call_experiment.py --out results/      # local devnet + server
    MPP_CLAUDE_URL=... MPP_RPC_URL=... MPP_PRIVATE_KEY=... python examples/pay_per_call_experiment.py

Costs are what was paid: the server's upper-bound quote for ``--max-tokens`` output tokens.
"""

from __future__ import annotations

import argparse
import csv
import time
from pathlib import Path

from _sandbox import sandbox
from openai import OpenAI

from mpp_claude.client import MppClient, receipt_of

MODELS = ["claude-haiku-4-5", "claude-sonnet-4-6", "claude-opus-4-8"]
PROMPTS = ["Name a prime number.", "Explain HTTP 402 in one sentence.",
           "Write a haiku about paying per request for every single token you read."]
FIELDS = ["model", "prompt", "cost_usd", "prompt_tokens", "completion_tokens", "latency_s", "tx_hash"]


def chart(rows: list[dict[str, str]], path: Path) -> None:
    """Cost per call (bars, left) and latency (dots, right), grouped by model."""
    import matplotlib

    matplotlib.use("Agg")  # no display needed
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 4.5))
    labels = [f"{r['model'].removeprefix('claude-')}\n#{i % len(PROMPTS) + 1}" for i, r in enumerate(rows)]
    ax.bar(labels, [float(r["cost_usd"]) for r in rows], color="tab:blue")
    ax.set_ylabel("cost per call (USD)")
    ax.tick_params(axis="x", labelsize=7)
    lat = ax.twinx()
    lat.plot(labels, [float(r["latency_s"]) for r in rows], "o", color="tab:orange")
    lat.set_ylabel("latency (s, incl. payment)")
    lat.set_ylim(bottom=0)
    ax.set_title("pay-per-call: cost and latency per model x prompt")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=Path("."), help="directory for calls.csv and calls.png")
    parser.add_argument("--models", nargs="+", default=MODELS)
    parser.add_argument("--max-tokens", type=int, default=200)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    rows: list[dict[str, str]] = []
    with sandbox() as env:
        http = MppClient(env.wallet, rpc_url=env.rpc_url, allowed_origins=[env.origin], ledger=None)
        client = OpenAI(base_url=env.base_url, api_key="paid-per-request", http_client=http)
        for model in args.models:
            for prompt in PROMPTS:
                start = time.perf_counter()
                raw = client.chat.completions.with_raw_response.create(
                    model=model, messages=[{"role": "user", "content": prompt}], max_tokens=args.max_tokens)
                usage, paid = raw.parse().usage, receipt_of(raw)
                rows.append({"model": model, "prompt": prompt,
                             "cost_usd": paid.display_amount if paid else "0",
                             "prompt_tokens": str(usage.prompt_tokens if usage else ""),
                             "completion_tokens": str(usage.completion_tokens if usage else ""),
                             "latency_s": f"{time.perf_counter() - start:.3f}",
                             "tx_hash": (paid.tx_hash or "") if paid else ""})
                print(f"{model:20} {rows[-1]['cost_usd']:>9} USD  {rows[-1]['latency_s']} s  {prompt[:40]}")
        http.close()
    with open(args.out / "calls.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=FIELDS)
        writer.writeheader()
        writer.writerows(rows)
    chart(rows, args.out / "calls.png")
    print(f"wrote {args.out / 'calls.csv'} ({len(rows)} calls) and {args.out / 'calls.png'}")


if __name__ == "__main__":
    main()
