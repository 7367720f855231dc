"""The public API of mpp_claude.protocol is exactly its sorted __all__."""

from __future__ import annotations

import mpp_claude.protocol as protocol


def test_all_is_sorted_and_complete() -> None:
    """__all__ is sorted (constants, classes, functions as ruff sorts them) and every name exists."""
    def order(name: str) -> tuple[bool, bool, str]:
        return (not name.isupper(), not name[0].isupper(), name)

    assert protocol.__all__ == sorted(protocol.__all__, key=order)
    for name in protocol.__all__:
        assert getattr(protocol, name) is not None
    public = {n for n in vars(protocol) if not n.startswith("_") and n != "annotations"}
    modules = {"accept", "challenge", "credential", "digest", "encoding", "problem", "receipt", "verify"}
    assert public - modules == set(protocol.__all__)
