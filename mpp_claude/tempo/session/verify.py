"""Server checks of the payer's ``open`` / ``topUp`` transactions before broadcasting them (pure).

draft-tempo-session-00 "Open Verification" step 1 and "TopUp Verification" step 1: decode
the signed transaction, check it calls the expected escrow with the offer's parameters,
recover the payer from the signature and recompute the channel id (never trust the id or
the signer claimed in the payload).  The transaction must have exactly the shape
``transactions.open_calls`` / ``top_up_calls`` build: an optional TIP-20 ``approve`` of
the escrow on the channel's token, then the escrow call; nothing else rides along (a
sponsoring server would otherwise pay for arbitrary calls).

After broadcasting, the server still checks the on-chain state (``accounting.check_channel_terms``)
and the initial voucher (``accounting.accept_voucher``).
"""

from __future__ import annotations

from dataclasses import dataclass

from ...errors import ChannelMismatch, VerificationFailed
from ..tx import Call, TempoTransaction, recover_sender
from ._abi import normalize_address, normalize_channel_id
from .channel import SEL_APPROVE, OpenCall, compute_channel_id, decode_open, decode_top_up


@dataclass(frozen=True, slots=True)
class OpenedChannel:
    """What a verified ``open`` transaction will create."""

    channel_id: str
    payer: str
    call: OpenCall

    @property
    def expected_signer(self) -> str:
        """The voucher signer the channel will require (delegated signer, else the payer)."""
        return self.payer if int(self.call.authorized_signer, 16) == 0 else self.call.authorized_signer


def _split_calls(tx: TempoTransaction, escrow: str, action: str) -> tuple[Call | None, Call]:
    calls = tx.calls
    if not 1 <= len(calls) <= 2:
        raise VerificationFailed(f"{action} transaction must be [approve,] {action}; "
                                 f"it has {len(calls)} calls")
    if any(c.value for c in calls):
        raise VerificationFailed(f"{action} transaction must not transfer native value")
    main = calls[-1]
    if "0x" + main.to.hex() != escrow:
        raise VerificationFailed(f"{action} transaction calls 0x{main.to.hex()}, not the escrow {escrow}")
    return (calls[0] if len(calls) == 2 else None), main


def _check_approve(approve: Call | None, *, token: str, escrow: str, amount: int, action: str) -> None:
    if approve is None:
        return
    data = approve.data
    if "0x" + approve.to.hex() != token or data[:4] != SEL_APPROVE or len(data) != 68:
        raise VerificationFailed(f"the first call of an {action} transaction may only be "
                                 f"{token}.approve(escrow, amount)")
    spender, value = data[4:36], int.from_bytes(data[36:68], "big")
    if any(spender[:12]) or "0x" + spender[12:].hex() != escrow:
        raise VerificationFailed(f"the {action} transaction approves another spender than the escrow")
    if value < amount:
        raise VerificationFailed(f"the {action} transaction approves {value}, "
                                 f"less than the {amount} it moves")


def check_open_transaction(tx: TempoTransaction, *, escrow: str, chain_id: int, payee: str, token: str,
                           channel_id: str, min_deposit: int = 1, authorized_signer: str | None = None
                           ) -> OpenedChannel:
    """Verify an ``open`` credential's transaction against the offer and the payload.

    Args:
        tx: the decoded, sender-signed transaction (``tx.decode(raw).tx``).
        escrow, chain_id: the offer's ``escrowContract`` and ``chainId``.
        payee, token: the offer's ``recipient`` and ``currency``.
        channel_id: the payload's ``channelId`` (must equal the recomputed id).
        min_deposit: the smallest deposit the server accepts (e.g. the price of one unit).
        authorized_signer: the payload's ``authorizedSigner`` when present (must match calldata).
    Returns:
        ``OpenedChannel`` with the recomputed id and the recovered payer.
    Raises:
        VerificationFailed: wrong chain, call shape, escrow, approval, deposit, or id.
        ChannelMismatch: payee, token or authorized signer differ from the offer/payload.
        MalformedTransaction: the sender signature does not recover.
    """
    escrow, token, payee = normalize_address(escrow), normalize_address(token), normalize_address(payee)
    if tx.chain_id != chain_id:
        raise VerificationFailed(f"open transaction is for chain {tx.chain_id}, the offer is on {chain_id}")
    approve, main = _split_calls(tx, escrow, "open")
    try:
        call = decode_open(main.data)
    except ValueError as exc:
        raise VerificationFailed(f"open transaction: {exc}") from None
    if call.payee != payee:
        raise ChannelMismatch(f"open pays {call.payee}, the offer's recipient is {payee}")
    if call.token != token:
        raise ChannelMismatch(f"open escrows token {call.token}, the offer's currency is {token}")
    if call.deposit < min_deposit:
        raise VerificationFailed(f"deposit {call.deposit} is below the minimum {min_deposit}")
    if authorized_signer is not None and normalize_address(authorized_signer) != call.authorized_signer:
        raise ChannelMismatch("payload authorizedSigner differs from the open calldata")
    _check_approve(approve, token=token, escrow=escrow, amount=call.deposit, action="open")
    payer = recover_sender(tx)
    computed = compute_channel_id(payer=payer, payee=call.payee, token=call.token, salt=call.salt,
                                  authorized_signer=call.authorized_signer, escrow=escrow, chain_id=chain_id)
    if computed != normalize_channel_id(channel_id):
        raise VerificationFailed(f"channelId {channel_id} does not match the open transaction ({computed})")
    return OpenedChannel(computed, payer, call)


def check_top_up_transaction(tx: TempoTransaction, *, escrow: str, chain_id: int, token: str, channel_id: str,
                             additional_deposit: int) -> str:
    """Verify a ``topUp`` credential's transaction; returns the recovered sender (the payer).

    The escrow itself refuses a top-up from anyone but the payer; the caller compares the
    returned sender with the channel's on-chain payer before broadcasting if it sponsors fees.

    Raises:
        VerificationFailed: wrong chain, call shape, escrow, approval, channel or amount.
        MalformedTransaction: the sender signature does not recover.
    """
    escrow, token = normalize_address(escrow), normalize_address(token)
    if tx.chain_id != chain_id:
        raise VerificationFailed(f"topUp transaction is for chain {tx.chain_id}, the offer is on {chain_id}")
    approve, main = _split_calls(tx, escrow, "topUp")
    try:
        cid, amount = decode_top_up(main.data)
    except ValueError as exc:
        raise VerificationFailed(f"topUp transaction: {exc}") from None
    if cid != normalize_channel_id(channel_id):
        raise VerificationFailed(f"topUp transaction is for channel {cid}, the payload names {channel_id}")
    if amount != additional_deposit or amount <= 0:
        raise VerificationFailed(f"topUp transaction adds {amount}, the payload says {additional_deposit}")
    _check_approve(approve, token=token, escrow=escrow, amount=amount, action="topUp")
    return recover_sender(tx)
