"""secp256k1 keys behind an interface: the only module that sees private-key bytes.

``Signer`` is the protocol the rest of the package signs through (an address
and ``unsafe_sign_hash``); ``LocalSigner`` keeps a key in memory.  A hardware
or remote signer only has to provide the same two members.

Signatures are always low-s (EIP-2; Tempo refuses high-s) and carry the
y-parity (0/1).  ``recover_address`` is the inverse used by verifiers.

Speed: with ``coincurve`` (libsecp256k1) installed, signing takes ~0.03 ms and
recovery ~0.05 ms; without it the pure-Python ``eth_keys`` backend is used
(~4 ms / ~9 ms).  Both give identical, deterministic (RFC 6979) signatures.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from ._keccak import keccak

try:  # libsecp256k1 bindings: ~100x faster than the pure-Python fallback
    import coincurve as _cc
except ImportError:  # pragma: no cover - exercised only where coincurve is missing
    _cc = None  # type: ignore[assignment]

#: Which secp256k1 implementation signs and recovers: "coincurve" or "eth_keys".
BACKEND = "eth_keys" if _cc is None else "coincurve"
SECP256K1_N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
SECP256K1_HALF_N = SECP256K1_N // 2
_V = (b"\x1b", b"\x1c")  # the wire's v byte: 27 + y-parity


class SignatureError(ValueError):
    """A signature is malformed, not low-s, or does not recover to a public key."""


@dataclass(frozen=True, slots=True)
class Signature:
    """A secp256k1 ECDSA signature: ``r``, ``s`` (low-s) and ``y_parity`` (0 or 1)."""

    r: int
    s: int
    y_parity: int

    def __post_init__(self) -> None:
        if not 0 < self.r < SECP256K1_N:
            raise SignatureError("signature r out of range")
        if not 0 < self.s <= SECP256K1_HALF_N:
            raise SignatureError("signature s is zero or not low-s (EIP-2)")
        if self.y_parity not in (0, 1):
            raise SignatureError(f"signature y-parity must be 0 or 1, got {self.y_parity}")

    def to_bytes65(self) -> bytes:
        """``r || s || v`` with ``v = 27 + y_parity`` (the Tempo/alloy wire form)."""
        return self.r.to_bytes(32, "big") + self.s.to_bytes(32, "big") + bytes((27 + self.y_parity,))

    @classmethod
    def from_bytes65(cls, data: bytes) -> Signature:
        """Parse ``r || s || v`` (``v`` in 0, 1, 27, 28).

        Raises:
            SignatureError: wrong length, ``v`` or range.
        """
        if len(data) != 65:
            raise SignatureError(f"a secp256k1 signature is 65 bytes, got {len(data)}")
        v = data[64]
        if v in (27, 28):
            v -= 27
        return cls(int.from_bytes(data[:32], "big"), int.from_bytes(data[32:64], "big"), v)


def address_from_public_key(public_key64: bytes) -> str:
    """Lower-case ``0x`` address of a 64-byte uncompressed public key (without the 0x04 prefix)."""
    return "0x" + keccak(public_key64)[-20:].hex()


def recover_address(digest: bytes, signature: Signature) -> str:
    """The lower-case ``0x`` address whose key produced ``signature`` over the 32-byte ``digest``.

    Raises:
        SignatureError: the signature does not recover to a valid public key.
    """
    if len(digest) != 32:
        raise ValueError(f"digest must be 32 bytes, got {len(digest)}")
    rs = signature.r.to_bytes(32, "big") + signature.s.to_bytes(32, "big")
    if _cc is not None:
        try:
            pub = _cc.PublicKey.from_signature_and_message(rs + bytes((signature.y_parity,)), digest,
                                                           hasher=None)
        except Exception as exc:  # coincurve raises bare Exception/ValueError on invalid points
            raise SignatureError("signature does not recover to a public key") from exc
        return address_from_public_key(pub.format(compressed=False)[1:])
    from eth_keys.datatypes import Signature as KeysSignature
    from eth_keys.exceptions import BadSignature

    try:
        sig = KeysSignature(vrs=(signature.y_parity, signature.r, signature.s))
        pub_k = sig.recover_public_key_from_msg_hash(digest)
    except (BadSignature, ValueError) as exc:
        raise SignatureError("signature does not recover to a public key") from exc
    return address_from_public_key(pub_k.to_bytes())


@runtime_checkable
class Signer(Protocol):
    """Something that can sign 32-byte digests for one secp256k1 address."""

    @property
    def address(self) -> str:
        """The signer's lower-case ``0x`` address."""
        ...

    def unsafe_sign_hash(self, digest: bytes) -> Signature:
        """Sign a 32-byte digest.

        Warning: only sign digests you built yourself (a transaction's or a
        typed message's signing hash); a digest from someone else can be any
        transaction of yours.
        """
        ...


