"""Client side of a Tempo charge: fetch chain data, build, sign, (push: broadcast) (thin orchestrator).

``ChargePayer`` (sync) and ``AsyncChargePayer`` wrap the pure ``charge.py`` / ``proof.py``
with the few RPC calls a payment needs: the chain id (cached forever) and the base fee
(cached ~2 s) for ``transaction`` mode; plus the broadcast and a receipt wait with a
deadline for ``hash`` mode.  No nonce is fetched: payments use expiring nonces.

Money rules (budgets, policy, one payment per request) are the caller's (``client/``):
by the time a method here is called, the caller has decided to pay.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from ..errors import PaymentDeclined, PaymentFailed, PaymentOutcomeUnknown, ReceiptTimeout, RpcError
from .charge import SignedCharge, build_charge_transaction, did_pkh, sign_charge
from .proof import sign_proof
from .request import ChargeRequest
from .rpc import AsyncRpcClient, RpcClient
from .signer import Signer
from .verify import receipt_status_ok

Mode = Literal["transaction", "hash"]
FEE_MULTIPLIER = 2  # max_fee_per_gas = 2 x latest base fee: survives a few blocks of base-fee growth


@dataclass(frozen=True, slots=True)
class ChargeCredential:
    """What goes into a credential: ``payload`` and ``source``; plus what the payer learned.

    ``tx_hash`` is the payment's transaction hash when known (always in hash mode; in
    transaction mode when not sponsored), for the ledger and for outcome-unknown handling.
    """

    payload: dict[str, str]
    source: str
    tx_hash: str | None
    signed: SignedCharge | None = None
    receipt: dict[str, Any] | None = None


def _request(request: ChargeRequest | Mapping[str, Any]) -> ChargeRequest:
    return request if isinstance(request, ChargeRequest) else ChargeRequest.from_request(request)


def _choose_mode(req: ChargeRequest, mode: Mode | None) -> Mode:
    if mode is None:
        return "transaction" if req.allows("pull") else "hash"
    if mode == "hash" and not req.allows("push"):
        raise PaymentDeclined("the charge does not accept hash (push) credentials"
                              + (" (fees are sponsored)" if req.fee_payer else ""))
    if mode == "transaction" and not req.allows("pull"):
        raise PaymentDeclined("the charge does not accept transaction (pull) credentials")
    return mode


def _check_chain(req: ChargeRequest, chain_id: int) -> None:
    if req.chain_id != chain_id:
        raise PaymentDeclined(f"the challenge is for chain {req.chain_id}, "
                              f"the wallet's RPC serves {chain_id}")


def _mined(receipt: dict[str, Any], tx_hash: str, signed: SignedCharge) -> ChargeCredential:
    if not receipt_status_ok(receipt):
        raise PaymentFailed(f"payment transaction {tx_hash} reverted", tx_hash=tx_hash)
    return ChargeCredential(signed.payload("hash"), signed.source, tx_hash, signed, receipt)


def _refused(exc: RpcError, tx_hash: str) -> PaymentFailed:
    return PaymentFailed(f"the chain refused the payment: {exc.rpc_message}", tx_hash=tx_hash)


class _Base:
    def __init__(self, signer: Signer, *, fee_token: str | None = None, client_id: str | None = None,
                 gas_limit: int | None = None, receipt_timeout: float = 15.0,
                 clock: Callable[[], float] = time.time) -> None:
        self.signer = signer
        self.fee_token = fee_token
        self.client_id = client_id
        self.gas_limit = gas_limit
        self.receipt_timeout = receipt_timeout
        self.clock = clock

    def _sign(self, req: ChargeRequest, challenge_id: str, realm: str, expires: int | None,
              base_fee: int) -> SignedCharge:
        tx = build_charge_transaction(req, challenge_id=challenge_id, realm=realm, now=int(self.clock()),
                                      expires=expires, max_fee_per_gas=FEE_MULTIPLIER * base_fee,
                                      gas_limit=self.gas_limit, fee_token=self.fee_token,
                                      client_id=self.client_id)
        return sign_charge(tx, self.signer)

    def _proof(self, req: ChargeRequest, challenge_id: str, realm: str, expires: int | None
               ) -> ChargeCredential:
        if expires is not None and expires <= int(self.clock()):
            raise PaymentDeclined(f"challenge expired at {expires}; not signing a proof for it")
        payload = sign_proof(self.signer, chain_id=req.chain_id, challenge_id=challenge_id, realm=realm)
        return ChargeCredential(payload, did_pkh(req.chain_id, self.signer.address), None)


class ChargePayer(_Base):
    """Pays Tempo charges from one ``Signer`` through a synchronous ``RpcClient``.

    Args:
        rpc: pooled JSON-RPC client of the chain.
        signer: the payer's key.
        fee_token: USD TIP-20 paying fees of self-paid charges (default: the charge currency).
        client_id: optional identity hashed into the attribution memo.
        gas_limit: override ``charge.charge_gas_limit``.
        receipt_timeout: hash mode's deadline for the payment's receipt.
        clock: Unix time source.
    """

    def __init__(self, rpc: RpcClient, signer: Signer, **kwargs: Any) -> None:
        super().__init__(signer, **kwargs)
        self.rpc = rpc

    def credential(self, request: ChargeRequest | Mapping[str, Any], *, challenge_id: str, realm: str,
                   expires: int | None, mode: Mode | None = None) -> ChargeCredential:
        """Build the credential ``payload``/``source`` for a charge challenge.

        Zero amounts get a ``proof``; otherwise ``mode`` (default: ``transaction`` when the
        charge accepts pull, else ``hash``).  In hash mode the payment is broadcast and mined
        before this returns.

        Raises:
            MalformedChallenge: the request is invalid.
            PaymentDeclined: expired challenge, other chain, mode not accepted.
            PaymentFailed: (hash) the chain refused the payment or it reverted; nothing moved.
            PaymentOutcomeUnknown: (hash) broadcast but no receipt in time; money may move.
            ChainError: the RPC failed before anything was broadcast.
        """
        req = _request(request)
        if req.amount == 0:
            return self._proof(req, challenge_id, realm, expires)
        chosen = _choose_mode(req, mode)
        _check_chain(req, self.rpc.chain_id())
        signed = self._sign(req, challenge_id, realm, expires, self.rpc.base_fee())
        if chosen == "transaction":
            return ChargeCredential(signed.payload(), signed.source, signed.tx_hash, signed)
        return self._push(signed)

    def _push(self, signed: SignedCharge) -> ChargeCredential:
        tx_hash = signed.tx_hash or ""
        try:
            self.rpc.send_raw(signed.raw)
        except RpcError as exc:
            raise _refused(exc, tx_hash) from None
        try:
            receipt = self.rpc.wait_for_receipt(tx_hash, timeout=self.receipt_timeout)
        except ReceiptTimeout as exc:
            raise PaymentOutcomeUnknown(f"payment {tx_hash} broadcast but not mined within "
                                        f"{self.receipt_timeout:.0f}s", tx_hash=tx_hash) from exc
        return _mined(receipt, tx_hash, signed)


class AsyncChargePayer(_Base):
    """Asynchronous twin of ``ChargePayer`` over an ``AsyncRpcClient``."""

    def __init__(self, rpc: AsyncRpcClient, signer: Signer, **kwargs: Any) -> None:
        super().__init__(signer, **kwargs)
        self.rpc = rpc

    async def credential(self, request: ChargeRequest | Mapping[str, Any], *, challenge_id: str,
                         realm: str, expires: int | None, mode: Mode | None = None) -> ChargeCredential:
        """See ``ChargePayer.credential``."""
        req = _request(request)
        if req.amount == 0:
            return self._proof(req, challenge_id, realm, expires)
        chosen = _choose_mode(req, mode)
        _check_chain(req, await self.rpc.chain_id())
        signed = self._sign(req, challenge_id, realm, expires, await self.rpc.base_fee())
        if chosen == "transaction":
            return ChargeCredential(signed.payload(), signed.source, signed.tx_hash, signed)
        tx_hash = signed.tx_hash or ""
        try:
            await self.rpc.send_raw(signed.raw)
        except RpcError as exc:
            raise _refused(exc, tx_hash) from None
        try:
            receipt = await self.rpc.wait_for_receipt(tx_hash, timeout=self.receipt_timeout)
        except ReceiptTimeout as exc:
            raise PaymentOutcomeUnknown(f"payment {tx_hash} broadcast but not mined within "
                                        f"{self.receipt_timeout:.0f}s", tx_hash=tx_hash) from exc
        return _mined(receipt, tx_hash, signed)
