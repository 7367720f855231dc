"""Thin chain orchestration for sessions: read channel state, send escrow transactions.

All network I/O goes through the ``RpcClient`` passed in; every decision is made by
the pure modules (``channel``, ``accounting``, ``transactions``).  Each function has an
``_async`` twin over ``AsyncRpcClient``; the request shaping and result checks are shared
module functions, so the twins differ only in ``await``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ...errors import ChainError, RpcError
from .._keccak import keccak
from ..escrow import decode_revert
from ..rpc import AsyncRpcClient, RpcClient, hex_int
from ..signer import Signer
from ..tx import Call
from .channel import (
    CLOSE_GRACE_PERIOD,
    ChannelState,
    EscrowEvent,
    decode_channel_state,
    encode_get_channel,
    escrow_events,
)
from .transactions import build_tx, sign_and_encode


class EscrowReverted(ChainError):
    """An escrow transaction or call reverted; ``error`` is the contract's custom error name
    (``"AmountNotIncreasing"``, ...) when known, ``tx_hash`` the mined transaction if any."""

    def __init__(self, message: str, *, error: str | None = None, tx_hash: str | None = None) -> None:
        super().__init__(message)
        self.error = error
        self.tx_hash = tx_hash


def _get_channel_params(escrow: str, channel_id: str | bytes, block: str) -> list[Any]:
    return [{"to": escrow, "data": "0x" + encode_get_channel(channel_id).hex()}, block]


def _channel_result(escrow: str, result: Any) -> ChannelState:
    try:
        return decode_channel_state(bytes.fromhex(str(result)[2:]))
    except ValueError as exc:
        raise ChainError(f"{escrow} did not answer getChannel like a v1 escrow: {exc}") from None


def read_channel(rpc: RpcClient, escrow: str, channel_id: str | bytes, block: str = "latest") -> ChannelState:
    """The escrow's ``getChannel(channelId)``; an all-zero state when the channel does not exist.

    Raises:
        RpcError / RpcUnavailable: the node failed.
        ChainError: the answer is not a ``getChannel`` result (wrong contract at ``escrow``).
    """
    return _channel_result(escrow, rpc.call("eth_call", _get_channel_params(escrow, channel_id, block)))


async def read_channel_async(rpc: AsyncRpcClient, escrow: str, channel_id: str | bytes,
                             block: str = "latest") -> ChannelState:
    """Async twin of ``read_channel``."""
    return _channel_result(escrow, await rpc.call("eth_call", _get_channel_params(escrow, channel_id, block)))


_SEL_GRACE = "0x" + keccak(b"CLOSE_GRACE_PERIOD()")[:4].hex()


def _grace_params(escrow: str) -> list[Any]:
    return [{"to": escrow, "data": _SEL_GRACE}, "latest"]


def _grace_result(result: Any) -> int:
    text = str(result)
    if len(text) != 66 or text[:2] != "0x":
        return CLOSE_GRACE_PERIOD
    value = int(text, 16)
    return value if 0 < value < 2**64 else CLOSE_GRACE_PERIOD


def read_grace_period(rpc: RpcClient, escrow: str) -> int:
    """The escrow's ``CLOSE_GRACE_PERIOD()`` in seconds (the v1 default, 15 min, when it has no
    such getter).

    Raises:
        RpcUnavailable: the node is unreachable.
    """
    try:
        return _grace_result(rpc.call("eth_call", _grace_params(escrow)))
    except RpcError:
        return CLOSE_GRACE_PERIOD


async def read_grace_period_async(rpc: AsyncRpcClient, escrow: str) -> int:
    """Async twin of ``read_grace_period``."""
    try:
        return _grace_result(await rpc.call("eth_call", _grace_params(escrow)))
    except RpcError:
        return CLOSE_GRACE_PERIOD


def _block_time(block: Any) -> int:
    if not isinstance(block, dict) or "timestamp" not in block:
        raise ChainError("the node returned no latest block")
    return hex_int(block["timestamp"])


def chain_time(rpc: RpcClient) -> int:
    """The latest block's timestamp: the time escrow rules are checked against (not the local clock).

    Raises:
        RpcError / RpcUnavailable / ChainError: the node failed or answered no block.
    """
    return _block_time(rpc.call("eth_getBlockByNumber", ["latest", False]))


async def chain_time_async(rpc: AsyncRpcClient) -> int:
    """Async twin of ``chain_time``."""
    return _block_time(await rpc.call("eth_getBlockByNumber", ["latest", False]))


def _revert_data(exc: RpcError) -> str | None:
    data = exc.data
    if isinstance(data, dict):
        data = data.get("data")
    return data if isinstance(data, str) else None


def _call_params(sender: str, call: Call) -> list[Any]:
    return [{"from": sender, "to": "0x" + call.to.hex(), "data": "0x" + call.data.hex()}, "latest"]


def _reverted(exc: RpcError) -> EscrowReverted:
    name = decode_revert(_revert_data(exc))
    return EscrowReverted(f"escrow call would revert: {name or exc.rpc_message}", error=name)


def simulate(rpc: RpcClient, sender: str, call: Call) -> None:
    """``eth_call`` one escrow call as ``sender``; raise ``EscrowReverted`` with the custom error
    name when it would revert (the pre-flight check servers run before broadcasting).

    On an on-demand-mining devnet, mine a block first when the call depends on time.
    """
    try:
        rpc.call("eth_call", _call_params(sender, call))
    except RpcError as exc:
        raise _reverted(exc) from None


async def simulate_async(rpc: AsyncRpcClient, sender: str, call: Call) -> None:
    """Async twin of ``simulate``."""
    try:
        await rpc.call("eth_call", _call_params(sender, call))
    except RpcError as exc:
        raise _reverted(exc) from None


@dataclass(frozen=True, slots=True)
class Sent:
    """A mined escrow transaction: its hash, receipt, gas used and decoded escrow events."""

    tx_hash: str
    receipt: dict[str, Any]
    gas_used: int
    events: tuple[EscrowEvent, ...]


def _sent(escrow: str, tx_hash: str, receipt: dict[str, Any]) -> Sent:
    gas_used = hex_int(receipt.get("gasUsed", "0x0"))
    if hex_int(receipt.get("status", "0x0")) != 1:
        raise EscrowReverted(f"escrow transaction {tx_hash} reverted (gas used {gas_used})", tx_hash=tx_hash)
    return Sent(tx_hash, receipt, gas_used, tuple(escrow_events(receipt.get("logs") or [], escrow)))


def send_calls(rpc: RpcClient, signer: Signer, calls: tuple[Call, ...], *, escrow: str, gas_limit: int,
               fee_token: str | None = None, timeout: float = 10.0) -> Sent:
    """Build, sign and broadcast a ``0x76`` transaction with ``calls``; wait for its receipt.

    Args:
        escrow: whose events to decode from the receipt.
        gas_limit: see ``transactions.GAS_*``.
        fee_token: TIP-20 for the fee; ``None`` uses the account default (else pathUSD).
    Raises:
        EscrowReverted: mined with status 0 (``error`` is ``None``: receipts carry no revert
            data; ``simulate`` first to learn the reason).
        ReceiptTimeout: no receipt in time (anvil drops invalid Tempo transactions silently).
        RpcError / RpcUnavailable: the node refused it or is unreachable.
    """
    tx = build_tx(calls, chain_id=rpc.chain_id(), nonce=rpc.nonce(signer.address), gas_limit=gas_limit,
                  max_fee_per_gas=2 * rpc.base_fee() + 1, fee_token=fee_token)
    tx_hash = rpc.send_raw(sign_and_encode(tx, signer))
    return _sent(escrow, tx_hash, rpc.wait_for_receipt(tx_hash, timeout=timeout))


async def send_calls_async(rpc: AsyncRpcClient, signer: Signer, calls: tuple[Call, ...], *, escrow: str,
                           gas_limit: int, fee_token: str | None = None, timeout: float = 10.0) -> Sent:
    """Async twin of ``send_calls``."""
    tx = build_tx(calls, chain_id=await rpc.chain_id(), nonce=await rpc.nonce(signer.address),
                  gas_limit=gas_limit, max_fee_per_gas=2 * await rpc.base_fee() + 1, fee_token=fee_token)
    tx_hash = await rpc.send_raw(sign_and_encode(tx, signer))
    return _sent(escrow, tx_hash, await rpc.wait_for_receipt(tx_hash, timeout=timeout))
