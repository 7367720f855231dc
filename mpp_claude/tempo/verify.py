"""Server-side checks of Tempo charge credentials, pure (no clock, no network).

mpp-protocol.md §3.6 and §3.5.  ``settle.py`` orders these around the chain I/O:

* ``check_payment_calls``: the calls are exactly the charge's transfers (right token,
  recipient, amount, challenge-bound memo), nothing else.
* ``check_transaction_limits``: chain id, validity window, nonce rules, gas bounds.
* ``check_sponsor_policy``: what a fee payer agrees to co-sign (pinned by the
  ``tempo-fee-payer-cosign`` vectors).
* ``check_receipt``: the mined receipt succeeded and carries the matching logs.

Every refusal is a ``VerificationError`` subclass whose message names what was
expected and what arrived; nothing here moves money.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ..errors import PaymentExpired, PaymentInsufficient, VerificationError, VerificationFailed
from . import tip20
from .memo import describe_mismatch, memo_matches
from .request import ChargeRequest, Transfer
from .tx import TempoTransaction

CHAIN_EXPIRING_WINDOW = 30  # seconds a valid_before may lie ahead (TIP-1009 on T1..T10; 300 from T11)
CLOCK_SKEW = 5  # seconds of clock difference tolerated between payer, server and chain
BASE_GAS = 21_000  # secp256k1 sender
EXPIRING_NONCE_GAS = 13_000  # TIP-1009
NEW_NONCE_GAS = 250_000  # TIP-1000 (T1+): a transaction with nonce 0 creates nonce state
DEFAULT_MAX_GAS = 2_000_000  # the sponsor policy's cap, also applied to self-paid transactions
_DID = re.compile(r"^did:pkh:eip155:([0-9]{1,20}):(0x[0-9a-fA-F]{40})$")


@dataclass(frozen=True, slots=True)
class ChargeContext:
    """What a credential must pay: the challenge id and realm it answers and its request.

    ``expires`` is the challenge's expiry as Unix seconds (``None`` = no expiry).
    """

    challenge_id: str
    realm: str
    request: ChargeRequest
    expires: int | None = None

    @classmethod
    def from_values(cls, challenge_id: str, realm: str, request: Mapping[str, Any] | ChargeRequest,
                    expires: int | None = None) -> ChargeContext:
        """Build from plain values; a mapping ``request`` is validated (``MalformedChallenge``)."""
        req = request if isinstance(request, ChargeRequest) else ChargeRequest.from_request(request)
        return cls(challenge_id, realm, req, expires)


@dataclass(frozen=True, slots=True)
class SponsorPolicy:
    """What the server's fee payer co-signs (mppx defaults; the cosign vectors pin them)."""

    max_gas: int = DEFAULT_MAX_GAS
    max_validity: int = 900  # seconds between now and valid_before
    max_fee_per_gas: int | None = None
    max_priority_fee_per_gas: int | None = None


@dataclass(frozen=True, slots=True)
class ReceiptMatch:
    """A receipt that pays the charge: who paid, in which block."""

    payer: str
    tx_hash: str
    block_number: int | None


def _is_primary_attribution(ctx: ChargeContext, index: int) -> bool:
    return index == 0 and ctx.request.memo is None


def _expected(ctx: ChargeContext) -> list[Transfer]:
    return ctx.request.transfers(ctx.request.memo)


def _memo_ok(ctx: ChargeContext, index: int, want: Transfer, memo: bytes | None) -> bool:
    if _is_primary_attribution(ctx, index):
        return memo is not None and memo_matches(memo, ctx.challenge_id, ctx.realm)
    return memo == want.memo


def _fits(ctx: ChargeContext, index: int, want: Transfer, token: str, got: tip20.TransferCall) -> bool:
    return (token == ctx.request.currency and got.to == want.to and got.amount == want.amount
            and _memo_ok(ctx, index, want, got.memo))


