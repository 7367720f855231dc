"""``make demo``: the end-to-end walk-through on a local Tempo devnet.

Today it starts the devnet, creates and funds a fresh wallet and prints what a
user needs to pay with it; the paid chat completion joins it once the client
and the reference server land.  Everything it starts is stopped at the end.
"""

from __future__ import annotations

import sys
import time

from .devnet import Devnet, find_anvil
from .tempo import tip20


def _step(msg: str) -> None:
    print(f"==> {msg}", flush=True)


def main() -> int:
    t0 = time.perf_counter()
    _step("starting a local Tempo devnet (anvil 1.7.1, --network tempo --hardfork t4)")
    with Devnet.start(anvil=find_anvil()) as net:
        _step("creating a new wallet and funding it with 100 pathUSD from a dev account")
        from eth_account import Account

        wallet = Account.create()
        tx = net.fund(wallet.address, 100 * tip20.UNIT)
        balance = net.balance(wallet.address)
        print(f"    address : {wallet.address}")
        print(f"    balance : {tip20.to_display(balance)} pathUSD ({balance} base units)")
        print(f"    funded by tx {tx}")
        print(f"    RPC URL : {net.rpc_url}")
        print(f"    chain id: {net.chain_id}")
    _step(f"devnet stopped; done in {time.perf_counter() - t0:.1f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
