"""A local Tempo devnet: anvil 1.7.1 in Tempo mode, started in milliseconds, stopped without orphans.

Usage::

    with Devnet.start() as net:
        wallet = net.new_funded_account(amount=50 * UNIT)
        print(net.rpc_url, net.chain_id, net.balance(wallet.address))

anvil is found in this order: ``$MPP_CLAUDE_ANVIL``, ``anvil`` on ``PATH`` when it
is the pinned version, the per-user cache, and finally an install of the pinned
npm package ``@foundry-rs/anvil-<platform>@1.7.1`` into that cache (needs npm).

Pitfalls handled here (shared/docs/tempo-chain.md §4-§5): anvil defaults to
hardfork T0, so ``--hardfork t4`` is always passed; fresh wallets hold no tokens
and ``anvil_dealERC20`` does not work on the TIP-20 precompiles, so funding is a
real signed ``transfer`` from a dev account, mined and checked; EIP-1559
transactions from a fresh account also need a native balance (``anvil_setBalance``).

Disk: by default anvil keeps recent block states in memory and writes older ones to
``~/.foundry/anvil/tmp/anvil-state-*`` (a full state per block), which it does not remove
when it is stopped: a day of tests and benchmarks left 75 GB there, and the writes slowed
block production as the chain grew (a payment took ~2.5 ms at block 200, ~9 ms at block
800).  anvil runs with ``--max-persisted-states 0`` (recent states stay in memory, older ones
are dropped instead of written: ~4-6 ms at block 800; ``--prune-history`` would keep only the
latest state, which breaks peers that simulate against a recent block, as mppx's server does)
and with ``HOME`` set to the devnet's own temporary directory, which ``stop()`` deletes, so
nothing anvil writes outlives it.

Speed: anvil recomputes the whole state root for every block (over 60% of its CPU per block
is keccak and trie building), and the state grows with the chain: each block adds a slot to
the EIP-2935 block-hash history contract (up to its 8 191-slot ring), each expiring-nonce
transaction two slots to the nonce precompile.  An empty block takes ~1 ms on a fresh devnet
and a payment ~1 ms more per 100 blocks mined before it (measured on a 2-vCPU VM), so long
runs and benchmarks that compare latencies should start from a fresh devnet or take turns.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import weakref
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import DevnetError, RpcError, RpcUnavailable
from .tempo import tip20
from .tempo.rpc import RpcClient, hex_int

ANVIL_VERSION = "1.7.1"
HARDFORK = "t4"
DEVNET_CHAIN_ID = 31337
#: The public, well-known anvil development mnemonic; its accounts are pre-funded on every devnet.
#: Never use these accounts anywhere but a local devnet.
ANVIL_DEV_MNEMONIC = "test test test test test test test test test test test junk"
FAUCET_ACCOUNT_INDEX = 9  # dev3..dev9 pay fees in pathUSD; dev9 is our faucet
DEFAULT_FUND_AMOUNT = 100 * tip20.UNIT
# fake native balance so EIP-1559 transactions from fresh accounts pass the pool check
NATIVE_GAS_FUND = 10**21

_PLATFORMS = {
    ("linux", "x86_64"): "linux-amd64",
    ("linux", "amd64"): "linux-amd64",
    ("linux", "aarch64"): "linux-arm64",
    ("linux", "arm64"): "linux-arm64",
    ("darwin", "x86_64"): "darwin-amd64",
    ("darwin", "arm64"): "darwin-arm64",
    ("win32", "amd64"): "win32-amd64",
    ("win32", "x86_64"): "win32-amd64",
}


def npm_package() -> str:
    """The npm package holding anvil for this platform, e.g. ``@foundry-rs/anvil-linux-amd64``."""
    key = (sys.platform, platform.machine().lower())
    plat = _PLATFORMS.get(key)
    if plat is None:
        raise DevnetError(f"no anvil npm package for platform {key[0]}/{key[1]}; install Foundry's anvil "
                          "1.7.1 yourself and set MPP_CLAUDE_ANVIL=/path/to/anvil")
    return f"@foundry-rs/anvil-{plat}"


def cache_dir() -> Path:
    """Per-user cache for the anvil install (``$MPP_CLAUDE_CACHE`` overrides)."""
    env = os.environ.get("MPP_CLAUDE_CACHE")
    if env:
        return Path(env)
    import platformdirs

    return Path(platformdirs.user_cache_dir("mpp-claude"))


def _cached_binary() -> Path:
    exe = "anvil.exe" if sys.platform == "win32" else "anvil"
    return cache_dir() / f"anvil-{ANVIL_VERSION}" / "node_modules" / npm_package() / "bin" / exe


def _version_of(binary: str) -> str | None:
    try:
        out = subprocess.run([binary, "--version"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    match = re.search(r"Version:\s*(\S+)", out)
    return match.group(1) if match else None


def install_anvil(*, progress: bool = True) -> Path:
    """Install the pinned anvil npm package into the per-user cache and return the binary's path."""
    npm = shutil.which("npm")
    if npm is None:
        raise DevnetError("anvil not found and npm is not installed: install Node.js/npm, or install "
                          f"Foundry's anvil {ANVIL_VERSION} and set MPP_CLAUDE_ANVIL=/path/to/anvil")
    target = _cached_binary()
    prefix = target.parents[4]
    prefix.mkdir(parents=True, exist_ok=True)
    spec = f"{npm_package()}@{ANVIL_VERSION}"
    if progress:
        print(f"mpp-claude: installing {spec} into {prefix} (one time) ...", file=sys.stderr, flush=True)  # noqa: T201 (progress)
    proc = subprocess.run([npm, "install", "--prefix", str(prefix), "--no-save", "--no-audit", "--no-fund",
                           "--loglevel=error", spec], capture_output=True, text=True, timeout=600)
    if proc.returncode != 0 or not target.exists():
        raise DevnetError(f"npm install {spec} failed (exit {proc.returncode}): "
                          f"{(proc.stderr or proc.stdout).strip()[-500:]}")
    return target


