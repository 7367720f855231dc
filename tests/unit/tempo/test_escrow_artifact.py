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