class LocalSigner:
    """A ``Signer`` holding a private key in memory.

    The key never appears in ``repr``/``str``, in exceptions or in pickles.

    Args:
        private_key: 32 raw bytes, or hex with or without ``0x``.
    Raises:
        ValueError: the key is not a valid secp256k1 private key (the message
            does not contain it).
    """

    __slots__ = ("_address", "_key")

    def __init__(self, private_key: bytes | str) -> None:
        raw = _key_bytes(private_key)
        if not 0 < int.from_bytes(raw, "big") < SECP256K1_N:
            raise ValueError("private key out of the secp256k1 range")
        self._key: Any
        if _cc is not None:
            self._key = _cc.PrivateKey(raw)
            pub = self._key.public_key.format(compressed=False)[1:]
        else:  # pragma: no cover
            from eth_keys.datatypes import PrivateKey

            self._key = PrivateKey(raw)
            pub = self._key.public_key.to_bytes()
        self._address = address_from_public_key(pub)

    @classmethod
    def from_account(cls, account: Any) -> LocalSigner:
        """From an ``eth_account`` ``LocalAccount`` (uses its ``.key``)."""
        return cls(bytes(account.key))

    @property
    def address(self) -> str:
        return self._address

    def unsafe_sign_hash(self, digest: bytes) -> Signature:
        """Sign a 32-byte digest (RFC 6979, low-s).  See ``Signer.unsafe_sign_hash``."""
        if len(digest) != 32:
            raise ValueError(f"digest must be 32 bytes, got {len(digest)}")
        if _cc is not None:
            sig = self._key.sign_recoverable(digest, hasher=None)
            r, s, y = int.from_bytes(sig[:32], "big"), int.from_bytes(sig[32:64], "big"), sig[64]
        else:  # pragma: no cover
            ks = self._key.sign_msg_hash(digest)
            r, s, y = ks.r, ks.s, ks.v
        if s > SECP256K1_HALF_N:  # libsecp256k1 already normalises; the fallback may not
            s, y = SECP256K1_N - s, y ^ 1
        return Signature(r, s, y)

    def sign_hash65(self, digest: bytes) -> bytes:
        """``unsafe_sign_hash(digest).to_bytes65()`` (``r || s || 27 + y``) without the int round
        trip: libsecp256k1's recoverable signature is already low-s.  Same warning."""
        if _cc is None or len(digest) != 32:  # pragma: no cover - the fallback, or the error
            return self.unsafe_sign_hash(digest).to_bytes65()
        sig: bytes = self._key.sign_recoverable(digest, hasher=None)
        if int.from_bytes(sig[32:64], "big") > SECP256K1_HALF_N:  # pragma: no cover - never from libsecp256k1
            return self.unsafe_sign_hash(digest).to_bytes65()
        return sig[:64] + _V[sig[64]]

    def __repr__(self) -> str:
        return f"LocalSigner(address={self._address})"

    __str__ = __repr__

    def __reduce__(self) -> Any:
        raise TypeError("LocalSigner holds a private key and cannot be pickled")


def _key_bytes(private_key: bytes | str) -> bytes:
    if isinstance(private_key, (bytes, bytearray)):
        raw = bytes(private_key)
    elif isinstance(private_key, str):
        text = private_key[2:] if private_key[:2] in ("0x", "0X") else private_key
        try:
            raw = bytes.fromhex(text)
        except ValueError:
            raise ValueError("private key is not valid hex") from None
    else:
        raise TypeError(f"private key must be bytes or hex str, got {type(private_key).__name__}")
    if len(raw) != 32:
        raise ValueError(f"private key must be 32 bytes, got {len(raw)}")
    return raw
