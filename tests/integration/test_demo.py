"""`make demo` end to end: a paid, streamed answer, a receipt on the devnet, nothing left running."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import uuid
from pathlib import Path


def _anvil_pids(mark: str) -> set[int]:
    """Running anvils that inherited ``mark`` in their environment (other sessions' are not ours)."""
    out = subprocess.run(["pgrep", "-f", "anvil --network tempo"], capture_output=True, text=True).stdout
    pids = set()
    for pid in out.split():
        try:
            if mark.encode() in Path(f"/proc/{pid}/environ").read_bytes():
                pids.add(int(pid))
        except OSError:  # gone meanwhile, or not readable: not one of ours
            pass
    return pids


def test_demo_pays_streams_and_stops_everything() -> None:
    """The demo exits 0, prints an answer, a mined receipt whose payee got exactly the price."""
    mark = f"MPP_CLAUDE_TEST_MARK=demo-{uuid.uuid4().hex}"
    env = {**os.environ, "MPP_CLAUDE_TEST_MARK": mark.split("=", 1)[1]}
    proc = subprocess.run([sys.executable, "-m", "mpp_claude.demo"], capture_output=True, text=True,
                          timeout=180, env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = proc.stdout
    assert re.search(r"tx hash   : 0x[0-9a-f]{64}", out)
    assert "status success" in out
    assert "receipt   : status=success method=tempo" in out
    price = re.search(r"price     : ([0-9.]+) pathUSD", out)
    payee = re.search(r"payee     : 0\.000000 pathUSD -> ([0-9.]+) pathUSD", out)
    assert price and payee and price.group(1) == payee.group(1)
    assert "0x" not in out.split("asking", 1)[1].split("payment receipt", 1)[0]  # answer has no key material
    assert _anvil_pids(mark) == set()  # the demo's own devnet is gone
