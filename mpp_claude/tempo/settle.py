"""Server side of a Tempo charge: verify a credential, settle it on chain (thin orchestrator).

mpp-protocol.md §3.6.  The pure steps live in ``verify.py`` (and ``prepare_pull`` here);
this module only orders them around the chain I/O of ``rpc.py``:

``transaction`` (pull):
    decode -> calls / limits (/ recover sender, = ``claimed_sender`` if given, sponsor
    policy + co-sign) checks -> ``claim(tx_hash)`` -> broadcast -> receipt with deadline
    -> log checks (the transfer's ``from`` is the sender the chain recovered).
    Nothing is broadcast when a check fails or the claim is refused.
``hash`` (push):
    shape -> mode allowed -> receipt (unknown hash = ``VerificationFailed``, never a
    server error) -> log checks -> payer == ``source`` -> ``claim(tx_hash)``;
    ``prove_hash`` (async) runs the same checks and claims nothing (an idempotent replay).

``claim`` is the server's replay store: it must atomically record the hash and return
``False`` when it was already recorded (then ``CredentialReplayed`` is raised).
``ChargeVerifier`` is synchronous, ``AsyncChargeVerifier`` its twin.
"""

from __future__ import annotations

import inspect
import re
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from ..errors import (
    ConfigError,
    CredentialReplayed,
    MalformedTransaction,
    ReceiptTimeout,
    RpcError,
    VerificationFailed,
)
from . import tx as txmod
from .proof import DEFAULT_PROOF_VERSIONS, verify_proof
from .rpc import AsyncRpcClient, RpcClient
from .signer import Signer
from .tip20 import PATH_USD
from .verify import (
    CHAIN_EXPIRING_WINDOW,
    ChargeContext,
    SponsorPolicy,
    check_claimed_sender,
    check_payment_calls,
    check_receipt,
    check_sponsor_policy,
    check_transaction_limits,
    source_address,
)

MAX_TX_BYTES = 32 * 1024
_HASH = re.compile(r"^0x[0-9a-fA-F]{64}$")

Claim = Callable[[str], bool]
AsyncClaim = Callable[[str], "bool | Awaitable[bool]"]


@dataclass(frozen=True, slots=True)
class SettledPayment:
    """A verified payment, what the server turns into a ``Payment-Receipt``.

    ``reference`` is the transaction hash, or the challenge id for a zero-amount proof
    (then ``tx_hash`` and ``block_number`` are ``None``).  ``fee_payer`` is the server's
    sponsor address when it paid the fee.
    """

    payer: str
    reference: str
    amount: int
    currency: str
    recipient: str
    tx_hash: str | None
    block_number: int | None
    fee_payer: str | None = None


@dataclass(frozen=True)
class PreparedPull:
    """A checked pull payment, ready to claim and broadcast: final bytes and their hash.

    ``sender`` is recovered from the signature on first use (~0.15 ms of secp256k1 work): the
    verifiers take the sender the chain recovered from the receipt instead, so a self-paid
    charge never recovers it locally (a sponsored one does, to co-sign, and there a sender the
    caller merely *claims* is compared before anything is claimed or broadcast).
    """

    raw: bytes
    tx_hash: str
    tx: txmod.TempoTransaction
    fee_payer: str | None
    known_sender: str | None = None

    @cached_property
    def sender(self) -> str:
        """The sender's lower-case address (``MalformedTransaction`` if it does not recover)."""
        return self.known_sender or txmod.recover_sender(self.tx)


def decode_hex_payload(value: Any, name: str, *, limit: int = MAX_TX_BYTES) -> bytes:
    """``0x``-hex from a credential payload -> bytes (``MalformedTransaction`` otherwise)."""
    if not isinstance(value, str) or value[:2] not in ("0x", "0X"):
        raise MalformedTransaction(f"payload.{name} must be a 0x-prefixed hex string")
    if len(value) > 2 + 2 * limit:
        raise MalformedTransaction(f"payload.{name} is longer than {limit} bytes")
    try:
        return bytes.fromhex(value[2:])
    except ValueError:
        raise MalformedTransaction(f"payload.{name} is not valid hex") from None


