"""Client side of a Tempo charge: build and sign the payment, pure (no clock, no chain).

mpp-protocol.md §3.3-§3.4.  The caller (``pay.py``) passes everything that comes
from the clock or the chain: ``now``, ``max_fee_per_gas``; this module only turns
a validated ``ChargeRequest`` plus those values into a signed transaction and the
credential ``payload`` / ``source`` fields.

Modes:

* ``transaction`` (pull, default): a signed ``0x76`` the server broadcasts.
* sponsored pull (``methodDetails.feePayer: true``): the sender signs the
  fee-payer placeholder, no fee token; sent as the ``0x78`` hand-off envelope that
  pympp and mppx servers accept; the server co-signs and broadcasts.
* ``hash`` (push): the same signed ``0x76``, broadcast by the payer (``pay.py``).
* ``proof`` (zero amount): see ``proof.py``.

Nonces: always the expiring nonce (TIP-1009: key 2**256-1, nonce 0) with
``valid_before = min(now + 25 s, expires)``.  The chain allows at most 30 s ahead
(T1..T10) and anvil silently drops anything beyond, so 25 s leaves 5 s of clock skew.
No nonce has to be fetched, and many payments from one payer can be in flight.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Literal

from eth_utils.address import to_checksum_address

from ..errors import PaymentDeclined
from . import tip20
from . import tx as txmod
from .memo import attribution_memo
from .request import ChargeRequest
from .signer import Signer
from .tx import EXPIRING_NONCE_KEY, Call, TempoTransaction

VALID_BEFORE_LEAD = 25  # seconds; below the chain's 30 s expiring-nonce window
BASE_GAS = 100_000  # intrinsic 21k + expiring nonce 13k + calldata, with headroom
GAS_PER_TRANSFER = 300_000  # ~50k for a transfer, +250k when the recipient's balance slot is new (T1+)
MAX_GAS = 2_000_000  # what servers (mppx, ours) accept at most; more is refused unseen
#: Never less: mppx servers simulate a payment with eth_call before broadcasting, and anvil's
#: eth_call/eth_estimateGas ask ~784k for a one-transfer expiring-nonce transaction (measured,
#: bench/mppx_bench.py), so a smaller limit is refused there although it would be mined.
#: pympp and mppx clients sign with 1M as well (mpp-protocol.md §3.4 step 5).
MIN_GAS = 1_000_000


def charge_gas_limit(n_transfers: int) -> int:
    """A gas limit that always suffices for ``n_transfers`` TIP-20 transfers with an expiring nonce.

    Measured on T4 (tempo-chain.md §4f): ~68k for an expiring-nonce transfer, ~300k when
    the recipient was never seen (TIP-1000 state creation).  Unused gas is refunded, so
    the only cost of headroom is the up-front ``gas_limit * max_fee_per_gas`` hold.
    At least ``MIN_GAS`` (what simulating servers require), capped at ``MAX_GAS`` (servers
    refuse more), which still covers six new recipients.
    """
    return min(max(BASE_GAS + GAS_PER_TRANSFER * n_transfers, MIN_GAS), MAX_GAS)


def expiring_valid_before(now: int, expires: int | None, lead: int = VALID_BEFORE_LEAD) -> int:
    """``min(now + lead, expires)``: the ``valid_before`` of an expiring-nonce payment.

    Raises:
        PaymentDeclined: the challenge has expired (or expires within the second).
    """
    valid_before = now + lead if expires is None else min(now + lead, expires)
    if valid_before <= now:
        raise PaymentDeclined(f"challenge expired at {expires} (now {now}); not paying it")
    return valid_before


@lru_cache(maxsize=256)  # one payer signs many charges: checksumming costs a keccak (~30 us)
def did_pkh(chain_id: int, address: str) -> str:
    """The credential ``source``: ``did:pkh:eip155:<chainId>:<checksummed address>``."""
    return f"did:pkh:eip155:{chain_id}:{to_checksum_address(address)}"


def payment_calls(request: ChargeRequest, *, challenge_id: str, realm: str,
                  client_id: str | None = None) -> tuple[Call, ...]:
    """The calls that pay ``request``: primary ``transferWithMemo`` first, then one per split.

    The primary memo is ``methodDetails.memo`` when the server fixed one, otherwise the
    challenge-bound attribution memo (``memo.attribution_memo``).
    """
    token, primary, splits = _call_parts(request)
    memo = request.memo or attribution_memo(challenge_id, realm, client_id)
    return (Call(token, primary + memo), *splits)


@lru_cache(maxsize=256)  # a payer sees the same price again and again; a ChargeRequest is immutable
def _call_parts(request: ChargeRequest) -> tuple[bytes, bytes, tuple[Call, ...]]:
    """What the calls of ``request`` share across challenges: the token, the primary
    ``transferWithMemo`` calldata up to its memo, and the split calls."""
    token = txmod.address_bytes(request.currency)
    head = tip20.encode_transfer_with_memo(request.recipient, request.primary_amount, bytes(32))[:-32]
    splits = tuple(Call(token, tip20.encode_transfer_with_memo(split.recipient, split.amount, split.memo)
                        if split.memo else tip20.encode_transfer(split.recipient, split.amount))
                   for split in request.splits)
    return token, head, splits


def build_charge_transaction(request: ChargeRequest, *, challenge_id: str, realm: str, now: int,
                             expires: int | None, max_fee_per_gas: int, max_priority_fee_per_gas: int = 0,
                             gas_limit: int | None = None, fee_token: str | None = None,
                             client_id: str | None = None) -> TempoTransaction:
    """The unsigned transaction that pays ``request`` (sponsored when ``request.fee_payer``).

    Args:
        request: the validated charge request.
        challenge_id, realm: the challenge being paid (bound into the memo).
        now: current Unix time (seconds); expires: the challenge expiry or ``None``.
        max_fee_per_gas: attodollars per gas, e.g. twice the latest base fee.
        gas_limit: default ``charge_gas_limit(number of transfers)``.
        fee_token: for a self-paid charge, the USD TIP-20 paying the fee (default: the
            payment currency).  Ignored when sponsored (the sponsor picks it).
    Raises:
        PaymentDeclined: zero amount (use a proof) or an expired challenge.
    """
    if request.amount == 0:
        raise PaymentDeclined("a zero-amount charge is answered with a proof credential, not a payment")
    calls = payment_calls(request, challenge_id=challenge_id, realm=realm, client_id=client_id)
    sponsored = request.fee_payer
    return TempoTransaction(
        chain_id=request.chain_id,
        max_priority_fee_per_gas=max_priority_fee_per_gas,
        max_fee_per_gas=max_fee_per_gas,
        gas_limit=gas_limit if gas_limit is not None else charge_gas_limit(len(calls)),
        calls=calls,
        nonce_key=EXPIRING_NONCE_KEY,
        nonce=0,
        valid_before=expiring_valid_before(now, expires),
        fee_token=None if sponsored else txmod.address_bytes(fee_token) if fee_token else calls[0].to,
        sponsored=sponsored,
    )


@dataclass(frozen=True, slots=True)
class SignedCharge:
    """A signed charge payment.

    ``raw`` is what goes into the credential (``0x78`` envelope when sponsored); ``tx_hash``
    is the hash the chain will report, known up front only when the payer's own bytes are
    broadcast (not sponsored: the fee payer's signature changes the hash).
    """

    tx: TempoTransaction
    raw: bytes
    sender: str
    tx_hash: str | None
    source: str

    def payload(self, mode: Literal["transaction", "hash"] = "transaction") -> dict[str, str]:
        """The credential ``payload``: ``{"type": "transaction", "signature": "0x…"}`` or, once the
        payer broadcast it, ``{"type": "hash", "hash": "0x…"}``."""
        if mode == "hash":
            if self.tx_hash is None:
                raise ValueError("a sponsored charge cannot be paid in hash (push) mode")
            return {"type": "hash", "hash": self.tx_hash}
        return {"type": "transaction", "signature": "0x" + self.raw.hex()}


def sign_charge(tx: TempoTransaction, signer: Signer) -> SignedCharge:
    """Sign ``tx`` as the payer and encode it for the credential."""
    if tx.sponsored:
        signed = txmod.sign(tx, signer)
        raw = txmod.encode_fee_payer_envelope(signed, signer.address)
        return SignedCharge(signed, raw, signer.address, None, did_pkh(tx.chain_id, signer.address))
    signed, raw = txmod.sign_encoded(tx, signer)
    return SignedCharge(signed, raw, signer.address, txmod.tx_hash(raw), did_pkh(tx.chain_id, signer.address))
