"""EIP-712 session vouchers: digest, signing, signature parsing and signer recovery (pure).

A voucher authorises a **cumulative** amount on one channel (draft-tempo-session-00,
"Voucher Signing Format"; shared/docs/mpp-protocol.md §4.4)::

    domainSeparator = keccak(abi.encode(
        keccak("EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)"),
        keccak(name), keccak("1"), chainId, escrow))
    structHash      = keccak(abi.encode(keccak("Voucher(bytes32 channelId,uint128 cumulativeAmount)"),
                                        channelId, cumulativeAmount))
    digest          = keccak(0x19 0x01 || domainSeparator || structHash)

``name`` is ``"Tempo Stream Channel"`` (protocol v1, the contract escrow) or
``"TIP20 Channel Reserve"`` (v2, the TIP-1034 precompile, where the amount is a
``uint96``).  The domain separator is computed once per ``VoucherDomain`` and the
rest is two keccaks over fixed-size buffers, so signing is one libsecp256k1 call
away from the digest.

Signatures on the wire are 65 bytes ``r || s || v`` with ``v`` 27/28, or 64-byte
EIP-2098 compact ``r || (yParity << 255 | s)``; ``s`` must be low (EIP-2).  The
accepted set is exactly what ``Escrow.sol`` accepts on chain, so a voucher this
module accepts can always be settled (``v`` 0/1 is refused for that reason).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from ...errors import InvalidVoucherSignature
from .._keccak import keccak
from ..signer import SECP256K1_HALF_N, SECP256K1_N, Signature, SignatureError, Signer, recover_address
from ._abi import address_word, channel_id_bytes

SessionProtocol = Literal["v1", "v2"]

DOMAIN_NAMES: dict[str, str] = {"v1": "Tempo Stream Channel", "v2": "TIP20 Channel Reserve"}
DOMAIN_VERSION = "1"
EIP712_DOMAIN_TYPEHASH = keccak(
    b"EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)")
VOUCHER_TYPEHASHES: dict[str, bytes] = {
    "v1": keccak(b"Voucher(bytes32 channelId,uint128 cumulativeAmount)"),
    "v2": keccak(b"Voucher(bytes32 channelId,uint96 cumulativeAmount)"),
}
AMOUNT_BITS: dict[str, int] = {"v1": 128, "v2": 96}

_YPARITY_BIT = 1 << 255


@dataclass(frozen=True, slots=True)
class VoucherDomain:
    """The EIP-712 domain vouchers of one escrow on one chain are signed under.

    Args:
        chain_id: the Tempo chain id (``methodDetails.chainId``).
        escrow: the escrow contract (``methodDetails.escrowContract``), the ``verifyingContract``.
        protocol: ``"v1"`` (contract escrow, default) or ``"v2"`` (TIP-1034 precompile).
    Raises:
        ValueError: malformed escrow address, chain id or protocol.
    """

    chain_id: int
    escrow: str
    protocol: SessionProtocol = "v1"
    separator: bytes = b""

    def __post_init__(self) -> None:
        if self.protocol not in DOMAIN_NAMES:
            raise ValueError(f"unknown session protocol {self.protocol!r}; expected 'v1' or 'v2'")
        if not 0 < self.chain_id < 2**256:
            raise ValueError(f"chain id out of range: {self.chain_id}")
        word = address_word(self.escrow, "escrow")
        object.__setattr__(self, "escrow", "0x" + word[12:].hex())
        separator = keccak(EIP712_DOMAIN_TYPEHASH + keccak(DOMAIN_NAMES[self.protocol].encode())
                           + keccak(DOMAIN_VERSION.encode()) + self.chain_id.to_bytes(32, "big") + word)
        object.__setattr__(self, "separator", separator)

    @property
    def max_amount(self) -> int:
        """The largest cumulative amount the voucher type can carry (2^128-1 or 2^96-1)."""
        return (1 << AMOUNT_BITS[self.protocol]) - 1

    def digest(self, channel_id: str | bytes, cumulative_amount: int) -> bytes:
        """The 32-byte EIP-712 digest of ``Voucher(channelId, cumulativeAmount)``.

        Raises:
            ValueError: malformed channel id, or an amount outside the voucher type's range.
        """
        if not 0 <= cumulative_amount <= self.max_amount:
            raise ValueError(f"cumulative amount out of range for {self.protocol}: {cumulative_amount}")
        struct_hash = keccak(VOUCHER_TYPEHASHES[self.protocol] + channel_id_bytes(channel_id)
                             + cumulative_amount.to_bytes(32, "big"))
        return keccak(b"\x19\x01" + self.separator + struct_hash)


@dataclass(frozen=True, slots=True)
class Voucher:
    """A signed voucher as carried in a credential payload (``channelId``, ``cumulativeAmount``,
    ``signature``).  ``channel_id`` is lower-case ``0x`` hex; ``signature`` the wire bytes."""

    channel_id: str
    cumulative_amount: int
    signature: bytes

    def to_payload(self) -> dict[str, str]:
        """The credential payload fields (decimal-string amount, lower-case hex)."""
        return {"channelId": self.channel_id, "cumulativeAmount": str(self.cumulative_amount),
                "signature": "0x" + self.signature.hex()}


def sign_voucher(signer: Signer, domain: VoucherDomain, channel_id: str | bytes, cumulative_amount: int
                 ) -> Voucher:
    """Sign a cumulative voucher.

    Warning: a voucher is money: anyone holding it can have the payee paid
    ``cumulative_amount`` minus what was already settled, up to the deposit.  Sign
    the total you owe, never a delta.

    Args:
        signer: the channel's authorized signer (or the payer when none was delegated).
        domain: the escrow's EIP-712 domain.
        channel_id: the channel (``0x`` hex or 32 bytes).
        cumulative_amount: total base units authorised so far on this channel.
    Returns:
        The voucher with a 65-byte ``r || s || v`` (v 27/28) signature.
    Raises:
        ValueError: malformed channel id or amount out of range.
    """
    cid = channel_id_bytes(channel_id)
    sig = signer.unsafe_sign_hash(domain.digest(cid, cumulative_amount))
    return Voucher("0x" + cid.hex(), cumulative_amount, sig.to_bytes65())


def parse_voucher_signature(signature: bytes) -> Signature:
    """Parse a voucher signature exactly as the escrow contract does.

    65 bytes ``r || s || v`` with ``v`` in {27, 28}, or 64 bytes EIP-2098.

    Raises:
        InvalidVoucherSignature: wrong length, ``v``, ``r``/``s`` range or a high ``s``.
    """
    if len(signature) == 65:
        v = signature[64]
        if v not in (27, 28):
            raise InvalidVoucherSignature(f"voucher signature v must be 27 or 28, got {v}")
        r = int.from_bytes(signature[:32], "big")
        s = int.from_bytes(signature[32:64], "big")
        parity = v - 27
    elif len(signature) == 64:
        r = int.from_bytes(signature[:32], "big")
        vs = int.from_bytes(signature[32:], "big")
        parity, s = vs >> 255, vs & (_YPARITY_BIT - 1)
    else:
        raise InvalidVoucherSignature(f"voucher signature must be 65 or 64 bytes, got {len(signature)}")
    if s > SECP256K1_HALF_N:
        raise InvalidVoucherSignature("voucher signature is not low-s (malleable twin refused)")
    if not (0 < r < SECP256K1_N and s > 0):
        raise InvalidVoucherSignature("voucher signature r/s out of range")
    return Signature(r, s, parity)


def recover_voucher_signer(domain: VoucherDomain, voucher: Voucher) -> str:
    """The lower-case address that signed ``voucher`` under ``domain``.

    A voucher signed for another channel, amount, escrow or chain recovers to some
    unrelated address; compare the result with the channel's expected signer.

    Raises:
        InvalidVoucherSignature: malformed or non-canonical signature, or no public key
            recovers from it.
        ValueError: malformed channel id or amount out of the voucher type's range.
    """
    sig = parse_voucher_signature(voucher.signature)
    try:
        return recover_address(domain.digest(voucher.channel_id, voucher.cumulative_amount), sig)
    except SignatureError as exc:
        raise InvalidVoucherSignature(f"voucher signature does not recover: {exc}") from None


def to_compact(signature: bytes) -> bytes:
    """The 64-byte EIP-2098 form of a valid voucher signature (either form in)."""
    sig = parse_voucher_signature(signature)
    return sig.r.to_bytes(32, "big") + ((sig.y_parity << 255) | sig.s).to_bytes(32, "big")


def to_bytes65(signature: bytes) -> bytes:
    """The 65-byte ``r || s || v`` form (v 27/28) of a valid voucher signature (either form in).

    Settle and close with this form: every v1 escrow accepts it.
    """
    return parse_voucher_signature(signature).to_bytes65()