def find_anvil(*, install: bool = True) -> str:
    """Path of an anvil 1.7.1 binary; installs it into the cache if allowed and needed.

    Raises:
        DevnetError: nothing found and it cannot be installed (the message names the fix).
    """
    env = os.environ.get("MPP_CLAUDE_ANVIL")
    if env:
        if not (os.path.isfile(env) and os.access(env, os.X_OK)):
            raise DevnetError(f"MPP_CLAUDE_ANVIL={env!r} is not an executable file")
        return env
    cached = _cached_binary()
    if cached.exists():
        return str(cached)
    on_path = shutil.which("anvil")
    if on_path and _version_of(on_path) == ANVIL_VERSION:
        return on_path
    if not install:
        raise DevnetError(f"anvil {ANVIL_VERSION} not found: run `mpp-claude devnet --install`, or set "
                          "MPP_CLAUDE_ANVIL=/path/to/anvil")
    return str(install_anvil())


def _die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    """Linux: SIGTERM the child when the parent dies, so a killed test run leaves no anvil behind."""
    with contextlib.suppress(Exception):
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


@dataclass(frozen=True)
class DevAccount:
    """A pre-funded anvil development account (devnet only)."""

    index: int
    address: str
    private_key: str

    def __repr__(self) -> str:  # never show the key, even a public dev key
        return f"DevAccount(index={self.index}, address={self.address})"


_dev_accounts: list[DevAccount] = []


def dev_accounts() -> list[DevAccount]:
    """The 10 anvil dev accounts, derived from ``ANVIL_DEV_MNEMONIC`` (cached)."""
    if not _dev_accounts:
        from eth_account import Account

        Account.enable_unaudited_hdwallet_features()
        for i in range(10):
            acct = Account.from_mnemonic(ANVIL_DEV_MNEMONIC, account_path=f"m/44'/60'/0'/0/{i}")
            _dev_accounts.append(DevAccount(i, acct.address, acct.key.hex()))
    return list(_dev_accounts)


_live: weakref.WeakSet[Devnet] = weakref.WeakSet()


@atexit.register
def _stop_all() -> None:
    for net in list(_live):
        net.stop()


