"""Server-side session accounting: voucher acceptance order, charging, close amounts."""

from __future__ import annotations

from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mpp_claude.errors import (
    AmountExceedsDeposit,
    ChannelClosing,
    ChannelFinalized,
    ChannelMismatch,
    ChannelNotFound,
    DeltaTooSmall,
    InsufficientBalance,
    InvalidVoucherSignature,
    SessionError,
    SignerMismatch,
    StaleVoucher,
    VerificationError,
)
from mpp_claude.tempo.session import (
    ZERO_ADDRESS,
    ChannelAccount,
    ChannelState,
    Voucher,
    VoucherDomain,
    VoucherOutcome,
    accept_voucher,
    charge,
    check_channel_terms,
    check_close_voucher,
    record_settlement,
    required_cumulative,
    sign_voucher,
)
from mpp_claude.tempo.signer import LocalSigner

PAYER = LocalSigner(b"\x01" * 32)
OTHER = LocalSigner(b"\x02" * 32)
PAYEE = "0x" + "b2" * 20
TOKEN = "0x20c0000000000000000000000000000000000000"
DOMAIN = VoucherDomain(31337, "0x" + "e4" * 20)
CID = "0x" + "5d" * 32
STATE = ChannelState(finalized=False, close_requested_at=0, payer=PAYER.address, payee=PAYEE, token=TOKEN,
                     authorized_signer=ZERO_ADDRESS, deposit=1_000, settled=0)


def _v(amount: int, signer: LocalSigner = PAYER, cid: str = CID) -> Voucher:
    return sign_voucher(signer, DOMAIN, cid, amount)


def _account(accepted: int = 0, spent: int = 0) -> ChannelAccount:
    sig = _v(accepted).signature if accepted else b""
    return ChannelAccount(CID, accepted_cumulative=accepted, spent=spent, deposit=1_000,
                          voucher_signature=sig)


class TestAcceptVoucher:
    def test_first_voucher_zero_is_recorded(self) -> None:
        """The open's initial 0 voucher is accepted and its signature stored."""
        acc = accept_voucher(ChannelAccount(CID), _v(0), STATE, DOMAIN)
        assert acc.outcome is VoucherOutcome.ACCEPTED and acc.account.voucher_signature
        assert acc.signer == PAYER.address

    def test_increasing_vouchers_advance(self) -> None:
        """Each higher voucher advances the accepted amount and records deposit and signature."""
        account = ChannelAccount(CID)
        for amount in (0, 10, 25, 1_000):
            acc = accept_voucher(account, _v(amount), STATE, DOMAIN)
            assert acc.outcome is VoucherOutcome.ACCEPTED
            account = acc.account
        assert account.accepted_cumulative == 1_000 and account.deposit == 1_000
        assert account.voucher_signature == _v(1_000).signature

    def test_equal_amount_is_an_idempotent_duplicate(self) -> None:
        """Replaying the accepted voucher changes nothing and is never credited twice."""
        account = _account(50)
        acc = accept_voucher(account, _v(50), STATE, DOMAIN)
        assert acc.outcome is VoucherOutcome.DUPLICATE and acc.account is account

    def test_lower_amount_is_stale(self) -> None:
        """A voucher below the accepted amount is refused with StaleVoucher (402)."""
        with pytest.raises(StaleVoucher) as info:
            accept_voucher(_account(50), _v(49), STATE, DOMAIN)
        assert info.value.extra["acceptedCumulative"] == "50" and info.value.status == 402

    def test_below_on_chain_settled_is_stale(self) -> None:
        """Fresh books on a channel settled to 300: a voucher for 200 is refused."""
        with pytest.raises(StaleVoucher):
            accept_voucher(ChannelAccount(CID), _v(200), replace(STATE, settled=300), DOMAIN)

    def test_min_voucher_delta(self) -> None:
        """An increase below minVoucherDelta is refused; at the minimum it is accepted."""
        with pytest.raises(DeltaTooSmall):
            accept_voucher(_account(50), _v(59), STATE, DOMAIN, min_voucher_delta=10)
        acc = accept_voucher(_account(50), _v(60), STATE, DOMAIN, min_voucher_delta=10)
        assert acc.account.accepted_cumulative == 60

    def test_above_deposit(self) -> None:
        """A voucher above the on-chain deposit is refused."""
        with pytest.raises(AmountExceedsDeposit):
            accept_voucher(_account(50), _v(1_001), STATE, DOMAIN)

    def test_other_signer_and_other_channel(self) -> None:
        """A stranger's voucher, or one signed for another channel, is a signer mismatch."""
        with pytest.raises(SignerMismatch):
            accept_voucher(_account(), _v(10, OTHER), STATE, DOMAIN)
        moved = replace(_v(10, cid="0x" + "77" * 32), channel_id=CID)
        with pytest.raises(SignerMismatch):
            accept_voucher(_account(), moved, STATE, DOMAIN)

    def test_delegated_signer_only(self) -> None:
        """With an authorized signer set, the payer's own vouchers no longer count."""
        delegated = replace(STATE, authorized_signer=OTHER.address)
        assert accept_voucher(_account(), _v(10, OTHER), delegated, DOMAIN).outcome is VoucherOutcome.ACCEPTED
        with pytest.raises(SignerMismatch):
            accept_voucher(_account(), _v(10), delegated, DOMAIN)

    def test_bad_signature_before_amount_checks(self) -> None:
        """A garbage signature is refused even when the amount equals the accepted one."""
        with pytest.raises(InvalidVoucherSignature):
            accept_voucher(_account(50), Voucher(CID, 50, b"\x00" * 65), STATE, DOMAIN)

    def test_missing_and_finalized_channels_are_410(self) -> None:
        """No channel -> channel-not-found, closed channel -> channel-finalized, both 410."""
        with pytest.raises(ChannelNotFound) as missing:
            accept_voucher(_account(), _v(1), replace(STATE, payer=ZERO_ADDRESS), DOMAIN)
        with pytest.raises(ChannelFinalized) as final:
            accept_voucher(_account(), _v(1), replace(STATE, finalized=True), DOMAIN)
        assert missing.value.status == final.value.status == 410
        assert missing.value.problem_type.endswith("/session/channel-not-found")
        assert final.value.problem_type.endswith("/session/channel-finalized")

    def test_pending_close_refuses_new_vouchers(self) -> None:
        """After requestClose the server takes no new vouchers."""
        with pytest.raises(ChannelClosing):
            accept_voucher(_account(), _v(10), replace(STATE, close_requested_at=1_700_000_000), DOMAIN)

    def test_account_for_another_channel_is_a_caller_bug(self) -> None:
        """Mixing books of one channel with a voucher of another raises ValueError."""
        with pytest.raises(ValueError):
            accept_voucher(ChannelAccount("0x" + "77" * 32), _v(1), STATE, DOMAIN)