def prepare_pull(signature_hex: Any, ctx: ChargeContext, *, now: int, fee_payer: Signer | None = None,
                 fee_token: str = PATH_USD, policy: SponsorPolicy = SponsorPolicy(),
                 expiring_window: int = CHAIN_EXPIRING_WINDOW, decoded: txmod.Decoded | None = None,
                 sender: str | None = None, claimed_sender: str | None = None) -> PreparedPull:
    """All pure checks of a ``transaction`` credential, and the sponsor's co-signature (pure).

    Returns the exact bytes to broadcast and their hash (to claim *before* broadcasting).
    ``expiring_window`` is how far ahead the chain accepts an expiring nonce's
    ``valid_before`` (30 s up to T10, 300 s from T11).  A caller that already decoded
    ``signature_hex`` (``decoded``: ``tx.decode`` of its bytes) and recovered its sender
    (``sender``: ``tx.recover_sender`` of ``decoded.tx``) passes them, so neither is done twice;
    the checks below run on ``decoded`` all the same, and only it is broadcast.

    ``claimed_sender`` is an address the caller was told (the credential's ``source``) but has
    not verified.  Whenever the sender is recovered here (a sponsored charge, to co-sign; a
    fee-payer envelope) it must equal the claim, else the credential is refused: nothing is
    claimed or broadcast.  A self-paid pull is not recovered here: its caller compares the claim
    with ``SettledPayment.payer``, the sender the chain recovered.

    Raises:
        MalformedTransaction, VerificationFailed, PaymentInsufficient, PaymentExpired: a
            check failed (see ``verify.py``), or the recovered sender is not ``claimed_sender``
            (``VerificationFailed``); ``ConfigError``: a sponsored charge but no ``fee_payer``
            signer configured.
    """
    if not ctx.request.allows("pull"):
        raise VerificationFailed("this charge does not accept transaction (pull) credentials")
    if decoded is None:
        decoded = txmod.decode(decode_hex_payload(signature_hex, "signature"))
    tx = txmod.canonical_signature(decoded.tx)
    if sender is None and (decoded.declared_sender is not None or ctx.request.fee_payer):
        sender = txmod.recover_sender(tx)
    if decoded.declared_sender is not None and decoded.declared_sender != sender:
        raise VerificationFailed(f"fee-payer envelope names sender {decoded.declared_sender}, "
                                 f"the signature recovers {sender}")
    if claimed_sender is not None and sender is not None:
        check_claimed_sender(claimed_sender, sender)
    if ctx.request.fee_payer:
        assert sender is not None
        check_sponsor_policy(tx, policy, now=now)
        check_payment_calls(tx, ctx)
        check_transaction_limits(tx, ctx, now=now, max_gas=policy.max_gas, expiring_window=expiring_window)
        if fee_payer is None:
            raise ConfigError("the charge sponsors fees (feePayer: true) but no fee payer signer is set")
        tx = txmod.cosign(tx, fee_payer, fee_token=fee_token, sender=sender)
    else:
        if tx.sponsored:
            raise VerificationFailed("transaction expects a fee payer, but this charge does not sponsor fees")
        check_payment_calls(tx, ctx)
        check_transaction_limits(tx, ctx, now=now, max_gas=policy.max_gas, expiring_window=expiring_window)
    raw = txmod.encode(tx)
    return PreparedPull(raw, txmod.tx_hash(raw), tx, fee_payer.address if ctx.request.fee_payer
                        and fee_payer else None, sender)


def check_hash_payload(payload: Mapping[str, Any], ctx: ChargeContext) -> str:
    """Shape and mode checks of a ``hash`` credential; returns the lower-case hash."""
    if not ctx.request.allows("push"):
        raise VerificationFailed("this charge does not accept hash (push) credentials"
                                 + (" (fees are sponsored)" if ctx.request.fee_payer else ""))
    value = payload.get("hash")
    if not isinstance(value, str) or not _HASH.match(value):
        raise VerificationFailed("payload.hash must be a 0x-prefixed 32-byte hex transaction hash")
    return value.lower()


