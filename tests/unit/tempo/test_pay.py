"""Client orchestration without a chain: mode choice, chain pin, and the error for each outcome
of a hash-mode broadcast (a stub RPC stands in for the node; the devnet tests use the real one)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from mpp_claude.errors import (
    MalformedChallenge,
    PaymentDeclined,
    PaymentFailed,
    PaymentOutcomeUnknown,
    ReceiptTimeout,
    RpcError,
)
from mpp_claude.tempo import tip20
from mpp_claude.tempo import tx as txmod
from mpp_claude.tempo.pay import AsyncChargePayer, ChargePayer
from mpp_claude.tempo.proof import verify_proof
from mpp_claude.tempo.signer import LocalSigner
from mpp_claude.tempo.verify import ChargeContext

NOW = 1_900_000_000
REQ: dict[str, Any] = {"amount": "5000", "currency": tip20.PATH_USD, "recipient": "0x" + "aa" * 20,
                       "methodDetails": {"chainId": 31337}}
PAYER = LocalSigner("0x" + "11" * 32)


class StubRpc:
    def __init__(self, *, chain: int = 31337, status: str = "0x1", send_error: RpcError | None = None,
                 timeout: bool = False) -> None:
        self.chain, self.status, self.send_error, self.timeout = chain, status, send_error, timeout
        self.sent: list[bytes] = []

    def chain_id(self) -> int:
        return self.chain

    def base_fee(self) -> int:
        return 10**10

    def send_raw(self, raw: bytes) -> str:
        if self.send_error:
            raise self.send_error
        self.sent.append(raw)
        return txmod.tx_hash(raw)

    def wait_for_receipt(self, tx_hash: str, *, timeout: float) -> dict[str, Any]:
        if self.timeout:
            raise ReceiptTimeout(tx_hash, timeout)
        return {"transactionHash": tx_hash, "status": self.status, "logs": []}


class AsyncStubRpc:
    def __init__(self, sync: StubRpc) -> None:
        self.s = sync

    async def chain_id(self) -> int:
        return self.s.chain_id()

    async def base_fee(self) -> int:
        return self.s.base_fee()

    async def send_raw(self, raw: bytes) -> str:
        return self.s.send_raw(raw)

    async def wait_for_receipt(self, tx_hash: str, *, timeout: float) -> dict[str, Any]:
        return self.s.wait_for_receipt(tx_hash, timeout=timeout)


def _payer(rpc: StubRpc) -> ChargePayer:
    return ChargePayer(rpc, PAYER, clock=lambda: float(NOW))  # type: ignore[arg-type]


def _cred(rpc: StubRpc, req: dict[str, Any] = REQ, **kw: Any) -> Any:
    return _payer(rpc).credential(req, challenge_id="ch", realm="r", expires=NOW + 300, **kw)


def test_transaction_mode_does_not_broadcast() -> None:
    """Pull: a signed 0x76 in the payload, nothing sent; max fee is twice the base fee."""
    rpc = StubRpc()
    cred = _cred(rpc)
    assert cred.payload["type"] == "transaction" and rpc.sent == []
    tx = txmod.decode(bytes.fromhex(cred.payload["signature"][2:])).tx
    assert tx.max_fee_per_gas == 2 * 10**10 and tx.valid_before == NOW + 25
    assert cred.tx_hash == txmod.tx_hash(bytes.fromhex(cred.payload["signature"][2:]))


def test_hash_mode_outcomes() -> None:
    """Push: mined -> hash payload; refused or reverted -> PaymentFailed; no receipt -> outcome unknown."""
    rpc = StubRpc()
    cred = _cred(rpc, mode="hash")
    assert cred.payload == {"type": "hash", "hash": cred.tx_hash} and len(rpc.sent) == 1
    assert _cred(StubRpc(), {**REQ, "methodDetails": {"chainId": 31337, "supportedModes": ["push"]}}
                 ).payload["type"] == "hash"
    with pytest.raises(PaymentFailed, match="refused the payment: nonce too low"):
        _cred(StubRpc(send_error=RpcError("eth_sendRawTransaction", -32000, "nonce too low")), mode="hash")
    with pytest.raises(PaymentFailed, match="reverted"):
        _cred(StubRpc(status="0x0"), mode="hash")
    with pytest.raises(PaymentOutcomeUnknown, match="not mined"):
        _cred(StubRpc(timeout=True), mode="hash")


def test_declined_before_signing() -> None:
    """Other chain, a refused mode, an expired challenge or a malformed request: nothing is signed."""
    with pytest.raises(PaymentDeclined, match="chain 31337, the wallet's RPC serves 1"):
        _cred(StubRpc(chain=1))
    sponsored = {**REQ, "methodDetails": {"chainId": 31337, "feePayer": True}}
    with pytest.raises(PaymentDeclined, match="does not accept hash"):
        _cred(StubRpc(), sponsored, mode="hash")
    push_only = {**REQ, "methodDetails": {"chainId": 31337, "supportedModes": ["push"]}}
    with pytest.raises(PaymentDeclined, match="does not accept transaction"):
        _cred(StubRpc(), push_only, mode="transaction")
    with pytest.raises(PaymentDeclined, match="expired"):
        _payer(StubRpc()).credential(REQ, challenge_id="ch", realm="r", expires=NOW - 1)
    with pytest.raises(MalformedChallenge):
        _cred(StubRpc(), {**REQ, "amount": "ten"})


def test_zero_amount_gives_a_verifiable_proof() -> None:
    """A zero-amount charge is answered with a proof that the server-side check accepts."""
    zero = {**REQ, "amount": "0"}
    cred = _cred(StubRpc(chain=1), zero)
    assert cred.payload["type"] == "proof" and cred.tx_hash is None
    assert verify_proof(cred.payload["signature"], cred.source,
                        ChargeContext.from_values("ch", "r", zero)) == PAYER.address
    with pytest.raises(PaymentDeclined, match="expired"):
        _payer(StubRpc()).credential(zero, challenge_id="ch", realm="r", expires=NOW)


def test_async_twin() -> None:
    """The async payer builds the same transaction credential and pushes in hash mode."""
    async def run() -> None:
        sync = StubRpc()
        payer = AsyncChargePayer(AsyncStubRpc(sync), PAYER, clock=lambda: float(NOW))  # type: ignore[arg-type]
        pulled = await payer.credential(REQ, challenge_id="ch", realm="r", expires=NOW + 300)
        assert pulled.payload == _cred(StubRpc()).payload
        pushed = await payer.credential(REQ, challenge_id="ch", realm="r", expires=NOW + 300, mode="hash")
        assert pushed.payload["type"] == "hash" and len(sync.sent) == 1
        with pytest.raises(PaymentOutcomeUnknown):
            await AsyncChargePayer(AsyncStubRpc(StubRpc(timeout=True)), PAYER,  # type: ignore[arg-type]
                                   clock=lambda: float(NOW)).credential(REQ, challenge_id="ch", realm="r",
                                                                        expires=NOW + 300, mode="hash")

    asyncio.run(run())
