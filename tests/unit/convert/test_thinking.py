"""ThinkingStore: bounded, TTL'd, clock passed in."""

from __future__ import annotations

import pytest

from mpp_claude.convert import ThinkingStore
from mpp_claude.convert.thinking import blocks_by_tool_id

BLOCK = {"type": "thinking", "thinking": "abc", "signature": "sig"}


def test_get_returns_copies() -> None:
    """Stored blocks come back equal but not shared."""
    store = ThinkingStore()
    store.put("t1", [BLOCK], now=0)
    got = store.get("t1", now=1)
    assert got == [BLOCK]
    assert got is not None
    got[0]["thinking"] = "changed"
    assert store.get("t1", now=1) == [BLOCK]


def test_ttl() -> None:
    """Entries expire after ttl seconds."""
    store = ThinkingStore(ttl=10)
    store.put("t1", [BLOCK], now=0)
    assert store.get("t1", now=9.9) is not None
    assert store.get("t1", now=10) is None
    assert len(store) == 0


def test_lru_entries_bound() -> None:
    """The least recently used entry goes first."""
    store = ThinkingStore(max_entries=2)
    store.put("a", [BLOCK], now=0)
    store.put("b", [BLOCK], now=0)
    store.get("a", now=0)
    store.put("c", [BLOCK], now=0)
    assert store.get("b", now=0) is None and store.get("a", now=0) is not None


def test_bytes_bound() -> None:
    """The byte cap evicts old entries; an entry larger than the cap is not stored."""
    store = ThinkingStore(max_bytes=1000)
    big = {"type": "thinking", "thinking": "x" * 600, "signature": ""}
    store.put("a", [big], now=0)
    store.put("b", [big], now=0)
    assert store.get("a", now=0) is None and store.bytes_used <= 1000
    store.put("huge", [{"type": "thinking", "thinking": "x" * 5000}], now=0)
    assert store.get("huge", now=0) is None


def test_bad_config() -> None:
    """Non-positive bounds are refused."""
    with pytest.raises(ValueError):
        ThinkingStore(ttl=0)


def test_blocks_by_tool_id() -> None:
    """Each tool_use gets the thinking blocks since the previous tool_use."""
    red = {"type": "redacted_thinking", "data": "zz"}
    content = [
        BLOCK,
        {"type": "text", "text": "x"},
        {"type": "tool_use", "id": "a"},
        {"type": "tool_use", "id": "b"},
        red,
        {"type": "tool_use", "id": "c"},
    ]
    assert blocks_by_tool_id(content) == [("a", [BLOCK]), ("c", [red])]
