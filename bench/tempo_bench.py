"""Tempo payments core: client build+sign of a charge transaction, and the server's pure checks.

Scenarios (no chain involved; one process, one run):

1. build + sign + encode a one-transfer charge transaction (expiring nonce, attribution memo):
   ``mpp_claude.tempo.charge`` vs pytempo 0.6.2 building the same transaction (the reference).
   Goal: <= 1 ms median.
2. server-side checks of a ``transaction`` credential, excluding the chain: hex decode, strict
   RLP decode, sender recovery, payment calls, limits (``settle.prepare_pull``).  Goal: <= 1 ms.
3. the same for a sponsored credential (0x78 envelope), including the fee payer's co-signature.

Timings are medians of N runs after a warm-up; the ratio compares with the peer in this run.
"""

from __future__ import annotations

import statistics
import sys
import time
from collections.abc import Callable

from mpp_claude.tempo import charge, settle, signer, tip20
from mpp_claude.tempo.memo import attribution_memo
from mpp_claude.tempo.request import ChargeRequest
from mpp_claude.tempo.signer import LocalSigner
from mpp_claude.tempo.verify import ChargeContext

N = 2000
KEY = "0x" + "4f" * 32
SPONSOR_KEY = "0x" + "6e" * 32
NOW = 1_900_000_000
REQUEST = {"amount": "10000", "currency": tip20.PATH_USD,
           "recipient": "0x742d35cc6634c0532925a3b844bc9e7595f8fe00", "methodDetails": {"chainId": 42431}}


def measure(fn: Callable[[], object], n: int = N) -> tuple[float, float]:
    """Median and p90 in milliseconds."""
    for _ in range(min(200, n)):
        fn()
    samples = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - t0) * 1e3)
    samples.sort()
    return statistics.median(samples), samples[int(0.9 * len(samples))]


def main() -> int:
    backend = "coincurve (libsecp256k1)" if signer.BACKEND == "coincurve" else "eth_keys pure Python"
    print(f"secp256k1 backend: {backend}; N = {N} per scenario")
    req = ChargeRequest.from_request(REQUEST)
    payer = LocalSigner(KEY)

    def ours() -> bytes:
        tx = charge.build_charge_transaction(req, challenge_id="bench-challenge", realm="api.example.com",
                                             now=NOW, expires=NOW + 300, max_fee_per_gas=4 * 10**10)
        return charge.sign_charge(tx, payer).raw

    rows = []
    ours_med, ours_p90 = measure(ours)
    try:
        from pytempo import TempoTransaction
        from pytempo.contracts import TIP20
    except ImportError:
        peer = None
    else:
        token = TIP20(tip20.PATH_USD)

        def theirs() -> bytes:
            memo = attribution_memo("bench-challenge", "api.example.com")
            call = token.transfer_with_memo(to=REQUEST["recipient"], amount=10000, memo=memo)
            tx = TempoTransaction.create(chain_id=42431, gas_limit=charge.charge_gas_limit(1),
                                         max_fee_per_gas=4 * 10**10, max_priority_fee_per_gas=0, nonce=0,
                                         nonce_key=2**256 - 1, valid_before=NOW + 25,
                                         fee_token=tip20.PATH_USD, calls=(call,))
            return bytes(tx.sign(KEY).encode())

        assert theirs() == ours(), "pytempo built different bytes"
        peer = measure(theirs, n=N // 4)
    print(f"build+sign charge tx   mpp_claude median {ours_med:.3f} ms  p90 {ours_p90:.3f} ms")
    if peer is not None:
        print(f"build+sign charge tx   pytempo    median {peer[0]:.3f} ms  p90 {peer[1]:.3f} ms  "
              f"(mpp_claude is {peer[0] / ours_med:.1f}x faster)")
        rows.append(f"| tempo build+sign charge tx | {ours_med:.3f} ms | pytempo {peer[0]:.3f} ms | "
                    f"{ours_med / peer[0]:.2f} |")
    rows.append(f"| tempo build+sign charge tx (goal) | {ours_med:.3f} ms | goal 1 ms | {ours_med:.2f} |")

    ctx = ChargeContext.from_values("bench-challenge", "api.example.com", REQUEST, NOW + 300)
    signature = charge.sign_charge(charge.build_charge_transaction(
        req, challenge_id="bench-challenge", realm="api.example.com", now=NOW, expires=NOW + 300,
        max_fee_per_gas=4 * 10**10), payer).payload()["signature"]
    med, p90 = measure(lambda: settle.prepare_pull(signature, ctx, now=NOW))
    print(f"server checks (pull)   mpp_claude median {med:.3f} ms  p90 {p90:.3f} ms  (goal <= 1 ms)")
    rows.append(f"| tempo server checks of a transaction credential | {med:.3f} ms | goal 1 ms | {med:.2f} |")

    sponsored_req = {**REQUEST, "methodDetails": {"chainId": 42431, "feePayer": True}}
    sctx = ChargeContext.from_values("bench-challenge", "api.example.com", sponsored_req, NOW + 300)
    ssig = charge.sign_charge(charge.build_charge_transaction(
        sctx.request, challenge_id="bench-challenge", realm="api.example.com", now=NOW, expires=NOW + 300,
        max_fee_per_gas=4 * 10**10), payer).payload()["signature"]
    sponsor = LocalSigner(SPONSOR_KEY)
    med, p90 = measure(lambda: settle.prepare_pull(ssig, sctx, now=NOW, fee_payer=sponsor))
    print(f"server checks+cosign   mpp_claude median {med:.3f} ms  p90 {p90:.3f} ms  (sponsored, 0x78)")
    rows.append(f"| tempo server checks + co-sign (sponsored) | {med:.3f} ms | goal 1 ms | {med:.2f} |")
    print()
    print("\n".join(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