def _mismatch(ctx: ChargeContext, index: int, want: Transfer,
              seen: Sequence[tuple[str, tip20.TransferCall]], prefix: str) -> VerificationError:
    """The most precise reason why nothing in ``seen`` (token, transfer) pays ``want``."""
    currency = ctx.request.currency
    if not seen:
        return VerificationFailed(f"{prefix}: no TIP-20 transfer to {want.to} at all")
    in_token = [(t, g) for t, g in seen if t == currency]
    if not in_token:
        return VerificationFailed(f"{prefix}: the transfer is in token {seen[0][0]}, "
                                  f"the challenge currency is {currency}")
    to_recipient = [g for _, g in in_token if g.to == want.to]
    if not to_recipient:
        return VerificationFailed(f"{prefix}: the transfer goes to {in_token[0][1].to}, "
                                  f"the challenge recipient is {want.to}")
    got = to_recipient[0]
    if got.amount < want.amount:
        return PaymentInsufficient(f"{prefix}: pays {got.amount} base units, "
                                   f"the challenge asks {want.amount}")
    if got.amount != want.amount:
        return VerificationFailed(f"{prefix}: pays {got.amount} base units, "
                                  f"the challenge asks exactly {want.amount}")
    if got.memo is None and (want.memo is not None or _is_primary_attribution(ctx, index)):
        return VerificationFailed(f"{prefix}: a plain transfer without memo; the challenge requires "
                                  "transferWithMemo with its challenge-bound memo")
    if _is_primary_attribution(ctx, index) and got.memo is not None:
        return VerificationFailed(f"{prefix}: {describe_mismatch(got.memo, ctx.challenge_id, ctx.realm)}")
    return VerificationFailed(f"{prefix}: memo 0x{(got.memo or b'').hex()} differs from the required "
                              f"0x{(want.memo or b'').hex()}" if want.memo else
                              f"{prefix}: a memo was attached where the challenge asks a plain transfer")


def check_payment_calls(tx: TempoTransaction, ctx: ChargeContext) -> None:
    """The transaction's calls are exactly the charge's transfers (any order), nothing more.

    Raises:
        VerificationFailed: an extra or foreign call, a wrong token/recipient/memo, a plain
            ``transfer`` where the challenge-bound memo is required.
        PaymentInsufficient: the right transfer for too little.
    """
    expected = _expected(ctx)
    if len(tx.calls) > len(expected):
        raise VerificationFailed(f"transaction contains unauthorized extra calls: {len(tx.calls)} calls, "
                                 f"the charge needs exactly {len(expected)}")
    seen: list[tuple[str, tip20.TransferCall]] = []
    for i, call in enumerate(tx.calls):
        if call.value:
            raise VerificationFailed(f"call {i} carries a native value of {call.value}; Tempo rejects value")
        decoded = tip20.decode_transfer_call(call.data)
        if decoded is None:
            raise VerificationFailed(f"transaction contains unauthorized extra calls: call {i} is not a "
                                     f"TIP-20 transfer/transferWithMemo (selector 0x{call.data[:4].hex()})")
        seen.append(("0x" + call.to.hex(), decoded))
    unused = list(range(len(seen)))
    for i, want in enumerate(expected):
        hit = next((j for j in unused if _fits(ctx, i, want, *seen[j])), None)
        if hit is None:
            raise _mismatch(ctx, i, want, [seen[j] for j in unused], "no matching payment call found")
        unused.remove(hit)


def intrinsic_gas_floor(tx: TempoTransaction) -> int:
    """A lower bound of the gas charged before execution on T1+ (tempo-chain.md §3, §4f).

    21,000 base + calldata (16 per non-zero byte, 4 per zero byte) + 13,000 for an expiring
    nonce, or + 250,000 when an ordinary nonce is 0 (TIP-1000 state creation).  A gas limit
    below it is accepted over RPC and then silently dropped by anvil.
    """
    calldata = sum(16 * len(c.data) - 12 * c.data.count(0) for c in tx.calls)
    extra = EXPIRING_NONCE_GAS if tx.is_expiring_nonce else NEW_NONCE_GAS if tx.nonce == 0 else 0
    return BASE_GAS + calldata + extra


