"""Server-side session accounting: voucher acceptance, charging, close amounts (pure).

The rules of draft-tempo-session-00 "Voucher Verification" and "Server-Side
Accounting" (shared/docs/mpp-protocol.md §4.7), in this order for a voucher:

1. the channel exists (else 410 ``channel-not-found``) and is not finalized (410
   ``channel-finalized``);
2. the signature is well formed and low-s and recovers (``invalid-signature``);
3. the signer is the channel's on-chain authorized signer, or its payer when none
   was delegated (``signer-mismatch``) - never a signer claimed by the payload;
4. no forced close is pending (``closeRequestedAt == 0``);
5. ``cumulative >= max(accepted, settled on chain)``, else ``StaleVoucher`` (never
   credited); equal to the accepted amount is an idempotent retry (nothing changes),
   except for the channel's first voucher (the open's, usually 0), which is recorded;
6. ``cumulative - accepted >= minVoucherDelta`` after the first voucher (``delta-too-small``);
7. ``cumulative <= deposit`` (``amount-exceeds-deposit``);
8. the caller persists the returned account *before* relying on it.

Per request: ``available = accepted - spent``; a cost above it is refused with
``insufficient-balance`` and ``requiredTopUp = cost - available``; otherwise the
caller persists ``spent += cost`` before delivering.  Invariants kept by every
function here: ``settled <= spent`` is *not* assumed (a payee may settle ahead of
metering), but ``spent <= accepted <= deposit`` and all values only grow.

Nothing here does I/O or locks: the caller serialises per channel (the draft's
"Concurrency Model") and stores the values these functions return.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from enum import Enum

from ...errors import (
    AmountExceedsDeposit,
    ChannelClosing,
    ChannelFinalized,
    ChannelMismatch,
    ChannelNotFound,
    DeltaTooSmall,
    InsufficientBalance,
    SignerMismatch,
    StaleVoucher,
)
from ._abi import normalize_address
from .channel import ChannelState
from .voucher import Voucher, VoucherDomain, recover_voucher_signer


@dataclass(frozen=True, slots=True)
class ChannelAccount:
    """The server's books for one channel (all amounts in base units).

    Attributes:
        channel_id: lower-case ``0x`` hex.
        accepted_cumulative: highest voucher amount accepted (the payer's authorisation).
        spent: amount charged for service already delivered.
        settled: cumulative amount settled on chain (informational; from the escrow).
        deposit: the on-chain deposit last seen.
        voucher_signature: signature of the voucher for ``accepted_cumulative`` (what the
            payee settles or closes with); empty before the first voucher.
    """

    channel_id: str
    accepted_cumulative: int = 0
    spent: int = 0
    settled: int = 0
    deposit: int = 0
    voucher_signature: bytes = b""

    @property
    def available(self) -> int:
        """Authorised but not yet spent."""
        return self.accepted_cumulative - self.spent

    @property
    def unsettled(self) -> int:
        """Authorised but not yet settled on chain (what a ``settle`` now would pay)."""
        return max(0, self.accepted_cumulative - self.settled)


class VoucherOutcome(Enum):
    """What ``accept_voucher`` did."""

    ACCEPTED = "accepted"      #: the voucher advanced ``accepted_cumulative``: persist the account
    DUPLICATE = "duplicate"    #: same amount as accepted: an idempotent retry, nothing changed


@dataclass(frozen=True, slots=True)
class Acceptance:
    """Result of ``accept_voucher``: the (possibly new) account, the outcome and the signer."""

    account: ChannelAccount
    outcome: VoucherOutcome
    signer: str


def check_channel_live(channel: ChannelState, channel_id: str) -> None:
    """Refuse a missing or finalized channel (both 410).

    Raises:
        ChannelNotFound: the escrow has no such channel.
        ChannelFinalized: the channel was closed or withdrawn.
    """
    if not channel.exists:
        raise ChannelNotFound(f"no channel {channel_id} on this escrow", channelId=channel_id)
    if channel.finalized:
        raise ChannelFinalized(f"channel {channel_id} is finalized", channelId=channel_id)


def check_channel_terms(channel: ChannelState, channel_id: str, *, payee: str, token: str) -> None:
    """The open checks of the draft: channel live, payee is us, token is the offer's currency,
    no forced close pending.

    Raises:
        ChannelNotFound, ChannelFinalized: see ``check_channel_live``.
        ChannelMismatch: payee or token differ.
        ChannelClosing: a forced close is pending.
    """
    check_channel_live(channel, channel_id)
    if channel.payee != normalize_address(payee):
        raise ChannelMismatch(f"channel {channel_id} pays {channel.payee}, not this server ({payee})",
                              channelId=channel_id)
    if channel.token != normalize_address(token):
        raise ChannelMismatch(f"channel {channel_id} holds token {channel.token}, the offer asks for {token}",
                              channelId=channel_id)
    if channel.close_requested_at:
        raise ChannelClosing(f"channel {channel_id} has a forced close pending", channelId=channel_id)


def verify_voucher_signer(domain: VoucherDomain, voucher: Voucher, channel: ChannelState) -> str:
    """Check the voucher's signature against the channel's on-chain expected signer.

    Returns:
        The signer's lower-case address.
    Raises:
        ChannelNotFound, ChannelFinalized: see ``check_channel_live``.
        InvalidVoucherSignature: malformed, high-s or unrecoverable signature.
        SignerMismatch: signed by someone else (another key, or for another channel,
            amount, escrow or chain).
    """
    check_channel_live(channel, voucher.channel_id)
    signer = recover_voucher_signer(domain, voucher)
    if signer != channel.expected_signer:
        raise SignerMismatch(f"voucher for {voucher.channel_id} is not signed by the channel's signer",
                             channelId=voucher.channel_id)
    return signer


def accept_voucher(account: ChannelAccount, voucher: Voucher, channel: ChannelState, domain: VoucherDomain,
                   *, min_voucher_delta: int = 0) -> Acceptance:
    """Apply the voucher acceptance rules (module docstring, steps 1-7).

    Args:
        account: the server's current books for ``voucher.channel_id``.
        voucher: the voucher from the credential payload.
        channel: fresh (or briefly cached) on-chain state of that channel.
        domain: the escrow's EIP-712 domain.
        min_voucher_delta: the offer's ``minVoucherDelta`` (0 = any increase).
    Returns:
        ``Acceptance``; on ``ACCEPTED`` persist ``acceptance.account`` before relying on it.
    Raises:
        ValueError: ``account`` is for another channel (a caller bug).
        SessionError subclasses: see the module docstring, in that order.
    """
    if account.channel_id != voucher.channel_id:
        raise ValueError("account and voucher are for different channels")
    signer = verify_voucher_signer(domain, voucher, channel)
    cid = voucher.channel_id
    if channel.close_requested_at:
        raise ChannelClosing(f"channel {cid} has a forced close pending; no new vouchers", channelId=cid)
    amount, accepted = voucher.cumulative_amount, account.accepted_cumulative
    first = not account.voucher_signature  # the open's initial voucher (usually 0) is recorded too
    floor = max(accepted, channel.settled)
    if amount < floor:
        raise StaleVoucher(f"voucher for {amount} is below the accepted or settled amount {floor}",
                           channelId=cid, acceptedCumulative=str(accepted))
    if amount == accepted and not first:
        return Acceptance(account, VoucherOutcome.DUPLICATE, signer)
    if not first and amount - accepted < min_voucher_delta:
        raise DeltaTooSmall(f"voucher advances by {amount - accepted}, the minimum is {min_voucher_delta}",
                            channelId=cid, acceptedCumulative=str(accepted))
    if amount > channel.deposit:
        raise AmountExceedsDeposit(f"voucher for {amount} exceeds the deposit {channel.deposit}",
                                   channelId=cid, deposit=str(channel.deposit))
    new = replace(account, accepted_cumulative=amount, deposit=channel.deposit,
                  settled=max(account.settled, channel.settled), voucher_signature=voucher.signature)
    return Acceptance(new, VoucherOutcome.ACCEPTED, signer)


def charge(account: ChannelAccount, cost: int) -> ChannelAccount:
    """Spend ``cost`` from the accepted balance; persist the result before delivering.

    Raises:
        ValueError: negative cost (a caller bug).
        InsufficientBalance: ``cost > available``; ``extra['requiredTopUp']`` is the shortfall.
    """
    if cost < 0:
        raise ValueError(f"cost must be >= 0, got {cost}")
    available = account.available
    if cost > available:
        raise InsufficientBalance(
            f"cost {cost} exceeds the available balance {available}", channelId=account.channel_id,
            requiredTopUp=str(cost - available), acceptedCumulative=str(account.accepted_cumulative),
            spent=str(account.spent))
    return replace(account, spent=account.spent + cost)


def required_cumulative(account: ChannelAccount, cost: int) -> int:
    """The cumulative amount the next voucher must authorise to cover ``cost`` more
    (``requiredCumulative`` of an SSE ``payment-need-voucher`` event)."""
    return account.spent + cost if cost > account.available else account.accepted_cumulative


def record_settlement(account: ChannelAccount, settled_on_chain: int) -> ChannelAccount:
    """Record an on-chain settlement (the escrow's ``settled`` after ``settle``/``close``).

    Raises:
        ValueError: the value went down or exceeds what was authorised (a caller bug or
            a different channel).
    """
    if settled_on_chain < account.settled or settled_on_chain > account.accepted_cumulative:
        raise ValueError(f"settled {settled_on_chain} outside [{account.settled}, "
                         f"{account.accepted_cumulative}]")
    return replace(account, settled=settled_on_chain)


def check_close_voucher(account: ChannelAccount, voucher: Voucher, channel: ChannelState,
                        domain: VoucherDomain) -> int:
    """Validate a ``close`` credential's voucher; returns the amount the close will capture.

    v1 ``close(channelId, cumulativeAmount, sig)`` pays the payee exactly the voucher's
    amount (minus what is settled), so the voucher must cover ``max(spent, settled)``: a
    lower one would forfeit service already delivered, and is refused.  A higher one
    (up to the deposit) is the payer's own signed choice.

    Raises:
        SessionError subclasses: not live, bad signature or signer, ``StaleVoucher`` below
            ``max(spent, settled)``, ``AmountExceedsDeposit``.
    """
    verify_voucher_signer(domain, voucher, channel)
    floor = max(account.spent, account.settled, channel.settled)
    amount = voucher.cumulative_amount
    if amount < floor:
        raise StaleVoucher(f"close voucher for {amount} is below what was spent or settled ({floor})",
                           channelId=voucher.channel_id, spent=str(account.spent))
    if amount > channel.deposit:
        raise AmountExceedsDeposit(f"close voucher for {amount} exceeds the deposit {channel.deposit}",
                                   channelId=voucher.channel_id, deposit=str(channel.deposit))
    return amount
