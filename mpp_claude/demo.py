"""``make demo``: pay for a streamed chat completion on a local Tempo devnet, end to end.

1. start a Tempo devnet (anvil 1.7.1, hardfork T4);
2. start the reference server (OpenAI-compatible proxy, charge intent) in this process,
   with the offline Anthropic-compatible upstream (or the real API with ``--anthropic``);
3. create a fresh wallet and fund it with 5 pathUSD from a dev account;
4. send a chat completion through the unmodified ``openai`` SDK with ``MppClient`` as its
   HTTP client, streaming the answer;
5. print the price, the receipt (tx hash, amount, payee, block) and the balances.

Everything it starts stops at the end.  No key is ever printed.
"""

from __future__ import annotations

import argparse
import os
import secrets
import sys
import tempfile
import time
from pathlib import Path

from .devnet import Devnet, find_anvil
from .tempo import tip20

DEFAULT_MODEL = "claude-sonnet-5-5"
PROMPT = "In two sentences: why would an AI agent pay per request instead of holding an API key?"


def _step(msg: str) -> None:
    print(f"\n==> {msg}", flush=True)


def _usd(units: int) -> str:
    return f"{tip20.to_display(units)} pathUSD"


def run(*, anthropic: bool, model: str, prompt: str, max_tokens: int) -> int:
    import openai
    from eth_account import Account

    from .client import MppClient, Wallet
    from .server.app import create_app
    from .server.background import serve_in_thread
    from .server.config import build_config

    t0 = time.perf_counter()
    workdir = Path(tempfile.mkdtemp(prefix="mpp-claude-demo-"))
    _step("starting a local Tempo devnet (anvil 1.7.1 --network tempo --hardfork t4)")
    with Devnet.start(anvil=find_anvil()) as net:
        print(f"    RPC {net.rpc_url}, chain id {net.chain_id}")
        payee = Account.create().address
        flags = {"realm": "localhost", "recipient": payee, "rpc_url": net.rpc_url, "chain_id": net.chain_id,
                 "upstream": "anthropic" if anthropic else "local",
                 "store": f"sqlite:///{workdir / 'server.sqlite3'}", "secret_key": secrets.token_hex(32)}
        env = {"anthropic_api_key": os.environ["ANTHROPIC_API_KEY"]} if anthropic else {}
        config = build_config(flags=flags, env=env)
        upstream = "the real Anthropic API" if anthropic else "the offline Anthropic-compatible upstream"
        _step(f"starting the reference server with {upstream}")
        with serve_in_thread(create_app(config)) as base_url:
            print(f"    {base_url}/v1 (payee {payee})")
            _step("creating a fresh wallet and funding it with 5 pathUSD")
            acct = Account.create()
            net.fund(acct.address, 5 * tip20.UNIT)
            wallet = Wallet.from_private_key(acct.key)
            before_payer, before_payee = net.balance(acct.address), net.balance(payee)
            print(f"    wallet {wallet.address}: {_usd(before_payer)}")

            # the unmodified openai SDK; MppClient is its HTTP client and pays the 402s
            mpp = MppClient(wallet, rpc_url=net.rpc_url, allowed_origins=[base_url],
                            ledger=workdir / "ledger.sqlite3")
            client = openai.OpenAI(base_url=f"{base_url}/v1", api_key="unused", http_client=mpp)
            _step(f"asking {model} through the unmodified openai SDK (stream=True)")
            print(f"    > {prompt}\n")
            stream = client.chat.completions.create(
                model=model, messages=[{"role": "user", "content": prompt}], stream=True,
                max_tokens=max_tokens, stream_options={"include_usage": True})
            usage = None
            for chunk in stream:
                if chunk.choices and chunk.choices[0].delta.content:
                    print(chunk.choices[0].delta.content, end="", flush=True)
                usage = chunk.usage or usage
            print()
            paid = mpp.last_receipt
            if paid is None:
                print("no payment was made", file=sys.stderr)
                return 1
            _step("payment receipt")
            print(f"    price     : {_usd(paid.amount)} (quoted upper bound for {max_tokens} output tokens)")
            if usage is not None:
                print(f"    usage     : {usage.prompt_tokens} prompt + "
                      f"{usage.completion_tokens} completion tokens")
            print(f"    tx hash   : {paid.tx_hash}")
            if paid.tx_hash:
                mined = net.rpc.receipt(paid.tx_hash)
                if mined is None:
                    print("    on chain  : NOT FOUND")
                    return 1
                status = "success" if int(mined["status"], 16) == 1 else "reverted"
                print(f"    on chain  : block {int(mined['blockNumber'], 16)}, status {status}")
            print(f"    payee     : {paid.payee}")
            if paid.receipt is not None:
                print(f"    receipt   : status={paid.receipt.status} method={paid.receipt.method} "
                      f"reference={paid.receipt.reference}")
            after_payer, after_payee = net.balance(acct.address), net.balance(payee)
            print(f"    payer     : {_usd(before_payer)} -> {_usd(after_payer)} (amount + network fee)")
            print(f"    payee     : {_usd(before_payee)} -> {_usd(after_payee)}")
            client.close()
    _step(f"server and devnet stopped; done in {time.perf_counter() - t0:.1f}s")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mpp_claude.demo", description=__doc__.split("\n")[0])
    parser.add_argument("--anthropic", action="store_true",
                        help="use the real Anthropic API as upstream (needs ANTHROPIC_API_KEY)")
    parser.add_argument("--model", default=DEFAULT_MODEL)
    parser.add_argument("--prompt", default=PROMPT)
    parser.add_argument("--max-tokens", type=int, default=300)
    args = parser.parse_args(argv)
    if args.anthropic and not os.environ.get("ANTHROPIC_API_KEY"):
        print("--anthropic needs ANTHROPIC_API_KEY in the environment", file=sys.stderr)
        return 2
    return run(anthropic=args.anthropic, model=args.model, prompt=args.prompt, max_tokens=args.max_tokens)


if __name__ == "__main__":
    sys.exit(main())