def check_transaction_limits(tx: TempoTransaction, ctx: ChargeContext, *, now: int,
                             max_gas: int = DEFAULT_MAX_GAS,
                             expiring_window: int = CHAIN_EXPIRING_WINDOW) -> None:
    """Chain id, validity window, nonce and gas checks, so nothing doomed is broadcast.

    anvil accepts and then silently drops a transaction whose expiring nonce is not 0 or
    whose ``valid_before`` lies more than ``expiring_window`` seconds ahead, so those are
    refused here rather than discovered by a receipt timeout.

    Raises:
        VerificationFailed: wrong chain id, gas out of bounds, nonce rules broken.
        PaymentExpired: ``valid_before`` already passed, or later than the challenge expiry.
    """
    if tx.chain_id != ctx.request.chain_id:
        raise VerificationFailed(f"transaction chain id {tx.chain_id}, the challenge requires "
                                 f"{ctx.request.chain_id}")
    if tx.gas_limit > max_gas:
        raise VerificationFailed(f"gas limit {tx.gas_limit} exceeds the maximum of {max_gas}")
    floor = intrinsic_gas_floor(tx)
    if tx.gas_limit < floor:
        raise VerificationFailed(f"gas limit {tx.gas_limit} is below the intrinsic gas of at least {floor}; "
                                 "the chain would drop the transaction")
    vb, va = tx.valid_before, tx.valid_after
    if vb is not None and vb <= now:
        raise PaymentExpired(f"transaction validBefore {vb} is not after now ({now})")
    if vb is not None and ctx.expires is not None and vb > ctx.expires:
        raise PaymentExpired(f"transaction validBefore {vb} is later than the challenge expiry {ctx.expires}")
    if va is not None and va > now + CLOCK_SKEW:
        raise VerificationFailed(f"transaction validAfter {va} is in the future (now {now})")
    if tx.is_expiring_nonce:
        if tx.nonce != 0:
            raise VerificationFailed(f"an expiring-nonce transaction must have nonce 0, got {tx.nonce}")
        if vb is None:
            raise VerificationFailed("an expiring-nonce transaction needs validBefore")
        if vb > now + expiring_window + CLOCK_SKEW:
            raise VerificationFailed(f"transaction validBefore {vb} is more than {expiring_window}s ahead "
                                     f"(now {now}); the chain would drop it")


def check_sponsor_policy(tx: TempoTransaction, policy: SponsorPolicy, *, now: int) -> None:
    """What a fee payer agrees to co-sign (mpp-protocol.md §3.5); run before ``tx.cosign``.

    Raises:
        VerificationFailed: the message contains the phrase the cosign vectors expect.
    """
    if not tx.sponsored:
        raise VerificationFailed("the charge sponsors fees but the transaction is not a fee-payer "
                                 "transaction (no 0x00 placeholder / 0x78 envelope)")
    if tx.fee_payer_signature is not None:
        raise VerificationFailed("fee-payer transaction is already co-signed")
    if tx.fee_token is not None:
        raise VerificationFailed("fee-payer transaction must not include fee_token; the sponsor chooses it")
    if not tx.is_expiring_nonce:
        raise VerificationFailed(f"fee-payer transaction must use expiring nonce key (2**256-1), "
                                 f"got {tx.nonce_key}")
    if tx.gas_limit > policy.max_gas:
        raise VerificationFailed(f"gas limit exceeds sponsor policy: {tx.gas_limit} > {policy.max_gas}")
    if tx.valid_before is None or tx.valid_before - now > policy.max_validity:
        raise VerificationFailed(f"validity window exceeds sponsor policy: validBefore {tx.valid_before}, "
                                 f"at most now+{policy.max_validity}s")
    if tx.access_list:
        raise VerificationFailed("access list is not allowed in a sponsored transaction")
    if tx.aa_authorization_list or tx.key_authorization is not None:
        raise VerificationFailed("authorization lists and key authorizations are not sponsored")
    if policy.max_fee_per_gas is not None and tx.max_fee_per_gas > policy.max_fee_per_gas:
        raise VerificationFailed(f"max fee per gas {tx.max_fee_per_gas} exceeds sponsor policy "
                                 f"({policy.max_fee_per_gas})")
    if (policy.max_priority_fee_per_gas is not None
            and tx.max_priority_fee_per_gas > policy.max_priority_fee_per_gas):
        raise VerificationFailed(f"max priority fee {tx.max_priority_fee_per_gas} exceeds sponsor policy "
                                 f"({policy.max_priority_fee_per_gas})")


def receipt_status_ok(receipt: Mapping[str, Any]) -> bool:
    """True when the receipt's ``status`` is 1."""
    status = receipt.get("status")
    return status in ("0x1", "0x01", 1)


