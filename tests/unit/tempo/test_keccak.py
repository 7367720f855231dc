"""The package's keccak256 against eth_hash (an independent implementation), and its backend choice."""

from __future__ import annotations

import hashlib
import importlib
import sys
import types
from collections.abc import Callable

import pytest
from eth_hash.auto import keccak as reference
from hypothesis import given
from hypothesis import strategies as st

from mpp_claude.tempo import _keccak


@pytest.mark.parametrize("size", [0, 1, 31, 32, 135, 136, 137, 271, 272, 273, 1000, 70_000])
def test_matches_eth_hash_around_block_sizes(size: int) -> None:
    data = bytes((i * 7 + 3) % 256 for i in range(size))
    assert _keccak.keccak(data) == reference(data)


@given(st.binary(max_size=600))
def test_matches_eth_hash_on_any_input(data: bytes) -> None:
    assert _keccak.keccak(data) == reference(data)


def test_accepts_bytearray_and_memoryview() -> None:
    data = b"mpp-claude"
    assert _keccak.keccak(bytearray(data)) == _keccak.keccak(memoryview(data)) == reference(data)


def test_linux_cpython_uses_the_c_backend() -> None:
    if sys.platform != "linux" or sys.implementation.name != "cpython":
        pytest.skip("safe-pysha3 is a dependency on Linux CPython only")
    assert _keccak.BACKEND == "safe-pysha3"


def _reload_with(monkeypatch: pytest.MonkeyPatch, sha3_module: types.ModuleType | None
                 ) -> tuple[str, Callable[[bytes], bytes]]:
    """(BACKEND, keccak) of the module imported with ``sha3`` replaced; then the real one again."""
    monkeypatch.setitem(sys.modules, "sha3", sha3_module)  # None makes `import sha3` fail
    try:
        module = importlib.reload(_keccak)
        return module.BACKEND, module.keccak
    finally:
        monkeypatch.undo()
        importlib.reload(_keccak)


def test_falls_back_to_eth_hash_without_the_c_module(monkeypatch: pytest.MonkeyPatch) -> None:
    backend, fn = _reload_with(monkeypatch, None)
    assert backend == "eth_hash"
    assert fn(b"abc") == reference(b"abc")


def test_refuses_a_sha3_module_that_hashes_with_nist_padding(monkeypatch: pytest.MonkeyPatch) -> None:
    impostor = types.ModuleType("sha3")
    impostor.keccak_256 = hashlib.sha3_256  # type: ignore[attr-defined]  # SHA3, not Keccak
    backend, fn = _reload_with(monkeypatch, impostor)
    assert backend == "eth_hash"
    assert fn(b"") == reference(b"")
