"""Session intent: voucher signing, verification throughput and the per-request overhead.

Scenarios (no chain involved; one process, one run):

1. sign a cumulative EIP-712 voucher (``session.sign_voucher``).  Goal: median <= 0.5 ms.
   Peer: eth-account ``Account.sign_message(encode_typed_data(...))`` on the same typed data
   (the signatures are asserted identical first).
2. verify a voucher as the server does for every ``voucher`` credential, chain state in hand:
   signature parsing, low-s, EIP-712 digest, recovery, signer and amount rules
   (``session.accept_voucher``).  Goal: >= 5,000 per second on one core.
   Peer: eth-account ``Account.recover_message`` of the same typed data (recovery only).

Timings are medians of N runs after a warm-up.  Throughput is N sequential calls on this
thread, reported two ways: per wall-clock second, and per CPU second of this thread
(``time.thread_time``), which is the "per core" figure and does not depend on how busy the
machine's other cores and processes are; the load average is printed alongside.

3. then (unless ``--no-e2e``) ``bench/_session_e2e.py`` on the devnet: the per-request overhead of
   a session-paid streamed completion vs an unpaid one (goal: <= 2 ms), beside the charge
   intent, with the reference server in its own process.
"""

from __future__ import annotations

import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mpp_claude.tempo import signer as signer_mod
from mpp_claude.tempo.session import (
    ZERO_ADDRESS,
    ChannelAccount,
    ChannelState,
    VoucherDomain,
    accept_voucher,
    sign_voucher,
)
from mpp_claude.tempo.signer import LocalSigner

N = 5000
KEY = bytes.fromhex("4f" * 32)
ESCROW = "0x33b901018174ddabe4841042ab76ba85d4e24f25"
CID = "0x" + "5d" * 32
SIGN_GOAL_MS = 0.5
VERIFY_GOAL_PER_S = 5000


def measure(fn: Callable[[], object], n: int = N) -> float:
    """Median in milliseconds."""
    for _ in range(min(200, n)):
        fn()
    samples = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(samples)


def throughput(fn: Callable[[int], object], n: int = N) -> tuple[float, float]:
    """Calls of ``fn(i)`` for i in range(n), sequential on this thread: per wall-clock second and
    per CPU second of this thread."""
    for i in range(min(200, n)):
        fn(i)
    t0, c0 = time.perf_counter(), time.thread_time()
    for i in range(n):
        fn(i)
    return n / (time.perf_counter() - t0), n / max(time.thread_time() - c0, 1e-9)


def _load() -> str:
    try:
        with open("/proc/loadavg") as fh:
            return fh.read().split()[0]
    except OSError:
        return "n/a"


def _typed(amount: int) -> dict[str, Any]:
    return {
        "types": {"EIP712Domain": [{"name": "name", "type": "string"}, {"name": "version", "type": "string"},
                                   {"name": "chainId", "type": "uint256"},
                                   {"name": "verifyingContract", "type": "address"}],
                  "Voucher": [{"name": "channelId", "type": "bytes32"},
                              {"name": "cumulativeAmount", "type": "uint128"}]},
        "primaryType": "Voucher",
        "domain": {"name": "Tempo Stream Channel", "version": "1", "chainId": 4217,
                   "verifyingContract": ESCROW},
        "message": {"channelId": bytes.fromhex(CID[2:]), "cumulativeAmount": amount},
    }


def main() -> int:
    backend = "coincurve (libsecp256k1)" if signer_mod._cc is not None else "eth_keys pure Python"
    print(f"secp256k1 backend: {backend}; N = {N} per scenario; load average {_load()}")
    payer = LocalSigner(KEY)
    domain = VoucherDomain(4217, ESCROW)
    rows: list[str] = []

    counter = iter(range(10**9))
    sign_med = measure(lambda: sign_voucher(payer, domain, CID, next(counter)))
    print(f"sign voucher           mpp_claude median {sign_med:.4f} ms  (goal <= {SIGN_GOAL_MS} ms)")

    try:
        from eth_account import Account
        from eth_account.messages import encode_typed_data
    except ImportError:  # pragma: no cover - eth-account is a dependency
        Account = None
    if Account is not None:
        ours = sign_voucher(payer, domain, CID, 12345).signature
        theirs = bytes(Account.sign_message(encode_typed_data(full_message=_typed(12345)), KEY).signature)
        assert ours == theirs, "eth-account produced a different voucher signature"
        peer_counter = iter(range(10**9))
        peer_sign = measure(lambda: Account.sign_message(
            encode_typed_data(full_message=_typed(next(peer_counter))), KEY), n=N // 10)
        print(f"sign voucher           eth-account median {peer_sign:.4f} ms  "
              f"(mpp_claude is {peer_sign / sign_med:.0f}x faster)")
        rows.append(f"| session sign voucher | {sign_med:.4f} ms | eth-account {peer_sign:.4f} ms | "
                    f"{sign_med / peer_sign:.3f} |")
    rows.append(f"| session sign voucher (goal) | {sign_med:.4f} ms | goal {SIGN_GOAL_MS} ms | "
                f"{sign_med / SIGN_GOAL_MS:.2f} |")

    deposit = 10 * N + 10
    state = ChannelState(finalized=False, close_requested_at=0, payer=payer.address, payee="0x" + "b2" * 20,
                         token="0x20c0000000000000000000000000000000000000", authorized_signer=ZERO_ADDRESS,
                         deposit=deposit, settled=0)
    vouchers = [sign_voucher(payer, domain, CID, 10 * (i + 1)) for i in range(N + 200)]
    base = ChannelAccount(CID)

    def verify(i: int) -> object:
        return accept_voucher(base, vouchers[i], state, domain)

    wall_s, per_s = throughput(verify)
    print(f"verify voucher         mpp_claude {per_s:,.0f} /s per CPU second on one core, {wall_s:,.0f} /s "
          f"wall clock  (goal >= {VERIFY_GOAL_PER_S:,}/s per core)")
    if Account is not None:
        messages = [encode_typed_data(full_message=_typed(10 * (i + 1))) for i in range(N // 10 + 200)]

        def peer_verify(i: int) -> object:
            return Account.recover_message(messages[i], signature=vouchers[i].signature)

        _, peer_per_s = throughput(peer_verify, n=N // 10)
        print(f"recover voucher        eth-account {peer_per_s:,.0f} /s per CPU second  "
              f"(mpp_claude verifies {per_s / peer_per_s:.0f}x more per second)")
        rows.append(f"| session verify voucher (per CPU s) | {per_s:,.0f}/s | eth-account recover "
                    f"{peer_per_s:,.0f}/s | "
                    f"{per_s / peer_per_s:.1f} |")
    rows.append(f"| session verify voucher per core (goal) | {per_s:,.0f}/s | goal {VERIFY_GOAL_PER_S:,}/s | "
                f"{per_s / VERIFY_GOAL_PER_S:.2f} |")
    print()
    print("\n".join(rows))
    if "--no-e2e" in sys.argv:
        return 0
    # The third measurement of the issue: per-request overhead of a session-paid streamed
    # completion vs an unpaid one, beside the charge intent, on the devnet (bench/_session_e2e.py).
    print("\n==> per-request overhead on the devnet (bench/_session_e2e.py)")
    sys.stdout.flush()
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import _session_e2e

    return int(_session_e2e.main())


if __name__ == "__main__":
    sys.exit(main())