def check_receipt(receipt: Mapping[str, Any], ctx: ChargeContext, *, tx_hash: str | None = None
                  ) -> ReceiptMatch:
    """A mined receipt pays the charge: success, and logs emitted by the currency token for
    every transfer, the primary one carrying the challenge-bound memo.

    Extra logs are ignored (the duplicate ``Transfer`` of each ``transferWithMemo``, the fee
    ``Transfer`` to the FeeManager, which is in the same token when fee and payment tokens
    agree).  The payer is the ``from`` of the primary log.

    Raises:
        VerificationFailed: another transaction's receipt, a revert, no matching log.
        PaymentInsufficient: the matching transfer is for too little.
    """
    got_hash = str(receipt.get("transactionHash", "")).lower()
    if tx_hash is not None and got_hash != tx_hash.lower():
        raise VerificationFailed(f"receipt is for transaction {got_hash}, expected {tx_hash.lower()}")
    if not receipt_status_ok(receipt):
        raise VerificationFailed(f"transaction {got_hash} reverted (status {receipt.get('status')!r})")
    logs = tip20.transfer_logs(receipt)
    if any(lg.to == tip20.RECEIVE_POLICY_GUARD and lg.token == ctx.request.currency for lg in logs):
        raise VerificationFailed("the payment is held by the recipient's receive policy (TIP-1028 guard "
                                 f"{tip20.RECEIVE_POLICY_GUARD}); the recipient was not credited")
    # a transferWithMemo emits Transfer + TransferWithMemo: when a memo is required, match the latter
    candidates = [lg for lg in logs if lg.to != tip20.FEE_MANAGER]
    unused = list(range(len(candidates)))
    payer: str | None = None
    for i, want in enumerate(_expected(ctx)):
        needs_memo = want.memo is not None or _is_primary_attribution(ctx, i)
        pool = [j for j in unused if (candidates[j].memo is not None) == needs_memo]

        def fits(j: int, i: int = i, want: Transfer = want) -> bool:
            lg = candidates[j]
            return _fits(ctx, i, want, lg.token, tip20.TransferCall(lg.to, lg.amount, lg.memo))

        hit = next((j for j in pool if fits(j)), None)
        if hit is None:
            seen = [(candidates[j].token, tip20.TransferCall(candidates[j].to, candidates[j].amount,
                                                             candidates[j].memo)) for j in unused]
            seen.sort(key=lambda tc: tc[1].memo is None)  # explain with memo logs first
            raise _mismatch(ctx, i, want, seen, "no matching payment log found")
        unused.remove(hit)
        if payer is None:
            payer = candidates[hit].sender
        elif candidates[hit].sender != payer:
            raise VerificationFailed("payment logs come from different senders")
    block = receipt.get("blockNumber")
    return ReceiptMatch(payer or "", got_hash, int(block, 16) if isinstance(block, str) else None)


def source_address(source: Any, chain_id: int) -> str:
    """The lower-case address of a ``did:pkh:eip155:<chainId>:<address>`` source on ``chain_id``.

    Raises:
        VerificationFailed: not such a DID, or a DID on another chain.
    """
    match = _DID.match(source) if isinstance(source, str) else None
    if match is None:
        raise VerificationFailed(f"source must be did:pkh:eip155:<chainId>:<address>, got {source!r}")
    if int(match.group(1)) != chain_id:
        raise VerificationFailed(f"source is on chain {match.group(1)}, the charge on {chain_id}")
    return match.group(2).lower()


def claimed_source(source: Any, chain_id: int) -> str | None:
    """The lower-case address a ``source`` DID *claims* on ``chain_id``, or ``None``.

    Unlike ``source_address`` this never raises: a missing source, one that is not a
    ``did:pkh:eip155`` DID, or one on another chain is simply not a usable claim.  Nothing
    here proves the claim: the caller must check it against a recovered signature or the
    chain's own sender before trusting it.
    """
    match = _DID.match(source) if isinstance(source, str) else None
    if match is None or int(match.group(1)) != chain_id:
        return None
    return match.group(2).lower()


def check_claimed_sender(claimed: str, signer: str) -> None:
    """A sender the credential's ``source`` claims must be the one its signature recovers.

    Raises:
        VerificationFailed: they differ.
    """
    if signer != claimed:
        raise VerificationFailed(f"the credential source names {claimed}, but the transaction is "
                                 f"signed by {signer}")
