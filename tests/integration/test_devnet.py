"""The devnet manager: start/stop without orphans, funding, a mined TIP-20 transfer."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from eth_utils import to_checksum_address

from mpp_claude.devnet import DEVNET_CHAIN_ID, Devnet, find_anvil
from mpp_claude.tempo import tip20
from mpp_claude.tempo.rpc import hex_int


def _anvil_pids() -> set[int]:
    out = subprocess.run(["pgrep", "-f", "anvil --network tempo"], capture_output=True, text=True).stdout
    return {int(p) for p in out.split()}


def test_devnet_is_tempo_t4(devnet: Devnet) -> None:
    """The session devnet runs Tempo mode at hardfork T4 on the devnet chain id."""
    assert devnet.chain_id == DEVNET_CHAIN_ID
    info = devnet.info()
    assert info["network"] == "tempo"
    assert info["hardFork"] == "T4"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_twenty_start_stop_cycles_leave_no_process() -> None:
    """20 start/stop cycles: every anvil process started is gone afterwards (others' are ignored)."""
    binary = find_anvil()
    started = []
    for _ in range(20):
        with Devnet.start(anvil=binary) as net:
            assert net.running
            assert net.proc.pid in _anvil_pids()
            started.append(net.proc.pid)
        assert not net.running
    assert len(set(started)) == 20
    assert [pid for pid in started if _alive(pid)] == []
    assert not set(started) & _anvil_pids()


def test_killed_parent_leaves_no_anvil(tmp_path) -> None:
    """A test process killed with SIGKILL takes its anvil with it (Linux parent-death signal)."""
    if sys.platform != "linux":
        pytest.skip("parent-death signal is Linux only")
    script = tmp_path / "child.py"
    script.write_text(
        "import sys, time\n"
        "from mpp_claude.devnet import Devnet\n"
        "net = Devnet.start()\n"
        "print(net.proc.pid, flush=True)\n"
        "time.sleep(60)\n")
    child = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True)
    assert child.stdout is not None
    anvil_pid = int(child.stdout.readline())
    child.kill()
    child.wait()
    for _ in range(200):
        try:
            os.kill(anvil_pid, 0)
        except ProcessLookupError:
            break
        import time

        time.sleep(0.01)
    else:
        os.kill(anvil_pid, 9)
        pytest.fail("anvil outlived its killed parent")


def test_funded_fresh_wallet_sends_a_mined_tip20_transfer(devnet: Devnet, funded_account) -> None:
    """A fresh wallet funded by the devnet pays another address with a signed, mined TIP-20 transfer."""
    from eth_account import Account

    payee = Account.create().address
    assert devnet.balance(funded_account.address) == 100 * tip20.UNIT
    tx = {
        "type": 2, "chainId": devnet.chain_id, "nonce": devnet.rpc.nonce(funded_account.address),
        "to": to_checksum_address(tip20.PATH_USD), "value": 0,
        "data": tip20.encode_transfer(payee, 1_234_567),
        "gas": 600_000, "maxFeePerGas": 2 * devnet.rpc.base_fee() + 1, "maxPriorityFeePerGas": 0,
    }
    signed = funded_account.sign_transaction(tx)
    tx_hash = devnet.rpc.send_raw(signed.raw_transaction)
    receipt = devnet.rpc.wait_for_receipt(tx_hash, timeout=10)
    assert hex_int(receipt["status"]) == 1
    assert devnet.balance(payee) == 1_234_567
    # the sender paid the amount plus a fee in pathUSD (fallback fee token)
    assert devnet.balance(funded_account.address) < 100 * tip20.UNIT - 1_234_567


def test_a_long_chain_writes_nothing_to_disk_and_stop_leaves_nothing() -> None:
    """Past ~400 blocks anvil writes each older block's state to ``$HOME/.foundry/anvil/tmp``
    (~0.3 MB a block, never removed); the devnet runs it with ``--max-persisted-states 0`` and
    its own ``HOME``, so 600 blocks leave only the log, and ``stop()`` removes even that."""
    real_states = Path.home() / ".foundry" / "anvil" / "tmp"
    before = set(real_states.iterdir()) if real_states.is_dir() else set()
    net = Devnet.start()
    try:
        net.rpc.call("anvil_mine", [hex(600)])
        home = Path(net.log_path).parent
        files = sorted(p.relative_to(home).as_posix() for p in home.rglob("*") if p.is_file())
        assert files == ["anvil.log"]
    finally:
        net.stop()
    assert not home.exists()
    after = set(real_states.iterdir()) if real_states.is_dir() else set()
    assert after == before
