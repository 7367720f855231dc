"""Run the reference server with your own price table (USD per million tokens, per model).

Without ``--serve``: a self-contained tour on a local devnet: start the server with ``PRICES``,
pay one call per priced model through the openai SDK, and show that the price follows the table.
With ``--serve``: serve for real until Ctrl-C; ``MPP_RPC_URL`` and ``MPP_RECIPIENT`` (or
``--rpc-url`` / ``--recipient``) are required, the rest as ``mpp-claude serve`` (MPP_* variables).

    python examples/serve_your_own.py
    MPP_RPC_URL=https://rpc.moderato.tempo.xyz MPP_RECIPIENT=0x... python examples/serve_your_own.py --serve
"""

from __future__ import annotations

import argparse
import os

from mpp_claude.server.app import create_app
from mpp_claude.server.config import load_config

# Overrides of the built-in table; models you leave out keep their list price.
PRICES = {
    "claude-haiku-4-5": {"input": "0.50", "output": "2.00"},    # half the list price
    "claude-opus-4-8": {"input": "20.00", "output": "90.00"},   # a premium for the big model
}


def tour() -> None:
    from eth_account import Account
    from openai import OpenAI

    from mpp_claude.client import MppClient, Wallet, receipt_of
    from mpp_claude.devnet import Devnet
    from mpp_claude.server.background import serve_in_thread

    with Devnet.start() as net:
        payee, payer = Account.create().address, Account.create()
        net.fund(payer.address, 1_000_000)  # 1 pathUSD
        config = load_config(flags={"rpc_url": net.rpc_url, "chain_id": net.chain_id, "recipient": payee,
                                    "store": "memory://", "upstream": "local", "prices": PRICES,
                                    "secret_key": os.urandom(32).hex()}, environ={})
        with serve_in_thread(create_app(config)) as url:
            http = MppClient(Wallet.from_private_key(payer.key), rpc_url=net.rpc_url, allowed_origins=[url],
                             ledger=None)
            client = OpenAI(base_url=url + "/v1", api_key="paid-per-request", http_client=http)
            for model, price in PRICES.items():
                raw = client.chat.completions.with_raw_response.create(
                    model=model, max_tokens=1000, messages=[{"role": "user", "content": "hi"}])
                paid = receipt_of(raw)
                assert paid is not None
                print(f"{model}: ${price['input']} in / ${price['output']} out per M tokens -> paid "
                      f"{paid.display_amount} USD for up to 1000 output tokens (tx {paid.tx_hash})")
            http.close()
        print(f"payee {payee} received {net.balance(payee) / 1e6:.6f} USD")


def serve(args: argparse.Namespace) -> None:
    import uvicorn

    from mpp_claude.tempo.rpc import RpcClient

    rpc_url = args.rpc_url or os.environ.get("MPP_RPC_URL", "")
    flags = {"rpc_url": rpc_url, "recipient": args.recipient, "prices": PRICES,
             "chain_id": RpcClient(rpc_url).chain_id() if rpc_url else None}
    config = load_config(flags=flags)  # + MPP_* variables; a dev secret is created on first run
    print(f"serving on http://{args.host}:{args.port}/v1 with prices {PRICES}")
    uvicorn.run(create_app(config), host=args.host, port=args.port)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--serve", action="store_true", help="serve until Ctrl-C instead of the tour")
    parser.add_argument("--rpc-url", help="Tempo JSON-RPC URL (default $MPP_RPC_URL)")
    parser.add_argument("--recipient", help="payee address (default $MPP_RECIPIENT)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8402)
    args = parser.parse_args()
    if args.serve:
        serve(args)
    else:
        tour()


if __name__ == "__main__":
    main()
