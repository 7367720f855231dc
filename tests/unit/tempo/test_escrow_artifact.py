"""The committed escrow build and address table.

``test_artifact_matches_a_fresh_compile`` recompiles Escrow.sol with the pinned solc npm
package (soljson) and compares byte for byte.  It runs in ``make test``: solc installs once
into the per-user cache (~2 s, 9 MB) and compiling takes ~3 s.  It is skipped only when
node/npm are missing or the one-time install fails (offline), because the committed artifact,
not the compiler, is what every other test and every deployment uses.
"""

from __future__ import annotations

import hashlib
import shutil

import pytest

from mpp_claude.errors import ConfigError
from mpp_claude.tempo.escrow import (
    ARTIFACT_PATH,
    CANONICAL_ESCROWS,
    KNOWN_V1_ESCROWS,
    artifact,
    build,
    resolve_escrow,
)


def test_artifact_is_built_from_the_committed_source() -> None:
    """Escrow.json records the sha256 of Escrow.sol as committed (source and build move together)."""
    digest = hashlib.sha256(build.SOURCE.read_text().encode()).hexdigest()
    assert artifact()["sourceSha256"] == digest
    assert artifact()["compiler"]["solc"].startswith(build.SOLC_VERSION + "+")
    assert artifact()["bytecode"].startswith("0x") and len(artifact()["deployedBytecode"]) > 1000


def test_artifact_matches_a_fresh_compile() -> None:
    """A fresh compile with the pinned solc gives exactly the committed Escrow.json."""
    if shutil.which("node") is None or shutil.which("npm") is None:
        pytest.skip("node/npm not installed: cannot run the solc npm package")
    try:
        fresh = build.render(build.compile_source(build.SOURCE.read_text()))
    except build.BuildError as exc:
        if "npm install" in str(exc):
            pytest.skip(f"solc could not be installed (offline?): {exc}")
        raise
    assert fresh == ARTIFACT_PATH.read_text()


def test_resolve_escrow() -> None:
    """Canonical addresses per chain, overrides first, unknown chains refused."""
    assert resolve_escrow(4217) == "0x33b901018174ddabe4841042ab76ba85d4e24f25"
    assert resolve_escrow(42431) == CANONICAL_ESCROWS[42431]
    assert CANONICAL_ESCROWS[42431] in KNOWN_V1_ESCROWS[42431]
    assert resolve_escrow(31337, {31337: "0x" + "AB" * 20}) == "0x" + "ab" * 20
    with pytest.raises(ConfigError, match="31337"):
        resolve_escrow(31337)
    with pytest.raises(ConfigError, match="40 hex"):
        resolve_escrow(1, {1: "0x1234"})


# The deployed v1 escrow's ABI (mppx src/tempo/legacy/session/escrow.abi.ts): same selectors and
# event topics mean clients and servers speak to our contract and the canonical ones alike.
DEPLOYED_V1_FUNCTIONS = {
    "CLOSE_GRACE_PERIOD()", "VOUCHER_TYPEHASH()", "channels(bytes32)", "close(bytes32,uint128,bytes)",
    "computeChannelId(address,address,address,bytes32,address)", "domainSeparator()", "eip712Domain()",
    "getChannel(bytes32)", "getChannelsBatch(bytes32[])", "getVoucherDigest(bytes32,uint128)",
    "open(address,address,uint128,bytes32,address)", "requestClose(bytes32)",
    "settle(bytes32,uint128,bytes)", "topUp(bytes32,uint256)", "withdraw(bytes32)",
}
DEPLOYED_V1_EVENTS = {
    "ChannelClosed(bytes32,address,address,uint256,uint256)",
    "ChannelOpened(bytes32,address,address,address,address,bytes32,uint256)",
    "CloseRequestCancelled(bytes32,address,address)", "CloseRequested(bytes32,address,address,uint256)",
    "Settled(bytes32,address,address,uint256,uint256,uint256)",
    "TopUp(bytes32,address,address,uint256,uint256)",
}


def _signatures(kind: str) -> set[str]:
    def typ(item: dict[str, object]) -> str:
        t = str(item["type"])
        if t.startswith("tuple"):
            comps = item["components"]
            assert isinstance(comps, list)
            return "(" + ",".join(typ(c) for c in comps) + ")" + t[5:]
        return t

    return {f"{i['name']}({','.join(typ(x) for x in i['inputs'])})" for i in artifact()["abi"]
            if i["type"] == kind}


def test_abi_has_the_deployed_v1_interface() -> None:
    """Every function and event of the deployed v1 escrow exists with the same signature."""
    assert _signatures("function") >= DEPLOYED_V1_FUNCTIONS
    assert _signatures("event") >= DEPLOYED_V1_EVENTS