def _settled(ctx: ChargeContext, payer: str, tx_hash: str, block: int | None,
             fee_payer: str | None = None) -> SettledPayment:
    req = ctx.request
    return SettledPayment(payer, tx_hash, req.amount, req.currency, req.recipient, tx_hash, block, fee_payer)


def _chain_sender(receipt: Mapping[str, Any], prep: PreparedPull) -> str:
    """The sender: recovered already (sponsored), else the one the chain recovered (the receipt's
    ``from``), else the one ``prep`` recovers now."""
    if prep.known_sender is not None:
        return prep.known_sender
    sender = receipt.get("from")
    if isinstance(sender, str) and len(sender) == 42:
        return sender.lower()
    return prep.sender


def _check_payer(match_payer: str, expected: str, what: str) -> None:
    if match_payer != expected:
        raise VerificationFailed(f"the payment comes from {match_payer}, but {what} is {expected}")


def _refused(exc: RpcError) -> VerificationFailed:
    return VerificationFailed(f"the chain refused the transaction: {exc.rpc_message}")


class _Base:
    def __init__(self, *, fee_payer: Signer | None = None, fee_token: str = PATH_USD,
                 policy: SponsorPolicy = SponsorPolicy(), receipt_timeout: float = 10.0,
                 pending_timeout: float = 5.0, require_source: bool = True,
                 proof_versions: tuple[int, ...] = DEFAULT_PROOF_VERSIONS,
                 clock: Callable[[], float] = time.time) -> None:
        self.fee_payer = fee_payer
        self.fee_token = fee_token
        self.policy = policy
        self.receipt_timeout = receipt_timeout
        self.pending_timeout = pending_timeout
        self.require_source = require_source
        self.proof_versions = proof_versions
        self.clock = clock

    def _now(self) -> int:
        return int(self.clock())

    def _proof(self, payload: Mapping[str, Any], ctx: ChargeContext, source: Any) -> SettledPayment:
        payer = verify_proof(payload.get("signature"), source, ctx, versions=self.proof_versions)
        req = ctx.request
        return SettledPayment(payer, ctx.challenge_id, 0, req.currency, req.recipient, None, None)

    def _source(self, source: Any, ctx: ChargeContext) -> str | None:
        if source is None and not self.require_source:
            return None
        return source_address(source, ctx.request.chain_id)


def _payload_type(payload: Any) -> str:
    kind = payload.get("type") if isinstance(payload, Mapping) else None
    if kind not in ("transaction", "hash", "proof"):
        raise VerificationFailed(f"payload.type must be transaction, hash or proof, got {kind!r}")
    return str(kind)


