"""Server-side memory of thinking blocks across OpenAI tool loops (spec §1.7).

Claude wants an assistant tool_use turn sent back with the thinking blocks that preceded each
tool_use, unmodified; OpenAI clients drop them.  ``ThinkingStore`` keeps those blocks keyed by
tool-call id, bounded in entries and bytes and expiring after a TTL.  It never reads a clock:
every call takes ``now`` (seconds, any monotonic origin).  Not thread-safe by itself; the server
runs it on one event loop.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = ["ThinkingStore", "blocks_by_tool_id"]

Block = dict[str, Any]


@dataclass(frozen=True, slots=True)
class _Entry:
    blocks: tuple[Block, ...]
    expires: float
    size: int


def _size(blocks: Iterable[Block]) -> int:
    total = 64
    for b in blocks:
        for value in b.values():
            if isinstance(value, str):
                total += len(value)
    return total


class ThinkingStore:
    """Bounded LRU of ``tool_call_id -> thinking blocks`` with a TTL.

    Args:
        max_entries: most tool-call ids kept (oldest evicted first).
        max_bytes: approximate cap on the stored text (thinking, signatures, redacted data).
        ttl: seconds an entry stays usable after it was stored (spec: about an hour).
    """

    def __init__(self, *, max_entries: int = 10_000, max_bytes: int = 64 * 1024 * 1024,
                 ttl: float = 3600.0) -> None:
        if max_entries < 1 or max_bytes < 1 or ttl <= 0:
            raise ValueError("max_entries, max_bytes and ttl must be positive")
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self.ttl = ttl
        self._entries: OrderedDict[str, _Entry] = OrderedDict()
        self._bytes = 0

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def bytes_used(self) -> int:
        """Approximate bytes held."""
        return self._bytes

    def put(self, tool_call_id: str, blocks: Sequence[Block], *, now: float) -> None:
        """Remember the thinking blocks that preceded the tool_use ``tool_call_id``.

        Args:
            tool_call_id: the id the client sees (and will send back).
            blocks: ordered ``thinking``/``redacted_thinking`` blocks, stored as copies.
            now: the current time in seconds.
        """
        if not blocks:
            return
        entry = _Entry(tuple(dict(b) for b in blocks), now + self.ttl, _size(blocks))
        if entry.size > self.max_bytes:
            return
        self._drop(tool_call_id)
        self._entries[tool_call_id] = entry
        self._bytes += entry.size
        self._evict(now)

    def get(self, tool_call_id: str, *, now: float) -> list[Block] | None:
        """The blocks stored for ``tool_call_id`` (copies), or ``None`` when unknown or expired."""
        entry = self._entries.get(tool_call_id)
        if entry is None:
            return None
        if entry.expires <= now:
            self._drop(tool_call_id)
            return None
        self._entries.move_to_end(tool_call_id)
        return [dict(b) for b in entry.blocks]

    def _drop(self, key: str) -> None:
        old = self._entries.pop(key, None)
        if old is not None:
            self._bytes -= old.size

    def _evict(self, now: float) -> None:
        while self._entries and (len(self._entries) > self.max_entries or self._bytes > self.max_bytes):
            key = next(iter(self._entries))
            self._drop(key)
        # expired entries at the cold end go too (amortised O(1) per put)
        while self._entries:
            key, entry = next(iter(self._entries.items()))
            if entry.expires > now:
                break
            self._drop(key)


def blocks_by_tool_id(content: Sequence[Block]) -> list[tuple[str, list[Block]]]:
    """Pair each client ``tool_use`` block with the thinking blocks since the previous tool_use.

    Args:
        content: an Anthropic message's content blocks in order.
    Returns:
        ``[(tool_use_id, [thinking blocks...]), ...]`` for tool_use blocks preceded by thinking.
    """
    pending: list[Block] = []
    out: list[tuple[str, list[Block]]] = []
    for block in content:
        kind = block.get("type")
        if kind in ("thinking", "redacted_thinking"):
            pending.append(block)
        elif kind == "tool_use" and isinstance(block.get("id"), str):
            if pending:
                out.append((block["id"], pending))
            pending = []
    return out
