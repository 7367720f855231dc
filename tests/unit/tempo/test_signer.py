"""LocalSigner: deterministic low-s signatures, recovery, and a key that never leaks."""

from __future__ import annotations

import pickle

import pytest
from eth_account import Account
from eth_hash.auto import keccak

from mpp_claude.tempo.signer import (
    SECP256K1_HALF_N,
    SECP256K1_N,
    LocalSigner,
    Signature,
    SignatureError,
    Signer,
    recover_address,
)

KEY = "0x" + "4c" * 32


def test_address_and_signature_match_eth_account() -> None:
    """Address and (r, s, v) equal eth-account's for the same key and digest."""
    signer = LocalSigner(KEY)
    acct = Account.from_key(KEY)
    digest = keccak(b"tempo")
    sig = signer.unsafe_sign_hash(digest)
    theirs = acct.unsafe_sign_hash(digest)
    assert signer.address == acct.address.lower()
    assert (sig.r, sig.s, 27 + sig.y_parity) == (theirs.r, theirs.s, theirs.v)
    assert sig.to_bytes65() == bytes(theirs.signature)
    assert isinstance(signer, Signer)


def test_signatures_are_low_s_and_recover() -> None:
    """Over many digests every signature is low-s and recovers to the signer."""
    signer = LocalSigner(KEY)
    for i in range(50):
        digest = keccak(i.to_bytes(4, "big"))
        sig = signer.unsafe_sign_hash(digest)
        assert sig.s <= SECP256K1_HALF_N
        assert recover_address(digest, sig) == signer.address


def test_key_never_leaks() -> None:
    """repr/str show only the address; pickling refuses; a bad key's error does not echo it."""
    signer = LocalSigner(bytes.fromhex("4c" * 32))
    assert "4c4c" not in repr(signer) and "4c4c" not in str(signer)
    assert signer.address in repr(signer)
    with pytest.raises(TypeError, match="cannot be pickled"):
        pickle.dumps(signer)
    with pytest.raises(ValueError) as info:
        LocalSigner("0xzz" + "ab" * 31)
    assert "ab" * 31 not in str(info.value)
    with pytest.raises(ValueError, match="32 bytes"):
        LocalSigner("0x" + "ab" * 31)
    with pytest.raises(ValueError, match="range"):
        LocalSigner(b"\x00" * 32)
    with pytest.raises(TypeError):
        LocalSigner(123)  # type: ignore[arg-type]
    assert not hasattr(signer, "__dict__")


def test_from_account() -> None:
    """An eth_account LocalAccount converts to the same address."""
    acct = Account.create()
    assert LocalSigner.from_account(acct).address == acct.address.lower()


def test_signature_validation() -> None:
    """High-s, zero r, bad parity and wrong length are refused."""
    with pytest.raises(SignatureError, match="low-s"):
        Signature(1, SECP256K1_HALF_N + 1, 0)
    with pytest.raises(SignatureError, match="r out of range"):
        Signature(0, 1, 0)
    with pytest.raises(SignatureError, match="r out of range"):
        Signature(SECP256K1_N, 1, 0)
    with pytest.raises(SignatureError, match="y-parity"):
        Signature(1, 1, 2)
    with pytest.raises(SignatureError, match="65 bytes"):
        Signature.from_bytes65(b"\x01" * 64)
    sig = Signature(5, 7, 1)
    assert Signature.from_bytes65(sig.to_bytes65()) == sig
    assert Signature.from_bytes65(sig.to_bytes65()[:64] + b"\x01") == sig


def test_unsafe_sign_hash_needs_32_bytes() -> None:
    """Only 32-byte digests are signed; recovery also refuses other lengths."""
    signer = LocalSigner(KEY)
    with pytest.raises(ValueError, match="32 bytes"):
        signer.unsafe_sign_hash(b"short")
    with pytest.raises(ValueError, match="32 bytes"):
        recover_address(b"short", Signature(5, 7, 1))


def test_pure_python_fallback_gives_the_same_signatures() -> None:
    """Without coincurve, the eth_keys backend signs and recovers identically (checked in a subprocess)."""
    import subprocess
    import sys

    code = (
        "import sys; sys.modules['coincurve'] = None\n"
        "from eth_hash.auto import keccak\n"
        "from mpp_claude.tempo import signer\n"
        "assert signer.BACKEND == 'eth_keys', signer.BACKEND\n"
        "s = signer.LocalSigner('0x' + '4c' * 32)\n"
        "d = keccak(b'tempo')\n"
        "sig = s.unsafe_sign_hash(d)\n"
        "assert signer.recover_address(d, sig) == s.address\n"
        "print(s.address, sig.to_bytes65().hex())\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    signer = LocalSigner(KEY)
    digest = keccak(b"tempo")
    assert out.stdout.split() == [signer.address, signer.unsafe_sign_hash(digest).to_bytes65().hex()]


def test_sign_hash65_is_the_wire_form_of_unsafe_sign_hash() -> None:
    """The fast path the payer signs with gives the bytes ``unsafe_sign_hash(d).to_bytes65()`` gives."""
    signer = LocalSigner("0x" + "42" * 32)
    for i in range(200):
        digest = keccak(i.to_bytes(4, "big"))
        assert signer.sign_hash65(digest) == signer.unsafe_sign_hash(digest).to_bytes65()