class ChargeVerifier(_Base):
    """Verifies and settles Tempo charge credentials through a synchronous ``RpcClient``.

    Args:
        rpc: the pooled JSON-RPC client of the chain the charges are on.
        fee_payer: the sponsor's signer (needed for ``feePayer: true`` charges).
        fee_token: the token the sponsor pays fees in.
        policy: what the sponsor co-signs; its ``max_gas`` bounds every pull transaction.
        receipt_timeout: seconds to wait for a broadcast transaction's receipt.
        pending_timeout: seconds to wait for a pending transaction named by a hash credential.
        require_source: hash credentials must carry a ``did:pkh`` source matching the payer.
        proof_versions: accepted EIP-712 domain versions of zero-amount proofs.
        clock: Unix time source (tests pass a fixed clock).
    """

    def __init__(self, rpc: RpcClient, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.rpc = rpc

    def verify(self, payload: Mapping[str, Any], ctx: ChargeContext, *, claim: Claim,
               source: Any = None, decoded: txmod.Decoded | None = None,
               sender: str | None = None, claimed_sender: str | None = None) -> SettledPayment:
        """Verify (and for pull, settle) one credential ``payload`` against ``ctx``.

        ``decoded`` and ``sender``: a ``transaction`` payload the caller already decoded (and
        whose sender it recovered), passed on to ``prepare_pull`` so it is not done twice.
        ``claimed_sender``: an unverified sender claim, checked where the sender is recovered
        anyway (see ``prepare_pull``); a self-paid pull returns the chain's sender as ``payer``
        for the caller to compare.

        Raises:
            VerificationError subclasses: refused, no money moved by us; ``CredentialReplayed``
                when ``claim`` refuses the hash.  ``ChainError``: the chain did not answer,
                or (``ReceiptTimeout``) a broadcast transaction was not mined in time.
        """
        kind = _payload_type(payload)
        if kind == "proof":
            return self._proof(payload, ctx, source)
        if self.rpc.chain_id() != ctx.request.chain_id:
            raise ConfigError(f"the RPC serves chain {self.rpc.chain_id()}, the charge is on "
                              f"{ctx.request.chain_id}")
        if kind == "transaction":
            return self.verify_transaction(payload.get("signature"), ctx, claim=claim, decoded=decoded,
                                           sender=sender, claimed_sender=claimed_sender)
        return self.verify_hash(payload, ctx, claim=claim, source=source)

    def verify_transaction(self, signature_hex: Any, ctx: ChargeContext, *, claim: Claim,
                           decoded: txmod.Decoded | None = None, sender: str | None = None,
                           claimed_sender: str | None = None) -> SettledPayment:
        """Pull mode: check, claim, (co-sign,) broadcast, wait, check the logs."""
        prep = prepare_pull(signature_hex, ctx, now=self._now(), fee_payer=self.fee_payer,
                            fee_token=self.fee_token, policy=self.policy, decoded=decoded, sender=sender,
                            claimed_sender=claimed_sender)
        if not claim(prep.tx_hash):
            raise CredentialReplayed(f"transaction {prep.tx_hash} was already used")
        try:
            self.rpc.send_raw(prep.raw)
        except RpcError as exc:
            raise _refused(exc) from None
        receipt = self.rpc.wait_for_receipt(prep.tx_hash, timeout=self.receipt_timeout)
        match = check_receipt(receipt, ctx, tx_hash=prep.tx_hash)
        sender = _chain_sender(receipt, prep)
        _check_payer(match.payer, sender, "the transaction's sender")
        return _settled(ctx, sender, prep.tx_hash, match.block_number, prep.fee_payer)

    def verify_hash(self, payload: Mapping[str, Any], ctx: ChargeContext, *, claim: Claim,
                    source: Any = None) -> SettledPayment:
        """Push mode: the payer broadcast the transaction; check its receipt, then claim the hash."""
        tx_hash = check_hash_payload(payload, ctx)
        expected = self._source(source, ctx)
        receipt = self.rpc.receipt(tx_hash)
        if receipt is None:
            if self.rpc.transaction(tx_hash) is None:
                raise VerificationFailed(f"transaction {tx_hash} does not exist on chain "
                                         f"{ctx.request.chain_id}")
            try:
                receipt = self.rpc.wait_for_receipt(tx_hash, timeout=self.pending_timeout)
            except ReceiptTimeout:
                raise VerificationFailed(f"transaction {tx_hash} is still pending") from None
        match = check_receipt(receipt, ctx, tx_hash=tx_hash)
        if expected is not None:
            _check_payer(match.payer, expected, "the credential source")
        if not claim(tx_hash):
            raise CredentialReplayed(f"transaction {tx_hash} was already used")
        return _settled(ctx, match.payer, tx_hash, match.block_number)


async def _claimed(claim: AsyncClaim, key: str) -> bool:
    result = claim(key)
    if inspect.isawaitable(result):
        result = await result
    return bool(result)


class AsyncChargeVerifier(_Base):
    """Asynchronous twin of ``ChargeVerifier`` over an ``AsyncRpcClient``; ``claim`` may be async."""

    def __init__(self, rpc: AsyncRpcClient, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.rpc = rpc

    async def verify(self, payload: Mapping[str, Any], ctx: ChargeContext, *, claim: AsyncClaim,
                     source: Any = None, decoded: txmod.Decoded | None = None,
                     sender: str | None = None, claimed_sender: str | None = None) -> SettledPayment:
        """See ``ChargeVerifier.verify``."""
        kind = _payload_type(payload)
        if kind == "proof":
            return self._proof(payload, ctx, source)
        chain_id = await self.rpc.chain_id()
        if chain_id != ctx.request.chain_id:
            raise ConfigError(f"the RPC serves chain {chain_id}, the charge is on {ctx.request.chain_id}")
        if kind == "transaction":
            return await self.verify_transaction(payload.get("signature"), ctx, claim=claim, decoded=decoded,
                                                 sender=sender, claimed_sender=claimed_sender)
        return await self.verify_hash(payload, ctx, claim=claim, source=source)

    async def verify_transaction(self, signature_hex: Any, ctx: ChargeContext, *, claim: AsyncClaim,
                                 decoded: txmod.Decoded | None = None, sender: str | None = None,
                                 claimed_sender: str | None = None) -> SettledPayment:
        """See ``ChargeVerifier.verify_transaction``."""
        prep = prepare_pull(signature_hex, ctx, now=self._now(), fee_payer=self.fee_payer,
                            fee_token=self.fee_token, policy=self.policy, decoded=decoded, sender=sender,
                            claimed_sender=claimed_sender)
        if not await _claimed(claim, prep.tx_hash):
            raise CredentialReplayed(f"transaction {prep.tx_hash} was already used")
        try:
            await self.rpc.send_raw(prep.raw)
        except RpcError as exc:
            raise _refused(exc) from None
        receipt = await self.rpc.wait_for_receipt(prep.tx_hash, timeout=self.receipt_timeout)
        match = check_receipt(receipt, ctx, tx_hash=prep.tx_hash)
        sender = _chain_sender(receipt, prep)
        _check_payer(match.payer, sender, "the transaction's sender")
        return _settled(ctx, sender, prep.tx_hash, match.block_number, prep.fee_payer)

    async def _mined(self, tx_hash: str, ctx: ChargeContext) -> Mapping[str, Any]:
        """The receipt of a hash credential's transaction (a pending one is awaited
        ``pending_timeout`` seconds); ``VerificationFailed`` when unknown or still pending."""
        receipt = await self.rpc.receipt(tx_hash)
        if receipt is None:
            if await self.rpc.transaction(tx_hash) is None:
                raise VerificationFailed(f"transaction {tx_hash} does not exist on chain "
                                         f"{ctx.request.chain_id}")
            try:
                receipt = await self.rpc.wait_for_receipt(tx_hash, timeout=self.pending_timeout)
            except ReceiptTimeout:
                raise VerificationFailed(f"transaction {tx_hash} is still pending") from None
        return receipt

    async def verify_hash(self, payload: Mapping[str, Any], ctx: ChargeContext, *, claim: AsyncClaim,
                          source: Any = None) -> SettledPayment:
        """See ``ChargeVerifier.verify_hash``."""
        tx_hash = check_hash_payload(payload, ctx)
        expected = self._source(source, ctx)
        match = check_receipt(await self._mined(tx_hash, ctx), ctx, tx_hash=tx_hash)
        if expected is not None:
            _check_payer(match.payer, expected, "the credential source")
        if not await _claimed(claim, tx_hash):
            raise CredentialReplayed(f"transaction {tx_hash} was already used")
        return _settled(ctx, match.payer, tx_hash, match.block_number)

    async def prove_hash(self, payload: Mapping[str, Any], ctx: ChargeContext, source: Any) -> str:
        """The checks of ``verify_hash`` without ``claim``: the ``hash`` payload's transaction is
        mined, succeeded, pays ``ctx`` (its memo binds the challenge id) and comes from ``source``
        (a DID, required).  Returns the payer's lower-case address.

        Raises:
            VerificationFailed, PaymentInsufficient: no such payment; ChainError: no answer.
        """
        tx_hash = check_hash_payload(payload, ctx)
        expected = source_address(source, ctx.request.chain_id)
        match = check_receipt(await self._mined(tx_hash, ctx), ctx, tx_hash=tx_hash)
        _check_payer(match.payer, expected, "the credential source")
        return match.payer
