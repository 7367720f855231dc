"""SyncBroadcastRpc: one round trip per broadcast, and never a refusal for a transaction the node took."""

from __future__ import annotations

from typing import Any

import anyio
import pytest

from mpp_claude.errors import RpcError
from mpp_claude.server.chain import SyncBroadcastRpc
from mpp_claude.tempo.tx import tx_hash

RAW = bytes.fromhex("76c0ffee")
HASH = tx_hash(RAW)


class FakeRpc:
    """Records calls; ``sync`` is what eth_sendRawTransactionSync does, ``known`` the pool lookup."""

    def __init__(self, sync: Any, known: bool = False) -> None:
        self.sync, self.known = sync, known
        self.calls: list[str] = []

    async def send_raw_sync(self, raw: bytes) -> dict[str, Any]:
        self.calls.append("sync")
        if isinstance(self.sync, Exception):
            raise self.sync
        return dict(self.sync)

    async def send_raw(self, raw: bytes) -> str:
        self.calls.append("send")
        return HASH

    async def transaction(self, h: str) -> dict[str, Any] | None:
        self.calls.append("lookup")
        return {"hash": h} if self.known else None

    async def wait_for_receipt(self, h: str, *, timeout: float = 10.0, poll: float = 0.002) -> dict[str, Any]:
        self.calls.append("poll")
        return {"transactionHash": h, "polled": True}

    async def chain_id(self) -> int:
        return 31337


def run(rpc: FakeRpc) -> tuple[str, dict[str, Any]]:
    wrapped = SyncBroadcastRpc(rpc)  # type: ignore[arg-type]

    async def go() -> tuple[str, dict[str, Any]]:
        h = await wrapped.send_raw(RAW)
        return h, await wrapped.wait_for_receipt(h)

    return anyio.run(go)


def test_receipt_comes_with_the_broadcast() -> None:
    """The sync broadcast's receipt answers wait_for_receipt without another call."""
    rpc = FakeRpc({"transactionHash": HASH, "status": "0x1"})
    h, receipt = run(rpc)
    assert h == HASH and receipt["status"] == "0x1"
    assert rpc.calls == ["sync"]


def test_refused_transaction_stays_refused() -> None:
    """A sync error for a transaction the node does not know is re-raised (nothing moved)."""
    rpc = FakeRpc(RpcError("eth_sendRawTransactionSync", -32000, "insufficient funds"))
    with pytest.raises(RpcError, match="insufficient funds"):
        run(rpc)
    assert rpc.calls == ["sync", "lookup"]


def test_accepted_but_slow_transaction_is_polled() -> None:
    """A sync timeout for a transaction the node knows is not a refusal: the receipt is polled."""
    rpc = FakeRpc(RpcError("eth_sendRawTransactionSync", -32000, "timed out"), known=True)
    h, receipt = run(rpc)
    assert h == HASH and receipt["polled"] is True
    assert rpc.calls == ["sync", "lookup", "poll"]


def test_node_without_the_method_falls_back_for_good() -> None:
    """-32601 switches to eth_sendRawTransaction + polling, and later broadcasts skip the sync try."""
    rpc = FakeRpc(RpcError("eth_sendRawTransactionSync", -32601, "method not found"))
    run(rpc)
    wrapped = SyncBroadcastRpc(rpc)  # type: ignore[arg-type]

    async def twice() -> None:
        await wrapped.send_raw(RAW)
        await wrapped.send_raw(RAW)

    rpc.calls.clear()
    anyio.run(twice)
    assert rpc.calls == ["sync", "send", "send"]


def test_everything_else_is_delegated() -> None:
    """Other attributes reach the wrapped client."""
    wrapped = SyncBroadcastRpc(FakeRpc({}))  # type: ignore[arg-type]
    assert anyio.run(wrapped.chain_id) == 31337
