"""Zero-amount ``proof`` credentials: an EIP-712 signature over the challenge (pure).

mpp-protocol.md §3.6 "Proof".  The typed data changed across versions:

=========  =====================================  ==============================================
version    domain                                  ``Proof`` fields
=========  =====================================  ==============================================
1 (spec)   ``{name: "MPP", version: "1", chainId}``  ``challengeId``
2 (vector) ``{name: "MPP", version: "2", chainId}``  ``challengeId, realm``
3 (mppx)   ``{name: "MPP", version: "3", chainId}``  ``account (address), challengeId, realm``
=========  =====================================  ==============================================

We sign version 3: it is what current mppx servers and clients (>= 0.8) produce and
verify, and it binds the payer's account too.  Servers accept 3 and 2 by default
(``DEFAULT_PROOF_VERSIONS``); the conformance vector ``tempo-proof.json`` pins 2 and
is answered by ``typed_data(2, ...)``.  Version 1 is neither signed nor accepted: it
does not bind the realm.

Known answer (v3): account ``0x1a642f0E3c3aF545E7AcBD38b07251B3990914F1``, chain 42431,
challenge ``kM9xPqWvT2nJrHsY4aDfEb``, realm ``api.example.com`` -> digest
``0x3860a700a55e02ad3c2dc047e92489feceecbdb0a801d948e1d9f0b61ea9bc3f``.
"""

from __future__ import annotations

from typing import Any

from ..errors import VerificationFailed
from ._keccak import keccak
from .signer import Signature, SignatureError, Signer, recover_address
from .verify import ChargeContext, source_address

SIGN_VERSION = 3
DEFAULT_PROOF_VERSIONS = (3, 2)
_DOMAIN_TYPE = keccak(b"EIP712Domain(string name,string version,uint256 chainId)")
_PROOF_TYPES = {
    2: [("challengeId", "string"), ("realm", "string")],
    3: [("account", "address"), ("challengeId", "string"), ("realm", "string")],
}


def _type_string(version: int) -> bytes:
    fields = ",".join(f"{kind} {name}" for name, kind in _PROOF_TYPES[version])
    return f"Proof({fields})".encode()


def typed_data(version: int, *, chain_id: int, challenge_id: str, realm: str,
               account: str | None = None) -> dict[str, Any]:
    """The EIP-712 typed data (``domain``, ``types``, ``primaryType``, ``message``) of a proof.

    Raises:
        ValueError: unknown version, or version 3 without ``account``.
    """
    if version not in _PROOF_TYPES:
        raise ValueError(f"unsupported proof version {version}; known: {sorted(_PROOF_TYPES)}")
    message: dict[str, Any] = {"challengeId": challenge_id, "realm": realm}
    if version == 3:
        if account is None:
            raise ValueError("a version-3 proof binds the account: pass account=")
        message = {"account": account, **message}
    return {"domain": {"name": "MPP", "version": str(version), "chainId": chain_id},
            "types": {"Proof": [{"name": n, "type": t} for n, t in _PROOF_TYPES[version]]},
            "primaryType": "Proof", "message": message}


def _word(kind: str, value: Any) -> bytes:
    if kind == "string":
        return keccak(str(value).encode())
    if kind == "address":
        raw = bytes.fromhex(str(value)[2:])
        if len(raw) != 20:
            raise ValueError(f"not an address: {value!r}")
        return raw.rjust(32, b"\0")
    raise ValueError(f"unsupported EIP-712 type {kind}")  # pragma: no cover


def proof_digest(version: int, *, chain_id: int, challenge_id: str, realm: str,
                 account: str | None = None) -> bytes:
    """``keccak(0x1901 || domainSeparator || hashStruct(Proof))`` for the given version."""
    data = typed_data(version, chain_id=chain_id, challenge_id=challenge_id, realm=realm, account=account)
    domain = keccak(_DOMAIN_TYPE + keccak(b"MPP") + keccak(str(version).encode())
                    + chain_id.to_bytes(32, "big"))
    struct = keccak(keccak(_type_string(version))
                    + b"".join(_word(t, data["message"][n]) for n, t in _PROOF_TYPES[version]))
    return keccak(b"\x19\x01" + domain + struct)


def sign_proof(signer: Signer, *, chain_id: int, challenge_id: str, realm: str,
               version: int = SIGN_VERSION) -> dict[str, str]:
    """The credential ``payload`` ``{"type": "proof", "signature": "0x…"}`` for a zero-amount charge."""
    digest = proof_digest(version, chain_id=chain_id, challenge_id=challenge_id, realm=realm,
                          account=signer.address)
    return {"type": "proof", "signature": "0x" + signer.unsafe_sign_hash(digest).to_bytes65().hex()}


def verify_proof(signature_hex: Any, source: Any, ctx: ChargeContext,
                 versions: tuple[int, ...] = DEFAULT_PROOF_VERSIONS) -> str:
    """Check a proof credential; returns the proving address (from ``source``).

    Raises:
        VerificationFailed: non-zero amount, bad ``source``, malformed signature, or a
            signature that does not recover to the source address under any accepted version.
    """
    if ctx.request.amount != 0:
        raise VerificationFailed("a proof credential only pays zero-amount charges")
    account = source_address(source, ctx.request.chain_id)
    try:
        if not isinstance(signature_hex, str) or signature_hex[:2] != "0x":
            raise SignatureError("not 0x-hex")
        sig = Signature.from_bytes65(bytes.fromhex(signature_hex[2:]))
    except (SignatureError, ValueError):
        raise VerificationFailed("payload.signature must be a 0x-hex 65-byte secp256k1 signature") from None
    for version in versions:
        digest = proof_digest(version, chain_id=ctx.request.chain_id, challenge_id=ctx.challenge_id,
                              realm=ctx.realm, account=account)
        try:
            if recover_address(digest, sig) == account:
                return account
        except SignatureError:
            continue
    raise VerificationFailed(f"proof signature does not recover to the source address {account}")
