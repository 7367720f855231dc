"""The v1 session escrow: our ``Escrow.sol``, its committed build artifact, addresses, deployment.

* ``Escrow.sol`` implements the v1 interface of draft-tempo-session-00 (the deployed
  ``TempoStreamChannel`` ABI); ``Escrow.json`` is its committed build (see ``build.py``).
* ``addresses`` lists the canonical escrows per Tempo chain and resolves the one to use.
* ``deploy.deploy_escrow`` deploys ``Escrow.json`` (devnet or any chain with a funded key).

Channel calldata, voucher signing and the accounting rules live in
``mpp_claude.tempo.session``; this package is only about the contract itself.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

from .._keccak import keccak
from .addresses import CANONICAL_ESCROWS, KNOWN_V1_ESCROWS, V2_CHANNEL_RESERVE, resolve_escrow

ARTIFACT_PATH = Path(__file__).resolve().parent / "Escrow.json"

__all__ = [
    "ARTIFACT_PATH",
    "CANONICAL_ESCROWS",
    "KNOWN_V1_ESCROWS",
    "V2_CHANNEL_RESERVE",
    "artifact",
    "decode_revert",
    "resolve_escrow",
]


@functools.lru_cache(maxsize=1)
def artifact() -> dict[str, Any]:
    """The committed build of ``Escrow.sol``: ``abi``, ``bytecode``, ``deployedBytecode``,
    ``compiler`` and ``sourceSha256`` (read once)."""
    data: dict[str, Any] = json.loads(ARTIFACT_PATH.read_text())
    return data


@functools.lru_cache(maxsize=1)
def _error_selectors() -> dict[bytes, str]:
    out = {}
    for item in artifact()["abi"]:
        if item.get("type") == "error":
            sig = f"{item['name']}({','.join(i['type'] for i in item['inputs'])})"
            out[keccak(sig.encode())[:4]] = item["name"]
    return out


def decode_revert(data: bytes | str | None) -> str | None:
    """The escrow custom error name (e.g. ``"AmountNotIncreasing"``) for revert data, or ``None``."""
    if isinstance(data, str):
        try:
            data = bytes.fromhex(data[2:] if data[:2] == "0x" else data)
        except ValueError:
            return None
    if not data or len(data) < 4:
        return None
    return _error_selectors().get(bytes(data[:4]))
