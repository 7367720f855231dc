"""Turn an allowed Tempo charge challenge into a signed credential (sync and async twins).

The only client module that talks to the chain, through ``tempo.pay``'s ``ChargePayer``
(build, sign, and for push mode broadcast) plus a balance check.  Per payment in the steady
state it makes no RPC call at all: the chain id and base fee are cached by ``tempo.rpc``, the
token balance here (refreshed when it may not cover the next payment, or after
``BALANCE_TTL`` seconds), and the expiring nonce (TIP-1009) needs no nonce lookup.  pympp makes
three RPCs per payment through three new HTTP clients (pympp.md §6.3), most of its latency.

Budget reservation and approval happen before these methods are called (``_engine.py``).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Any

from ..errors import InsufficientFunds
from ..protocol.challenge import Challenge
from ..protocol.credential import format_payment
from ..tempo import tip20
from ..tempo.pay import AsyncChargePayer, ChargeCredential, ChargePayer, Mode
from ..tempo.request import ChargeRequest
from ..tempo.rpc import AsyncRpcClient, RpcClient, hex_int
from .wallet import Wallet

BALANCE_TTL = 5.0


@dataclass(frozen=True, slots=True)
class Signed:
    """A credential ready to send, and what the ledger keeps about it (never the credential).

    ``balance``: the wallet's balance of the paid token after this payment as the payer tracks it
    (``None``: not known), for the low-balance observer (``alerts.py``).
    """

    header: str
    value: str
    tx_hash: str | None
    valid_before: int | None
    balance: int | None = None


def _signed(challenge: Challenge, cc: ChargeCredential, balance: int | None) -> Signed:
    valid_before = cc.signed.tx.valid_before if cc.signed is not None else None
    return Signed(challenge.header or "Authorization", format_payment(challenge, cc.payload, cc.source),
                  cc.tx_hash, valid_before, balance)


def _expires(challenge: Challenge) -> int | None:
    at = challenge.expires_at
    return None if at is None else int(at.timestamp())


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

    def debit(self, token: str, amount: int) -> int | None:
        """Take a signed payment off the known balance; returns the balance left (``None``: unknown)."""
        with self._lock:
            got = self._known.get(token)
            if got is None:
                return None
            left = got[0] - amount
            self._known[token] = (left, got[1])
            return left


def _check_funds(token: str, needed: int, available: int) -> None:
    if available < needed:
        raise InsufficientFunds(
            f"wallet holds {tip20.to_display(available)} of token {token}, needs {tip20.to_display(needed)} "
            "(fund it, e.g. `mpp-claude devnet --fund ADDRESS` on a devnet)",
            token=token, needed=needed, available=available)


class Payer:
    """Signs Tempo charge credentials for ``wallet`` using ``rpc`` (sync).

    Args:
        wallet: the paying wallet.
        rpc: a pooled JSON-RPC client for the chain the wallet pays on.
        mode: ``"transaction"`` (pull: the server broadcasts), ``"hash"`` (push: we broadcast and
            wait for the receipt), or ``None``: pull when the challenge allows it.
        **kwargs: ``tempo.pay.ChargePayer`` options (``fee_token``, ``client_id``, ``gas_limit``).
    """

    def __init__(self, wallet: Wallet, rpc: RpcClient, *, mode: Mode | None = None, **kwargs: Any) -> None:
        self.wallet = wallet
        self.rpc = rpc
        self.mode = mode
        self._charge = ChargePayer(rpc, wallet.signer, **kwargs)
        self._balances = _Balances()

    def chain_id(self) -> int:
        """The chain the RPC node serves (cached)."""
        return self.rpc.chain_id()

    def sign(self, challenge: Challenge, charge: ChargeRequest) -> Signed:
        """A credential paying ``charge``.

        Raises:
            InsufficientFunds: the wallet's balance of the currency is below the amount.
            PaymentDeclined: an expired challenge, another chain, an unaccepted mode.
            PaymentFailed / PaymentOutcomeUnknown: push mode only (see ``tempo.pay``).
            ChainError: the RPC node failed.
        """
        now = time.time()
        if charge.amount and not self._balances.covers(charge.currency, charge.amount, now):
            value = hex_int(self.rpc.call("eth_call", _balance_call(charge.currency, self.wallet.address)))
            self._balances.set(charge.currency, value, now)
            _check_funds(charge.currency, charge.amount, value)
        cc = self._charge.credential(charge, challenge_id=challenge.id, realm=challenge.realm,
                                     expires=_expires(challenge), mode=self.mode)
        return _signed(challenge, cc, self._balances.debit(charge.currency, charge.amount))

    def tx_status(self, tx_hash: str) -> bool | None:
        """``True`` mined and succeeded, ``False`` mined and reverted, ``None`` not mined."""
        rec = self.rpc.receipt(tx_hash)
        return None if rec is None else hex_int(rec.get("status", "0x0")) == 1


class AsyncPayer:
    """The async twin of :class:`Payer` over an ``AsyncRpcClient``."""

    def __init__(self, wallet: Wallet, rpc: AsyncRpcClient, *, mode: Mode | None = None,
                 **kwargs: Any) -> None:
        self.wallet = wallet
        self.rpc = rpc
        self.mode = mode
        self._charge = AsyncChargePayer(rpc, wallet.signer, **kwargs)
        self._balances = _Balances()

    async def chain_id(self) -> int:
        return await self.rpc.chain_id()

    async def sign(self, challenge: Challenge, charge: ChargeRequest) -> Signed:
        """See :meth:`Payer.sign`."""
        now = time.time()
        if charge.amount and not self._balances.covers(charge.currency, charge.amount, now):
            raw = await self.rpc.call("eth_call", _balance_call(charge.currency, self.wallet.address))
            value = hex_int(raw)
            self._balances.set(charge.currency, value, now)
            _check_funds(charge.currency, charge.amount, value)
        cc = await self._charge.credential(charge, challenge_id=challenge.id, realm=challenge.realm,
                                           expires=_expires(challenge), mode=self.mode)
        return _signed(challenge, cc, self._balances.debit(charge.currency, charge.amount))

    async def tx_status(self, tx_hash: str) -> bool | None:
        rec = await self.rpc.receipt(tx_hash)
        return None if rec is None else hex_int(rec.get("status", "0x0")) == 1