class TestCharging:
    def test_charge_spends_available(self) -> None:
        """spent grows by the cost while available covers it."""
        account = charge(_account(100, spent=30), 70)
        assert (account.spent, account.available) == (100, 0)

    def test_insufficient_balance_names_the_top_up(self) -> None:
        """cost > available -> insufficient-balance with requiredTopUp = cost - available."""
        with pytest.raises(InsufficientBalance) as info:
            charge(_account(100, spent=30), 100)
        assert info.value.extra["requiredTopUp"] == "30"
        assert info.value.problem_type.endswith("/session/insufficient-balance")
        assert required_cumulative(_account(100, spent=30), 100) == 130
        assert required_cumulative(_account(100, spent=30), 10) == 100

    def test_negative_cost_is_a_caller_bug(self) -> None:
        """A negative cost raises ValueError, never credits the payer."""
        with pytest.raises(ValueError):
            charge(_account(100), -1)

    def test_record_settlement(self) -> None:
        """Settled may only grow and never beyond the accepted amount."""
        account = record_settlement(_account(100), 60)
        assert account.settled == 60 and account.unsettled == 40
        with pytest.raises(ValueError):
            record_settlement(account, 50)
        with pytest.raises(ValueError):
            record_settlement(account, 101)

    @settings(max_examples=60, deadline=None)
    @given(st.lists(st.tuples(st.integers(0, 1_200), st.integers(0, 300)), max_size=12))
    def test_invariants_hold_for_any_sequence(self, steps: list[tuple[int, int]]) -> None:
        """Whatever vouchers and costs arrive: spent <= accepted <= deposit, both only grow."""
        account = ChannelAccount(CID)
        for amount, cost in steps:
            before = account
            try:
                account = accept_voucher(account, _v(amount), STATE, DOMAIN).account
            except SessionError:
                assert account == before
            try:
                account = charge(account, cost)
            except InsufficientBalance:
                pass
            assert 0 <= account.spent <= account.accepted_cumulative <= STATE.deposit
            assert account.spent >= before.spent and account.accepted_cumulative >= before.accepted_cumulative


class TestTermsAndClose:
    def test_channel_terms(self) -> None:
        """Open checks: payee must be us, token the offer's currency, no pending close."""
        check_channel_terms(STATE, CID, payee=PAYEE.upper().replace("0X", "0x"), token=TOKEN)
        with pytest.raises(ChannelMismatch):
            check_channel_terms(STATE, CID, payee="0x" + "99" * 20, token=TOKEN)
        with pytest.raises(ChannelMismatch):
            check_channel_terms(STATE, CID, payee=PAYEE, token="0x20c0000000000000000000000000000000000001")
        with pytest.raises(ChannelClosing):
            check_channel_terms(replace(STATE, close_requested_at=5), CID, payee=PAYEE, token=TOKEN)

    def test_close_voucher_must_cover_spent(self) -> None:
        """A close voucher below what was spent is refused; at or above it (<= deposit) is captured."""
        account = _account(100, spent=80)
        with pytest.raises(StaleVoucher):
            check_close_voucher(account, _v(79), STATE, DOMAIN)
        assert check_close_voucher(account, _v(80), STATE, DOMAIN) == 80
        assert check_close_voucher(account, _v(100), STATE, DOMAIN) == 100
        with pytest.raises(AmountExceedsDeposit):
            check_close_voucher(account, _v(1_001), STATE, DOMAIN)
        with pytest.raises(SignerMismatch):
            check_close_voucher(account, _v(90, OTHER), STATE, DOMAIN)


def test_session_errors_are_verification_errors_with_wire_types() -> None:
    """Every session error is a VerificationError whose problem type is under session/ or core."""
    for cls, problem, status in [(ChannelNotFound, "session/channel-not-found", 410),
                                 (ChannelFinalized, "session/channel-finalized", 410),
                                 (InvalidVoucherSignature, "session/invalid-signature", 402),
                                 (SignerMismatch, "session/signer-mismatch", 402),
                                 (AmountExceedsDeposit, "session/amount-exceeds-deposit", 402),
                                 (DeltaTooSmall, "session/delta-too-small", 402),
                                 (InsufficientBalance, "session/insufficient-balance", 402)]:
        err = cls("x")
        assert isinstance(err, VerificationError)
        assert (err.problem, err.status) == (problem, status)
        assert err.problem_type == "https://paymentauth.org/problems/" + problem
