"""Server orchestration without a chain: prepare_pull's checks, and the verifier's error mapping
(a stub RPC stands in for the node; the real chain is exercised in tests/integration)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from mpp_claude.errors import (
    ConfigError,
    CredentialReplayed,
    MalformedTransaction,
    ReceiptTimeout,
    RpcError,
    VerificationFailed,
)
from mpp_claude.tempo import charge, tip20
from mpp_claude.tempo import tx as txmod
from mpp_claude.tempo.memo import attribution_memo
from mpp_claude.tempo.proof import sign_proof
from mpp_claude.tempo.request import ChargeRequest
from mpp_claude.tempo.settle import AsyncChargeVerifier, ChargeVerifier, decode_hex_payload, prepare_pull
from mpp_claude.tempo.signer import LocalSigner
from mpp_claude.tempo.verify import ChargeContext

NOW = 1_900_000_000
PAYEE = "0x742d35cc6634c0532925a3b844bc9e7595f8fe00"
REQ: dict[str, Any] = {"amount": "5000", "currency": tip20.PATH_USD, "recipient": PAYEE,
                       "methodDetails": {"chainId": 31337}}
SPONSORED = {**REQ, "methodDetails": {"chainId": 31337, "feePayer": True}}
PAYER = LocalSigner("0x" + "11" * 32)
SPONSOR = LocalSigner("0x" + "22" * 32)


def _ctx(req: dict[str, Any] = REQ) -> ChargeContext:
    return ChargeContext.from_values("ch", "r", req, NOW + 300)


def _signature(req: dict[str, Any] = REQ, signer: LocalSigner = PAYER) -> str:
    tx = charge.build_charge_transaction(ChargeRequest.from_request(req), challenge_id="ch", realm="r",
                                         now=NOW, expires=NOW + 300, max_fee_per_gas=10**10)
    return charge.sign_charge(tx, signer).payload()["signature"]


def test_prepare_pull_self_paid_and_sponsored() -> None:
    """Self-paid bytes are settled as sent; sponsored ones come back co-signed with the fee token."""
    sig = _signature()
    prep = prepare_pull(sig, _ctx(), now=NOW)
    assert prep.raw.hex() == sig[2:] and prep.sender == PAYER.address and prep.fee_payer is None
    sprep = prepare_pull(_signature(SPONSORED), _ctx(SPONSORED), now=NOW, fee_payer=SPONSOR)
    final = txmod.decode(sprep.raw).tx
    assert sprep.fee_payer == SPONSOR.address and final.fee_token == txmod.address_bytes(tip20.PATH_USD)
    assert txmod.recover_fee_payer(final, PAYER.address) == SPONSOR.address


def test_prepare_pull_refusals() -> None:
    """Mode, sponsorship mismatches, a lying 0x78 envelope and bad hex are refused."""
    with pytest.raises(ConfigError, match="no fee payer signer"):
        prepare_pull(_signature(SPONSORED), _ctx(SPONSORED), now=NOW)
    with pytest.raises(VerificationFailed, match="not a fee-payer transaction"):
        prepare_pull(_signature(), _ctx(SPONSORED), now=NOW, fee_payer=SPONSOR)
    with pytest.raises(VerificationFailed, match="does not sponsor fees"):
        prepare_pull(_signature(SPONSORED), _ctx(), now=NOW)
    push_only = {**REQ, "methodDetails": {"chainId": 31337, "supportedModes": ["push"]}}
    with pytest.raises(VerificationFailed, match="does not accept transaction"):
        prepare_pull(_signature(), _ctx(push_only), now=NOW)
    env = txmod.decode(bytes.fromhex(_signature(SPONSORED)[2:]))
    lying = txmod.encode_fee_payer_envelope(env.tx, SPONSOR.address)
    with pytest.raises(VerificationFailed, match="envelope names sender"):
        prepare_pull("0x" + lying.hex(), _ctx(SPONSORED), now=NOW, fee_payer=SPONSOR)
    for bad, message in ((None, "0x-prefixed"), ("76ab", "0x-prefixed"), ("0xzz", "not valid hex"),
                         ("0x" + "00" * 40_000, "longer than")):
        with pytest.raises(MalformedTransaction, match=message):
            decode_hex_payload(bad, "signature")


class StubRpc:
    """Answers like a node would, from canned values (no network)."""

    def __init__(self, *, chain: int = 31337, receipt: dict[str, Any] | None = None,
                 tx: dict[str, Any] | None = None, send_error: RpcError | None = None,
                 wait_error: Exception | None = None) -> None:
        self._chain, self._receipt, self._tx = chain, receipt, tx
        self._send_error, self._wait_error = send_error, wait_error
        self.sent: list[bytes] = []

    def chain_id(self) -> int:
        return self._chain

    def send_raw(self, raw: bytes) -> str:
        if self._send_error:
            raise self._send_error
        self.sent.append(raw)
        return txmod.tx_hash(raw)

    def receipt(self, tx_hash: str) -> dict[str, Any] | None:
        return self._receipt

    def transaction(self, tx_hash: str) -> dict[str, Any] | None:
        return self._tx

    def wait_for_receipt(self, tx_hash: str, *, timeout: float) -> dict[str, Any]:
        if self._wait_error:
            raise self._wait_error
        assert self._receipt is not None
        return self._receipt


class AsyncStubRpc:
    def __init__(self, sync: StubRpc) -> None:
        self.s = sync

    async def chain_id(self) -> int:
        return self.s.chain_id()

    async def send_raw(self, raw: bytes) -> str:
        return self.s.send_raw(raw)

    async def receipt(self, tx_hash: str) -> dict[str, Any] | None:
        return self.s.receipt(tx_hash)

    async def transaction(self, tx_hash: str) -> dict[str, Any] | None:
        return self.s.transaction(tx_hash)

    async def wait_for_receipt(self, tx_hash: str, *, timeout: float) -> dict[str, Any]:
        return self.s.wait_for_receipt(tx_hash, timeout=timeout)


def _verifier(rpc: StubRpc) -> ChargeVerifier:
    return ChargeVerifier(rpc, clock=lambda: float(NOW))  # type: ignore[arg-type]


def _always(key: str) -> bool:
    return True


def test_verifier_error_mapping() -> None:
    """Wrong chain is a server misconfiguration; unknown payload types, refused or replayed
    broadcasts, and unknown or pending hashes are clean verification failures."""
    payload = {"type": "transaction", "signature": _signature()}
    with pytest.raises(ConfigError, match="serves chain 1"):
        _verifier(StubRpc(chain=1)).verify(payload, _ctx(), claim=_always)
    with pytest.raises(VerificationFailed, match=r"payload\.type"):
        _verifier(StubRpc()).verify({"type": "wire"}, _ctx(), claim=_always)
    rpc = StubRpc(send_error=RpcError("eth_sendRawTransaction", -32000, "insufficient fee token balance"))
    with pytest.raises(VerificationFailed, match="chain refused the transaction: insufficient"):
        _verifier(rpc).verify(payload, _ctx(), claim=_always)
    rpc = StubRpc()
    with pytest.raises(CredentialReplayed, match="already used"):
        _verifier(rpc).verify(payload, _ctx(), claim=lambda key: False)
    assert rpc.sent == []
    hash_payload = {"type": "hash", "hash": "0x" + "ab" * 32}
    source = charge.did_pkh(31337, PAYER.address)
    with pytest.raises(VerificationFailed, match="does not exist"):
        _verifier(StubRpc()).verify(hash_payload, _ctx(), claim=_always, source=source)
    pending = StubRpc(tx={"hash": "0x"}, wait_error=ReceiptTimeout("0xab", 5))
    with pytest.raises(VerificationFailed, match="still pending"):
        _verifier(pending).verify(hash_payload, _ctx(), claim=_always, source=source)
    with pytest.raises(VerificationFailed, match="source must be"):
        _verifier(StubRpc()).verify(hash_payload, _ctx(), claim=_always)
    with pytest.raises(VerificationFailed, match=r"payload\.hash"):
        _verifier(StubRpc()).verify({"type": "hash", "hash": "0x12"}, _ctx(), claim=_always, source=source)
    with pytest.raises(VerificationFailed, match="does not accept hash"):
        _verifier(StubRpc()).verify(hash_payload, _ctx(SPONSORED), claim=_always, source=source)


def test_receipt_timeout_after_broadcast_propagates() -> None:
    """A broadcast transaction without a receipt is ReceiptTimeout (outcome unknown), not a refusal."""
    rpc = StubRpc(wait_error=ReceiptTimeout("0x", 10))
    with pytest.raises(ReceiptTimeout):
        _verifier(rpc).verify({"type": "transaction", "signature": _signature()}, _ctx(), claim=_always)
    assert len(rpc.sent) == 1


def test_proof_through_the_verifier() -> None:
    """Zero-amount proofs settle with the challenge id as reference and need no chain."""
    zero = {**REQ, "amount": "0"}
    payload = sign_proof(PAYER, chain_id=31337, challenge_id="ch", realm="r")
    settled = _verifier(StubRpc(chain=1)).verify(payload, _ctx(zero), claim=_always,
                                                 source=charge.did_pkh(31337, PAYER.address))
    assert (settled.reference, settled.amount, settled.tx_hash) == ("ch", 0, None)
    assert settled.payer == PAYER.address


def test_async_verifier_accepts_sync_and_async_claims() -> None:
    """The async twin awaits async claims and calls sync ones; a refused claim is a replay."""
    async def refuse(key: str) -> bool:
        return False

    async def run() -> None:
        rpc = AsyncStubRpc(StubRpc())
        verifier = AsyncChargeVerifier(rpc, clock=lambda: float(NOW))  # type: ignore[arg-type]
        payload = {"type": "transaction", "signature": _signature()}
        with pytest.raises(CredentialReplayed):
            await verifier.verify(payload, _ctx(), claim=refuse)
        with pytest.raises(CredentialReplayed):
            await verifier.verify(payload, _ctx(), claim=lambda key: False)
        assert rpc.s.sent == []

    asyncio.run(run())


def _paying_receipt(raw_hex: str, *, sender: str, chain_from: str | None) -> dict[str, Any]:
    """A receipt for ``raw_hex`` whose transferWithMemo log comes from ``sender``."""
    word = "0x" + "00" * 12
    memo = attribution_memo("ch", "r")
    log = {"address": tip20.PATH_USD, "data": "0x" + (5000).to_bytes(32, "big").hex(),
           "topics": [tip20.TOPIC_TRANSFER_WITH_MEMO, word + sender[2:], word + PAYEE[2:], "0x" + memo.hex()]}
    receipt: dict[str, Any] = {"transactionHash": txmod.tx_hash(bytes.fromhex(raw_hex[2:])), "status": "0x1",
                               "blockNumber": "0x5", "logs": [log]}
    if chain_from is not None:
        receipt["from"] = chain_from
    return receipt


def test_payer_is_the_sender_the_chain_recovered() -> None:
    """A self-paid pull is not recovered locally: the receipt's ``from`` is the payer, and it must
    match the transfer log; a node without ``from`` makes the verifier recover the signature."""
    sig = _signature()
    payload = {"type": "transaction", "signature": sig}
    assert prepare_pull(sig, _ctx(), now=NOW).known_sender is None  # nothing recovered yet
    upper = PAYER.address.upper().replace("0X", "0x")
    settled = _verifier(StubRpc(receipt=_paying_receipt(sig, sender=PAYER.address, chain_from=upper))).verify(
        payload, _ctx(), claim=_always)
    assert settled.payer == PAYER.address
    settled = _verifier(StubRpc(receipt=_paying_receipt(sig, sender=PAYER.address, chain_from=None))).verify(
        payload, _ctx(), claim=_always)
    assert settled.payer == PAYER.address
    other = "0x" + "77" * 20
    with pytest.raises(VerificationFailed, match="the transaction's sender is"):
        _verifier(StubRpc(receipt=_paying_receipt(sig, sender=PAYER.address, chain_from=other))).verify(
            payload, _ctx(), claim=_always)
    with pytest.raises(VerificationFailed, match="the transaction's sender is"):
        _verifier(StubRpc(receipt=_paying_receipt(sig, sender=other, chain_from=None))).verify(
            payload, _ctx(), claim=_always)


def test_prepare_pull_reuses_a_decoded_envelope() -> None:
    """A caller's decoded envelope and recovered sender give the same bytes and hash as decoding
    afresh; the sender is kept; the checks still run on what was passed."""
    for req, sponsor in ((REQ, None), (SPONSORED, SPONSOR)):
        sig = _signature(req)
        decoded = txmod.decode(decode_hex_payload(sig, "signature"))
        sender = txmod.recover_sender(decoded.tx)
        fresh = prepare_pull(sig, _ctx(req), now=NOW, fee_payer=sponsor)
        reused = prepare_pull(sig, _ctx(req), now=NOW, fee_payer=sponsor, decoded=decoded, sender=sender)
        assert (reused.raw, reused.tx_hash, reused.known_sender) == (fresh.raw, fresh.tx_hash, PAYER.address)
    with pytest.raises(VerificationFailed, match="does not sponsor fees"):
        sponsored = txmod.decode(bytes.fromhex(_signature(SPONSORED)[2:]))
        prepare_pull(_signature(), _ctx(), now=NOW, decoded=sponsored, sender=PAYER.address)


def test_prepare_pull_checks_a_claimed_sender_where_it_recovers_one() -> None:
    """A sponsored pull recovers its sender to co-sign: a claim naming someone else is refused
    there (before any claim or broadcast), the right claim passes.  A self-paid pull recovers
    nothing, so its claim is left to the caller (compared with the chain's sender)."""
    liar = "0x" + "77" * 20
    sponsored = _signature(SPONSORED)
    with pytest.raises(VerificationFailed, match=f"source names {liar}, but the transaction is signed by"):
        prepare_pull(sponsored, _ctx(SPONSORED), now=NOW, fee_payer=SPONSOR, claimed_sender=liar)
    prep = prepare_pull(sponsored, _ctx(SPONSORED), now=NOW, fee_payer=SPONSOR, claimed_sender=PAYER.address)
    assert prep.known_sender == PAYER.address
    self_paid = prepare_pull(_signature(), _ctx(), now=NOW, claimed_sender=liar)
    assert self_paid.known_sender is None  # not recovered, not compared


def test_verifier_refuses_a_sponsored_lying_claim_before_the_claim_and_broadcast() -> None:
    """Through both verifiers: the mismatch is refused before ``claim`` and ``send_raw``."""
    payload = {"type": "transaction", "signature": _signature(SPONSORED)}
    claims: list[str] = []

    def claim(key: str) -> bool:
        claims.append(key)
        return True

    rpc = StubRpc()
    sync = ChargeVerifier(rpc, fee_payer=SPONSOR, clock=lambda: float(NOW))  # type: ignore[arg-type]
    with pytest.raises(VerificationFailed, match="transaction is signed by"):
        sync.verify(payload, _ctx(SPONSORED), claim=claim, claimed_sender="0x" + "77" * 20)
    averifier = AsyncChargeVerifier(AsyncStubRpc(rpc), fee_payer=SPONSOR,  # type: ignore[arg-type]
                                    clock=lambda: float(NOW))
    with pytest.raises(VerificationFailed, match="transaction is signed by"):
        asyncio.run(averifier.verify(payload, _ctx(SPONSORED), claim=claim, claimed_sender="0x" + "77" * 20))
    assert claims == [] and rpc.sent == []
