"""Paying the payee: when a channel is due for settlement, with which voucher, and the payee's
``settle``/``close`` transactions.

Rules (pure): a channel is due when its spent-but-unsettled amount reaches
``settle_every_amount`` or its last settlement is ``settle_every_seconds`` old, or its payer
requested a forced close (and something is unsettled).  The voucher used is the highest
accepted one **not above** ``spent``, so the payee never draws authorised-but-unspent money
before the close (which captures exactly what the close voucher says, at least ``spent``).
"""

from __future__ import annotations

import asyncio

from ...tempo.rpc import AsyncRpcClient
from ...tempo.session.onchain import send_calls_async
from ...tempo.session.transactions import GAS_CLOSE, GAS_SETTLE, close_call, settle_call
from ...tempo.signer import Signer
from .book import ChannelRecord
from .settings import SessionSettings


def settle_due(record: ChannelRecord, settings: SessionSettings, now: float) -> bool:
    """Whether ``record`` should be settled now (see the module docstring); always, when its payer
    requested a forced close (``record.close_requested_at``) and something is unsettled."""
    unsettled = record.account.spent - record.account.settled
    if unsettled <= 0 or record.closed:
        return False
    if record.close_requested_at:
        return True
    by_amount = bool(settings.settle_every_amount) and unsettled >= settings.settle_every_amount
    age = now - record.last_settle_at
    by_time = bool(settings.settle_every_seconds) and age >= settings.settle_every_seconds
    return by_amount or by_time


def settle_voucher(record: ChannelRecord) -> tuple[int, bytes] | None:
    """The accepted voucher to settle with: the highest in ``(settled, spent]``, or ``None``."""
    usable = [(amount, sig) for amount, sig in record.vouchers
              if record.account.settled < amount <= record.account.spent]
    if not usable:
        return None
    amount, sig = usable[-1]
    return amount, bytes.fromhex(sig)


class Payee:
    """Sends the payee's escrow transactions (the escrow accepts them only from the payee), one at
    a time in this process: each takes the account's pending nonce, so two sent at once would
    collide.

    Raises (both methods):
        EscrowReverted: mined with status 0.
        ChainError: the node failed or no receipt came.
    """

    def __init__(self, rpc: AsyncRpcClient, signer: Signer, escrow: str, fee_token: str | None) -> None:
        self.rpc, self.signer, self.escrow, self.fee_token = rpc, signer, escrow, fee_token
        self._lock = asyncio.Lock()

    async def settle(self, channel_id: str, amount: int, signature: bytes) -> str:
        """``settle(channelId, amount, sig)``; returns the transaction hash."""
        async with self._lock:
            sent = await send_calls_async(self.rpc, self.signer,
                                          (settle_call(self.escrow, channel_id, amount, signature),),
                                          escrow=self.escrow, gas_limit=GAS_SETTLE, fee_token=self.fee_token)
        return sent.tx_hash

    async def close(self, channel_id: str, amount: int, signature: bytes) -> str:
        """``close(channelId, amount, sig)``: pays the payee ``amount`` in all, refunds the rest."""
        async with self._lock:
            sent = await send_calls_async(self.rpc, self.signer,
                                          (close_call(self.escrow, channel_id, amount, signature),),
                                          escrow=self.escrow, gas_limit=GAS_CLOSE, fee_token=self.fee_token)
        return sent.tx_hash
