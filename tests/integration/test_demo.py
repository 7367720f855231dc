"""`make demo` end to end: a paid, streamed answer, a receipt on the devnet, nothing left running."""

from __future__ import annotations

import re
import subprocess
import sys


def _anvil_pids() -> set[int]:
    out = subprocess.run(["pgrep", "-f", "anvil --network tempo"], capture_output=True, text=True).stdout
    return {int(p) for p in out.split()}


def test_demo_pays_streams_and_stops_everything() -> None:
    """The demo exits 0, prints an answer, a mined receipt whose payee got exactly the price."""
    before = _anvil_pids()
    proc = subprocess.run([sys.executable, "-m", "mpp_claude.demo"], capture_output=True, text=True,
                          timeout=180)
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = proc.stdout
    assert re.search(r"tx hash   : 0x[0-9a-f]{64}", out)
    assert "status success" in out
    assert "receipt   : status=success method=tempo" in out
    price = re.search(r"price     : ([0-9.]+) pathUSD", out)
    payee = re.search(r"payee     : 0\.000000 pathUSD -> ([0-9.]+) pathUSD", out)
    assert price and payee and price.group(1) == payee.group(1)
    assert "0x" not in out.split("asking", 1)[1].split("payment receipt", 1)[0]  # answer has no key material
    assert _anvil_pids() - before == set()
