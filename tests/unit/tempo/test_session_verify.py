"""Server checks of open/topUp transactions (built with our builder, decoded from the wire)."""

from __future__ import annotations

from dataclasses import replace

import pytest

from mpp_claude.errors import ChannelMismatch, MalformedTransaction, VerificationFailed
from mpp_claude.tempo import tx as txmod
from mpp_claude.tempo.session import ZERO_ADDRESS, compute_channel_id
from mpp_claude.tempo.session.channel import encode_approve, encode_withdraw
from mpp_claude.tempo.session.transactions import (
    GAS_OPEN,
    build_tx,
    open_calls,
    sign_and_encode,
    top_up_calls,
)
from mpp_claude.tempo.session.verify import check_open_transaction, check_top_up_transaction
from mpp_claude.tempo.signer import LocalSigner
from mpp_claude.tempo.tx import Call, TempoTransaction

PAYER = LocalSigner(b"\x07" * 32)
HOT = LocalSigner(b"\x08" * 32)
ESCROW = "0x" + "e4" * 20
PAYEE = "0x" + "b2" * 20
TOKEN = "0x20c0000000000000000000000000000000000000"
SALT = b"\x11" * 32
CHAIN = 4217


def _wire(calls: tuple[Call, ...], signer: LocalSigner = PAYER, chain_id: int = CHAIN) -> TempoTransaction:
    tx = build_tx(calls, chain_id=chain_id, nonce=3, gas_limit=GAS_OPEN, max_fee_per_gas=10**10,
                  fee_token=TOKEN)
    return txmod.decode(sign_and_encode(tx, signer)).tx


def _cid(signer: str = ZERO_ADDRESS, payer: str = PAYER.address) -> str:
    return compute_channel_id(payer=payer, payee=PAYEE, token=TOKEN, salt=SALT, authorized_signer=signer,
                              escrow=ESCROW, chain_id=CHAIN)


def _open(**over: object) -> TempoTransaction:
    args: dict[str, object] = dict(payee=PAYEE, token=TOKEN, deposit=5_000, salt=SALT)
    args.update(over)
    return _wire(open_calls(ESCROW, **args))  # type: ignore[arg-type]


def _check(tx: TempoTransaction, **over: object) -> object:
    args: dict[str, object] = dict(escrow=ESCROW, chain_id=CHAIN, payee=PAYEE, token=TOKEN, channel_id=_cid())
    args.update(over)
    return check_open_transaction(tx, **args)  # type: ignore[arg-type]


class TestOpen:
    def test_valid_open_recovers_payer_and_id(self) -> None:
        """approve+open from the payer verifies; the id is recomputed from the recovered sender."""
        upper_id = _cid().upper().replace("0X", "0x")
        opened = check_open_transaction(_open(), escrow=ESCROW.upper().replace("0X", "0x"), chain_id=CHAIN,
                                        payee=PAYEE, token=TOKEN, channel_id=upper_id)
        assert opened.payer == PAYER.address and opened.channel_id == _cid()
        assert opened.call.deposit == 5_000 and opened.expected_signer == PAYER.address

    def test_open_alone_and_delegated_signer(self) -> None:
        """A bare open (approved earlier) is fine; a delegated signer must match the payload."""
        _, bare = open_calls(ESCROW, payee=PAYEE, token=TOKEN, deposit=5, salt=SALT)
        assert _check(_wire((bare,))).payer == PAYER.address  # type: ignore[attr-defined]
        tx = _open(authorized_signer=HOT.address)
        opened = _check(tx, channel_id=_cid(HOT.address), authorized_signer=HOT.address)
        assert opened.expected_signer == HOT.address  # type: ignore[attr-defined]
        with pytest.raises(ChannelMismatch):
            _check(tx, channel_id=_cid(HOT.address), authorized_signer=PAYER.address)

    def test_claimed_channel_id_must_match(self) -> None:
        """A payload id computed for someone else (or another salt) is refused."""
        with pytest.raises(VerificationFailed, match="does not match"):
            _check(_open(), channel_id=_cid(payer=HOT.address))

    @pytest.mark.parametrize(("over", "error"), [
        (dict(payee="0x" + "99" * 20), ChannelMismatch),
        (dict(token="0x20c0000000000000000000000000000000000001"), ChannelMismatch),
        (dict(chain_id=42431), VerificationFailed),
        (dict(escrow="0x" + "99" * 20), VerificationFailed),
        (dict(min_deposit=5_001), VerificationFailed),
    ])
    def test_offer_mismatches(self, over: dict[str, object], error: type[Exception]) -> None:
        """Payee, token, chain, escrow and minimum deposit are checked against the offer."""
        with pytest.raises(error):
            _check(_open(), **over)

    def test_call_shapes_are_strict(self) -> None:
        """Extra calls, a foreign approve, a short approval or a non-open call are refused."""
        approve, open_ = open_calls(ESCROW, payee=PAYEE, token=TOKEN, deposit=5_000, salt=SALT)
        token_to = approve.to
        bad = [
            (approve, approve, open_),
            (Call(token_to, encode_approve("0x" + "99" * 20, 5_000)), open_),
            (Call(token_to, encode_approve(ESCROW, 4_999)), open_),
            (Call(bytes.fromhex("20c0000000000000000000000000000000000001"), approve.data), open_),
            (approve, Call(open_.to, encode_withdraw("0x" + "00" * 32))),
            (approve, replace(open_, value=1)),
        ]
        for calls in bad:
            with pytest.raises(VerificationFailed):
                _check(_wire(calls))

    def test_unsigned_or_garbage_signature(self) -> None:
        """A signature that does not recover is malformed; one from another key breaks the id."""
        with pytest.raises(MalformedTransaction):
            _check(replace(_open(), sender_signature=b"\x00" * 64 + b"\x1b"))
        with pytest.raises(VerificationFailed, match="does not match"):
            _check(_wire(open_calls(ESCROW, payee=PAYEE, token=TOKEN, deposit=5_000, salt=SALT), signer=HOT))


class TestTopUp:
    CID = "0x" + "5d" * 32

    def test_valid_top_up_returns_sender(self) -> None:
        """approve+topUp verifies and returns the recovered sender."""
        tx = _wire(top_up_calls(ESCROW, token=TOKEN, channel_id=self.CID, amount=700))
        got = check_top_up_transaction(tx, escrow=ESCROW, chain_id=CHAIN, token=TOKEN, channel_id=self.CID,
                                       additional_deposit=700)
        assert got == PAYER.address

    @pytest.mark.parametrize(("over", "match"), [
        (dict(additional_deposit=701), "adds 700"),
        (dict(channel_id="0x" + "77" * 32), "is for channel"),
        (dict(chain_id=1), "chain"),
    ])
    def test_mismatches(self, over: dict[str, object], match: str) -> None:
        """Amount, channel and chain must match the payload and offer."""
        tx = _wire(top_up_calls(ESCROW, token=TOKEN, channel_id=self.CID, amount=700))
        args: dict[str, object] = dict(escrow=ESCROW, chain_id=CHAIN, token=TOKEN, channel_id=self.CID,
                                       additional_deposit=700)
        args.update(over)
        with pytest.raises(VerificationFailed, match=match):
            check_top_up_transaction(tx, **args)  # type: ignore[arg-type]
