"""Turn an allowed Tempo charge challenge into a signed credential (sync and async twins).

The only client module that talks to the chain.  Per payment in the steady state it makes
no RPC call at all: the chain id and base fee are cached by ``tempo.rpc``, the token balance
here (refreshed when it may not cover the next payment, or after ``BALANCE_TTL`` seconds), and
the expiring nonce (TIP-1009) needs no nonce lookup.  pympp makes three RPCs per payment through
three new HTTP clients (pympp.md §6.3); that is most of its client-side latency.

Budget reservation and approval happen before these methods are called (``_engine.py``); what
happens here is: balance check -> build -> sign -> encode.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Any

from ..errors import InsufficientFunds, PaymentDeclined
from ..protocol.challenge import Challenge
from ..protocol.credential import Credential, format_credential
from ..tempo import tip20
from ..tempo.charge import SignedCharge, build_charge_transaction, sign_charge
from ..tempo.request import ChargeRequest
from ..tempo.rpc import AsyncRpcClient, RpcClient, hex_int
from .wallet import Wallet

BALANCE_TTL = 5.0
FEE_MULTIPLIER = 2  # max_fee_per_gas = 2 x latest base fee: room for a few blocks of fee rise


@dataclass(frozen=True, slots=True)
class Signed:
    """A credential ready to send, and what the ledger keeps about it (never the credential)."""

    header: str
    value: str
    tx_hash: str | None
    valid_before: int | None


def _credential(challenge: Challenge, signed: SignedCharge) -> Signed:
    cred = Credential(challenge=challenge, payload=signed.payload("transaction"), source=signed.source)
    return Signed(challenge.header or "Authorization", format_credential(cred), signed.tx_hash,
                  signed.tx.valid_before)


def _balance_call(token: str, owner: str) -> list[Any]:
    return [{"to": token, "data": "0x" + tip20.encode_balance_of(owner).hex()}, "latest"]


class _Balances:
    """Last known balance per token, debited locally after each payment (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._known: dict[str, tuple[int, float]] = {}

    def covers(self, token: str, amount: int, now: float) -> bool:
        with self._lock:
            got = self._known.get(token)
            return got is not None and now - got[1] < BALANCE_TTL and got[0] >= amount

    def set(self, token: str, value: int, now: float) -> None:
        with self._lock:
            self._known[token] = (value, now)

    def debit(self, token: str, amount: int) -> None:
        with self._lock:
            got = self._known.get(token)
            if got is not None:
                self._known[token] = (got[0] - amount, got[1])


def _check_funds(token: str, needed: int, available: int) -> None:
    if available < needed:
        raise InsufficientFunds(
            f"wallet holds {tip20.to_display(available)} of token {token}, needs {tip20.to_display(needed)} "
            "(fund it, e.g. `mpp-claude devnet --fund ADDRESS` on a devnet)",
            token=token, needed=needed, available=available)


def _build(challenge: Challenge, charge: ChargeRequest, wallet: Wallet, now: int, base_fee: int) -> Signed:
    if charge.amount == 0:
        raise PaymentDeclined("zero-amount (proof) challenges are not supported by this client yet")
    expires = challenge.expires_at
    tx = build_charge_transaction(charge, challenge_id=challenge.id, realm=challenge.realm, now=now,
                                  expires=None if expires is None else int(expires.timestamp()),
                                  max_fee_per_gas=max(base_fee, 1) * FEE_MULTIPLIER)
    return _credential(challenge, sign_charge(tx, wallet.signer))


class Payer:
    """Signs Tempo charge credentials for ``wallet`` using ``rpc`` (sync).

    Args:
        wallet: the paying wallet.
        rpc: a pooled JSON-RPC client for the chain the wallet pays on.
    """

    def __init__(self, wallet: Wallet, rpc: RpcClient) -> None:
        self.wallet = wallet
        self.rpc = rpc
        self._balances = _Balances()

    def chain_id(self) -> int:
        """The chain the RPC node serves (cached)."""
        return self.rpc.chain_id()

    def sign(self, challenge: Challenge, charge: ChargeRequest) -> Signed:
        """A credential paying ``charge``.

        Raises:
            InsufficientFunds: the wallet's balance of the currency is below the amount.
            PaymentDeclined: a zero-amount or already expired challenge.
            ChainError: the RPC node failed.
        """
        now = time.time()
        if not self._balances.covers(charge.currency, charge.amount, now):
            value = hex_int(self.rpc.call("eth_call", _balance_call(charge.currency, self.wallet.address)))
            self._balances.set(charge.currency, value, now)
            _check_funds(charge.currency, charge.amount, value)
        signed = _build(challenge, charge, self.wallet, int(now), self.rpc.base_fee())
        self._balances.debit(charge.currency, charge.amount)
        return signed

    def tx_status(self, tx_hash: str) -> bool | None:
        """``True`` mined and succeeded, ``False`` mined and reverted, ``None`` not mined."""
        rec = self.rpc.receipt(tx_hash)
        return None if rec is None else hex_int(rec.get("status", "0x0")) == 1


class AsyncPayer:
    """The async twin of :class:`Payer` over an ``AsyncRpcClient``."""

    def __init__(self, wallet: Wallet, rpc: AsyncRpcClient) -> None:
        self.wallet = wallet
        self.rpc = rpc
        self._balances = _Balances()

    async def chain_id(self) -> int:
        return await self.rpc.chain_id()

    async def sign(self, challenge: Challenge, charge: ChargeRequest) -> Signed:
        """See :meth:`Payer.sign`."""
        now = time.time()
        if not self._balances.covers(charge.currency, charge.amount, now):
            raw = await self.rpc.call("eth_call", _balance_call(charge.currency, self.wallet.address))
            value = hex_int(raw)
            self._balances.set(charge.currency, value, now)
            _check_funds(charge.currency, charge.amount, value)
        signed = _build(challenge, charge, self.wallet, int(now), await self.rpc.base_fee())
        self._balances.debit(charge.currency, charge.amount)
        return signed

    async def tx_status(self, tx_hash: str) -> bool | None:
        rec = await self.rpc.receipt(tx_hash)
        return None if rec is None else hex_int(rec.get("status", "0x0")) == 1