class Devnet:
    """A running anvil Tempo devnet.  Use ``Devnet.start()`` as a context manager, or call ``stop()``."""

    def __init__(self, proc: subprocess.Popen[bytes], rpc_url: str, log_path: Path, tmpdir: str) -> None:
        self.proc = proc
        self.rpc_url = rpc_url
        self.log_path = log_path
        self._tmpdir = tmpdir
        self.rpc = RpcClient(rpc_url)
        self.chain_id = self.rpc.chain_id()
        self._fund_lock = threading.Lock()
        # eth_accounts lists the unlocked dev accounts: no slow mnemonic derivation needed to fund
        self.faucet_address = str(self.rpc.call("eth_accounts")[FAUCET_ACCOUNT_INDEX])
        _live.add(self)

    # --- lifecycle ---------------------------------------------------------------------------------

    @classmethod
    def start(cls, *, anvil: str | None = None, hardfork: str = HARDFORK, timeout: float = 15.0,
              extra_args: tuple[str, ...] = ()) -> Devnet:
        """Start ``anvil --network tempo --hardfork t4`` on a free loopback port and wait for its RPC.

        Raises:
            DevnetError: anvil missing, or it exited / did not answer within ``timeout`` seconds.
        """
        binary = anvil or find_anvil()
        tmpdir = tempfile.mkdtemp(prefix="mpp-claude-devnet-")
        log_path = Path(tmpdir) / "anvil.log"
        env = dict(os.environ, RUST_LOG=os.environ.get("MPP_CLAUDE_ANVIL_LOG", "warn"), HOME=tmpdir)
        main_thread = threading.current_thread() is threading.main_thread()
        with open(log_path, "wb") as log:
            proc = subprocess.Popen(
                [binary, "--network", "tempo", "--hardfork", hardfork, "--host", "127.0.0.1",
                 "--port", "0", "--max-persisted-states", "0", *extra_args],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
                start_new_session=True,
                preexec_fn=_die_with_parent if sys.platform == "linux" and main_thread else None,
            )
        deadline = time.monotonic() + timeout
        port = None
        try:
            while port is None:
                text = log_path.read_text(errors="replace")
                match = re.search(r"Listening on 127\.0\.0\.1:(\d+)", text)
                if match:
                    port = int(match.group(1))
                    break
                if proc.poll() is not None:
                    raise DevnetError(f"anvil exited with code {proc.returncode}: {text.strip()[-800:]}")
                if time.monotonic() > deadline:
                    raise DevnetError(f"anvil did not start within {timeout:.0f}s: {text.strip()[-800:]}")
                time.sleep(0.002)
            url = f"http://127.0.0.1:{port}"
            probe = RpcClient(url, timeout=1.0)
            try:
                while True:
                    try:
                        probe.call("eth_chainId")
                        break
                    except RpcUnavailable:
                        if time.monotonic() > deadline or proc.poll() is not None:
                            raise DevnetError(f"anvil RPC at {url} did not answer") from None
                        time.sleep(0.002)
            finally:
                probe.close()
            return cls(proc, url, log_path, tmpdir)
        except BaseException:
            _terminate(proc)
            shutil.rmtree(tmpdir, ignore_errors=True)
            raise

    def stop(self) -> None:
        """Stop anvil (SIGTERM, then SIGKILL after 5 s) and remove its temp files.  Idempotent."""
        _live.discard(self)
        with contextlib.suppress(Exception):
            self.rpc.close()
        _terminate(self.proc)
        shutil.rmtree(self._tmpdir, ignore_errors=True)

    @property
    def running(self) -> bool:
        return self.proc.poll() is None

    def __enter__(self) -> Devnet:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def log_tail(self, chars: int = 4000) -> str:
        """The end of anvil's log (``Skipping invalid tx`` lines explain silent drops)."""
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    # --- chain helpers -----------------------------------------------------------------------------

    def balance(self, address: str, token: str = tip20.PATH_USD) -> int:
        """TIP-20 balance of ``address`` in base units."""
        data = "0x" + tip20.encode_balance_of(address).hex()
        return hex_int(self.rpc.call("eth_call", [{"to": token, "data": data}, "latest"]))

    def fund(self, address: str, amount: int = DEFAULT_FUND_AMOUNT, *, token: str = tip20.PATH_USD,
             native: bool = True) -> str:
        """Send ``amount`` base units of ``token`` from the faucet dev account to ``address``.

        A real, mined TIP-20 ``transfer`` (the receipt's status is checked).  With ``native``,
        also give the address a fake native balance so it can send EIP-1559 transactions.
        Returns the funding transaction's hash.
        """
        with self._fund_lock:  # one at a time: anvil assigns the faucet's nonces
            return fund_from_faucet(self.rpc, address, amount, token=token, native=native,
                                    faucet=self.faucet_address)

    def new_funded_account(self, amount: int = DEFAULT_FUND_AMOUNT) -> Any:
        """A fresh ``eth_account`` LocalAccount funded with ``amount`` pathUSD base units."""
        from eth_account import Account

        acct = Account.create()
        self.fund(acct.address, amount)
        return acct

    def mine(self) -> None:
        """Mine an empty block (refreshes the block timestamp; see tempo-chain.md, stale block time)."""
        self.rpc.call("evm_mine")

    @property
    def escrow_address(self) -> str:
        """The session escrow (``mpp_claude/tempo/escrow/Escrow.sol``), deployed on first use."""
        address: str | None = self.__dict__.get("_escrow_address")
        if address is None:
            from .tempo.escrow.deploy import deploy_escrow

            with self._fund_lock:
                address = self.__dict__.get("_escrow_address") or deploy_escrow(self)
                self.__dict__["_escrow_address"] = address
        return address

    def info(self) -> dict[str, Any]:
        try:
            return dict(self.rpc.call("anvil_nodeInfo"))
        except RpcError:
            return {}


