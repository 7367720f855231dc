"""EIP-712 session vouchers: digest, signing, signature forms, recovery."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest
from eth_account import Account
from eth_account.messages import encode_typed_data
from hypothesis import given, settings
from hypothesis import strategies as st

from mpp_claude.errors import InvalidVoucherSignature
from mpp_claude.tempo.session import (
    Voucher,
    VoucherDomain,
    parse_voucher_signature,
    recover_voucher_signer,
    sign_voucher,
    to_bytes65,
    to_compact,
)
from mpp_claude.tempo.signer import SECP256K1_N, LocalSigner

KEY = bytes.fromhex("4c0883a69102937d6231471b5dbb6204fe5129617082792ae468d01a3f362318")
SIGNER = LocalSigner(KEY)
ESCROW = "0x9d136eEa063eDE5418A6BC7bEafF009bBb6CFa70"
CID = "0x6d0f4fdf1f2f6a1f6c1b0fbd6a7d5c2c0a8d3d7b1f6a9c1b3e2d4a5b6c7d8e9f"
DOMAIN = VoucherDomain(42431, ESCROW)


def _typed(domain: VoucherDomain, channel_id: str, amount: int) -> dict[str, Any]:
    amount_type = "uint128" if domain.protocol == "v1" else "uint96"
    return {
        "types": {
            "EIP712Domain": [{"name": "name", "type": "string"}, {"name": "version", "type": "string"},
                             {"name": "chainId", "type": "uint256"},
                             {"name": "verifyingContract", "type": "address"}],
            "Voucher": [{"name": "channelId", "type": "bytes32"},
                        {"name": "cumulativeAmount", "type": amount_type}],
        },
        "primaryType": "Voucher",
        "domain": {"name": "Tempo Stream Channel" if domain.protocol == "v1" else "TIP20 Channel Reserve",
                   "version": "1", "chainId": domain.chain_id, "verifyingContract": ESCROW},
        "message": {"channelId": bytes.fromhex(channel_id[2:]), "cumulativeAmount": amount},
    }


class TestDigest:
    @pytest.mark.parametrize("protocol", ["v1", "v2"])
    def test_signature_matches_eth_account_typed_data(self, protocol: str) -> None:
        """Our voucher signature equals eth-account's EIP-712 signature of the same typed data."""
        domain = VoucherDomain(4217, ESCROW, protocol)  # type: ignore[arg-type]
        ours = sign_voucher(SIGNER, domain, CID, 250_000)
        theirs = Account.sign_message(encode_typed_data(full_message=_typed(domain, CID, 250_000)), KEY)
        assert ours.signature == bytes(theirs.signature)

    def test_domain_binds_escrow_chain_and_protocol(self) -> None:
        """Changing the escrow, the chain id or the protocol changes the digest."""
        base = DOMAIN.digest(CID, 1)
        assert VoucherDomain(42431, "0x" + "11" * 20).digest(CID, 1) != base
        assert VoucherDomain(4217, ESCROW).digest(CID, 1) != base
        assert VoucherDomain(42431, ESCROW, "v2").digest(CID, 1) != base
        assert DOMAIN.digest(CID, 2) != base

    def test_escrow_address_is_normalised(self) -> None:
        """A mixed-case escrow gives the same domain as its lower-case form."""
        assert VoucherDomain(42431, ESCROW.lower()).separator == DOMAIN.separator
        assert DOMAIN.escrow == ESCROW.lower()

    @pytest.mark.parametrize(("args", "match"), [
        ((42431, "0x1234", "v1"), "escrow"),
        ((42431, ESCROW, "v3"), "protocol"),
        ((0, ESCROW, "v1"), "chain id"),
    ])
    def test_bad_domain_is_refused(self, args: tuple[Any, ...], match: str) -> None:
        """Malformed escrow, unknown protocol and zero chain id raise ValueError."""
        with pytest.raises(ValueError, match=match):
            VoucherDomain(*args)

    def test_amount_range_follows_the_protocol(self) -> None:
        """v1 carries uint128, v2 uint96; negative amounts and bad channel ids are refused."""
        DOMAIN.digest(CID, 2**128 - 1)
        with pytest.raises(ValueError):
            DOMAIN.digest(CID, 2**128)
        with pytest.raises(ValueError):
            VoucherDomain(42431, ESCROW, "v2").digest(CID, 2**96)
        with pytest.raises(ValueError):
            DOMAIN.digest(CID, -1)
        with pytest.raises(ValueError):
            DOMAIN.digest("0x1234", 1)


