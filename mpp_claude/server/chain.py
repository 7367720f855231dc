"""The server's view of the chain: the pooled RPC client, broadcasting in one round trip.

``tempo.settle.AsyncChargeVerifier`` broadcasts with ``send_raw`` and then polls
``wait_for_receipt``: two or more round trips per payment.  ``SyncBroadcastRpc`` wraps the
pooled ``AsyncRpcClient`` so that ``send_raw`` uses ``eth_sendRawTransactionSync`` (EIP-7966,
the receipt comes back with the broadcast, as mppx and pympp settle) and the following
``wait_for_receipt`` answers from that receipt without another call.

Safety: a failing sync call is not taken as a refusal blindly.  When it errors, the node is
asked whether it knows the transaction; if it does (accepted, maybe not mined yet within the
node's sync timeout) the receipt is polled as usual, otherwise the original error stands (the
transaction was refused and nothing moved).  A node without the method (``-32601``) switches
this client to plain ``eth_sendRawTransaction`` for good.  Everything else is delegated.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

from ..errors import RpcError
from ..tempo.rpc import AsyncRpcClient
from ..tempo.tx import tx_hash as hash_of

METHOD_NOT_FOUND = -32601
_MAX_PENDING = 1024


class SyncBroadcastRpc:
    """An ``AsyncRpcClient`` whose broadcasts return the receipt in the same round trip.

    Args:
        rpc: the pooled client to wrap (owned by the caller).
    """

    def __init__(self, rpc: AsyncRpcClient) -> None:
        self._rpc = rpc
        self._receipts: OrderedDict[str, dict[str, Any]] = OrderedDict()
        self._sync = True

    def __getattr__(self, name: str) -> Any:
        return getattr(self._rpc, name)

    async def send_raw(self, raw: bytes | str) -> str:
        """Broadcast ``raw``; keep the receipt for ``wait_for_receipt``.  Returns the tx hash.

        Raises:
            RpcError: the node refused the transaction (and does not know it).
        """
        data = bytes.fromhex(raw[2:]) if isinstance(raw, str) else raw
        tx_hash = hash_of(data)
        if not self._sync:
            return await self._rpc.send_raw(data)
        try:
            receipt = await self._rpc.send_raw_sync(data)
        except RpcError as exc:
            if exc.code == METHOD_NOT_FOUND:
                self._sync = False
                return await self._rpc.send_raw(data)
            if await self._rpc.transaction(tx_hash) is None:
                raise
            return tx_hash  # accepted; wait_for_receipt polls for it
        self._receipts[tx_hash] = receipt
        while len(self._receipts) > _MAX_PENDING:
            self._receipts.popitem(last=False)
        return tx_hash

    async def wait_for_receipt(self, tx_hash: str, *, timeout: float = 10.0, poll: float = 0.002
                               ) -> dict[str, Any]:
        """The receipt kept by ``send_raw``, else poll the node (``ReceiptTimeout`` after ``timeout``)."""
        receipt = self._receipts.pop(tx_hash.lower(), None)
        if receipt is not None:
            return receipt
        return await self._rpc.wait_for_receipt(tx_hash, timeout=timeout, poll=poll)