def is_devnet(rpc: RpcClient) -> bool:
    """True when ``rpc`` is a local anvil devnet (chain id 31337 and ``anvil_nodeInfo`` answers).

    Raises:
        RpcUnavailable: the endpoint cannot be reached.
    """
    if rpc.chain_id() != DEVNET_CHAIN_ID:
        return False
    try:
        rpc.call("anvil_nodeInfo")
    except RpcError:
        return False
    return True


def fund_from_faucet(rpc: RpcClient, address: str, amount: int = DEFAULT_FUND_AMOUNT, *,
                     token: str = tip20.PATH_USD, native: bool = True, faucet: str | None = None) -> str:
    """Send ``amount`` base units of ``token`` from the devnet's faucet dev account to ``address``.

    Works on any running anvil devnet (this process's or another's: ``mpp-claude devnet``).
    Callers sending concurrently from one faucet must serialise (anvil assigns its nonces).

    Args:
        rpc: a client of the devnet.
        faucet: the unlocked dev account to send from (default: dev account 9).
        native: also give ``address`` a fake native balance for EIP-1559 transactions.
    Returns:
        The funding transaction's hash (mined; its status checked).
    Raises:
        DevnetError: the transfer reverted.
    """
    sender = faucet or str(rpc.call("eth_accounts")[FAUCET_ACCOUNT_INDEX])
    data = "0x" + tip20.encode_transfer(address, amount).hex()
    tx = {"from": sender, "to": token, "data": data, "gas": hex(600_000)}
    tx_hash = rpc.call("eth_sendTransaction", [tx])
    receipt = rpc.wait_for_receipt(tx_hash, timeout=10)
    if hex_int(receipt.get("status", "0x0")) != 1:
        raise DevnetError(f"funding transfer {tx_hash} reverted")
    if native:
        rpc.call("anvil_setBalance", [address, hex(NATIVE_GAS_FUND)])
    return str(tx_hash)


def _terminate(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        proc.terminate()
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        proc.wait(timeout=5)


@contextlib.contextmanager
def devnet(**kwargs: Any) -> Iterator[Devnet]:
    """Context manager form of ``Devnet.start``."""
    net = Devnet.start(**kwargs)
    try:
        yield net
    finally:
        net.stop()