class TestSignatures:
    def test_sign_then_recover(self) -> None:
        """A signed voucher recovers to its signer, in 65-byte and compact form."""
        v = sign_voucher(SIGNER, DOMAIN, CID, 10)
        assert len(v.signature) == 65 and v.signature[64] in (27, 28)
        assert recover_voucher_signer(DOMAIN, v) == SIGNER.address
        compact = replace(v, signature=to_compact(v.signature))
        assert len(compact.signature) == 64
        assert recover_voucher_signer(DOMAIN, compact) == SIGNER.address
        assert to_bytes65(compact.signature) == v.signature

    def test_other_amount_or_channel_recovers_someone_else(self) -> None:
        """The signature is bound to the amount and the channel."""
        v = sign_voucher(SIGNER, DOMAIN, CID, 10)
        assert recover_voucher_signer(DOMAIN, replace(v, cumulative_amount=11)) != SIGNER.address
        other = "0x" + "00" * 31 + "01"
        assert recover_voucher_signer(DOMAIN, replace(v, channel_id=other)) != SIGNER.address

    def test_v_0_or_1_is_refused(self) -> None:
        """v must be 27/28 in the 65-byte form, exactly what the escrow contract accepts."""
        v = sign_voucher(SIGNER, DOMAIN, CID, 10)
        with pytest.raises(InvalidVoucherSignature, match="27 or 28"):
            parse_voucher_signature(v.signature[:64] + bytes((v.signature[64] - 27,)))

    def test_high_s_twin_is_refused(self) -> None:
        """The malleable (r, n - s) twin of a valid signature is refused."""
        v = sign_voucher(SIGNER, DOMAIN, CID, 10)
        s = int.from_bytes(v.signature[32:64], "big")
        twin = v.signature[:32] + (SECP256K1_N - s).to_bytes(32, "big") + bytes((55 - v.signature[64],))
        with pytest.raises(InvalidVoucherSignature, match="low-s"):
            recover_voucher_signer(DOMAIN, replace(v, signature=twin))

    @pytest.mark.parametrize("sig", [b"", b"\x01" * 63, b"\x01" * 66, b"\x00" * 64 + b"\x1b",
                                     b"\xff" * 32 + b"\x01" * 32 + b"\x1b"])
    def test_malformed_signatures_are_refused(self, sig: bytes) -> None:
        """Wrong lengths, r = 0 or r >= n raise InvalidVoucherSignature (a 402, never a 500)."""
        with pytest.raises(InvalidVoucherSignature):
            recover_voucher_signer(DOMAIN, Voucher(CID, 1, sig))

    def test_payload_form(self) -> None:
        """The credential payload carries a decimal string amount and lower-case hex."""
        v = sign_voucher(SIGNER, DOMAIN, CID.upper().replace("0X", "0x"), 250_000)
        payload = v.to_payload()
        assert payload["channelId"] == CID and payload["cumulativeAmount"] == "250000"
        assert payload["signature"] == "0x" + v.signature.hex()

    @settings(max_examples=50, deadline=None)
    @given(key=st.binary(min_size=32, max_size=32), cid=st.binary(min_size=32, max_size=32),
           amount=st.integers(min_value=0, max_value=2**128 - 1))
    def test_recovery_round_trip(self, key: bytes, cid: bytes, amount: int) -> None:
        """For any key, channel and amount, recovery returns the signer (both signature forms)."""
        if not 0 < int.from_bytes(key, "big") < SECP256K1_N:
            return
        signer = LocalSigner(key)
        v = sign_voucher(signer, DOMAIN, cid, amount)
        assert recover_voucher_signer(DOMAIN, v) == signer.address
        assert recover_voucher_signer(DOMAIN, replace(v, signature=to_compact(v.signature))) == signer.address
