"""Compile ``Escrow.sol`` into the committed artifact ``Escrow.json`` (developer tool).

    python -m mpp_claude.tempo.escrow.build            # rewrite Escrow.json
    python -m mpp_claude.tempo.escrow.build --check    # exit 1 if Escrow.json is stale

The compiler is the ``solc`` npm package (soljson, WebAssembly/asm.js: no native
compiler binary is downloaded), pinned to ``SOLC_VERSION`` and installed with npm
into the per-user cache (``$MPP_CLAUDE_CACHE`` or the platform cache dir), next to
anvil.  Normal runs never need it: the artifact is committed and loaded by
``mpp_claude.tempo.escrow.artifact()``.

Settings are fixed here (optimizer 200 runs, EVM ``cancun``, no metadata hash), so
the same source always gives byte-identical bytecode; the unit test
``test_escrow_artifact`` recompiles and compares.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
SOURCE = HERE / "Escrow.sol"
ARTIFACT = HERE / "Escrow.json"
COMPILE_SCRIPT = HERE / "compile.cjs"
SOLC_VERSION = "0.8.37"
CONTRACT = "Escrow"
SETTINGS: dict[str, Any] = {
    "optimizer": {"enabled": True, "runs": 200},
    # anvil 1.7.1 Tempo T4 runs cancun bytecode; newer EVM targets were not needed
    "evmVersion": "cancun",
    "metadata": {"bytecodeHash": "none"},
    "outputSelection": {
        "Escrow.sol": {CONTRACT: ["abi", "evm.bytecode.object", "evm.deployedBytecode.object"]}},
}


class BuildError(RuntimeError):
    """solc could not be installed or the source did not compile."""


def solc_prefix() -> Path:
    """Where the pinned solc npm package is (or will be) installed."""
    from mpp_claude.devnet import cache_dir

    return cache_dir() / f"solc-{SOLC_VERSION}"


def install_solc(*, progress: bool = False) -> Path:
    """Install ``solc@SOLC_VERSION`` from npm into the cache (once); returns its node_modules.

    Raises:
        BuildError: node/npm missing, or npm failed.
    """
    prefix = solc_prefix()
    modules = prefix / "node_modules"
    if (modules / "solc" / "package.json").exists():
        return modules
    npm = shutil.which("npm")
    if npm is None or shutil.which("node") is None:
        raise BuildError("node and npm are needed to compile Escrow.sol (the committed Escrow.json "
                         "works without them)")
    prefix.mkdir(parents=True, exist_ok=True)
    if progress:
        sys.stderr.write(f"installing solc@{SOLC_VERSION} into {prefix} ...\n")
    proc = subprocess.run([npm, "install", "--prefix", str(prefix), "--no-save", "--no-audit", "--no-fund",
                           "--loglevel=error", f"solc@{SOLC_VERSION}"],
                          capture_output=True, text=True, timeout=600)
    if proc.returncode != 0 or not (modules / "solc" / "package.json").exists():
        raise BuildError(f"npm install solc@{SOLC_VERSION} failed (exit {proc.returncode}): "
                         f"{(proc.stderr or proc.stdout).strip()[-500:]}")
    return modules


def compile_source(source: str, *, progress: bool = False) -> dict[str, Any]:
    """Compile ``source`` (the text of Escrow.sol) and return the artifact dict.

    Raises:
        BuildError: solc unavailable, or compilation errors / warnings.
    """
    modules = install_solc(progress=progress)
    std_input = {"language": "Solidity", "sources": {"Escrow.sol": {"content": source}}, "settings": SETTINGS}
    env = dict(os.environ, NODE_PATH=str(modules))
    node = shutil.which("node") or "node"
    proc = subprocess.run([node, str(COMPILE_SCRIPT)], input=json.dumps(std_input), capture_output=True,
                          text=True, env=env, timeout=600)
    if proc.returncode != 0:
        raise BuildError(f"solc failed: {proc.stderr.strip()[-1000:]}")
    result = json.loads(proc.stdout)
    messages = result["output"].get("errors", [])
    if messages:  # warnings are errors too: the contract holds other people's money
        raise BuildError("\n".join(m.get("formattedMessage", str(m)) for m in messages))
    contract = result["output"]["contracts"]["Escrow.sol"][CONTRACT]
    return {
        "contractName": CONTRACT,
        "compiler": {"solc": result["version"], "settings": SETTINGS},
        "sourceSha256": hashlib.sha256(source.encode()).hexdigest(),
        "abi": contract["abi"],
        "bytecode": "0x" + contract["evm"]["bytecode"]["object"],
        "deployedBytecode": "0x" + contract["evm"]["deployedBytecode"]["object"],
    }


def render(artifact: dict[str, Any]) -> str:
    """The artifact as committed (stable key order, one trailing newline)."""
    return json.dumps(artifact, indent=1, sort_keys=True) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="only compare with the committed artifact")
    args = parser.parse_args(argv)
    try:
        fresh = render(compile_source(SOURCE.read_text(), progress=True))
    except BuildError as exc:
        sys.stderr.write(f"error: {exc}\n")
        return 2
    if args.check:
        same = ARTIFACT.exists() and ARTIFACT.read_text() == fresh
        sys.stdout.write("Escrow.json is up to date\n" if same else "Escrow.json is STALE: run the build\n")
        return 0 if same else 1
    ARTIFACT.write_text(fresh)
    size = len(json.loads(fresh)["deployedBytecode"]) // 2 - 1
    sys.stdout.write(f"wrote {ARTIFACT} ({size} bytes of runtime code)\n")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
