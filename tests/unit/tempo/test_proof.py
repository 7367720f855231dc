"""Zero-amount proofs: EIP-712 typed data (v2 vector, v3 mppx known answer), signing and verifying."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from eth_account import Account
from eth_account.messages import encode_typed_data

from mpp_claude.errors import VerificationFailed
from mpp_claude.tempo import charge, tip20
from mpp_claude.tempo.proof import proof_digest, sign_proof, typed_data, verify_proof
from mpp_claude.tempo.signer import LocalSigner
from mpp_claude.tempo.verify import ChargeContext

VECTORS = Path(__file__).resolve().parents[2] / "vectors"
ZERO = {"amount": "0", "currency": tip20.PATH_USD, "recipient": "0x" + "aa" * 20,
        "methodDetails": {"chainId": 42431}}
CTX = ChargeContext.from_values("proof-ch", "api.example.com", ZERO)
SIGNER = LocalSigner("0x" + "44" * 32)
SOURCE = charge.did_pkh(42431, SIGNER.address)


def test_v2_typed_data_matches_the_vector() -> None:
    """tempo-proof.json pins domain MPP v2 with Proof(challengeId, realm)."""
    doc = json.loads((VECTORS / "tempo-proof.json").read_text())
    scenario = doc["scenarios"][0]
    inp = scenario["input"]
    assert typed_data(2, chain_id=inp["chainId"], challenge_id=inp["challengeId"],
                      realm=inp["realm"]) == scenario["expected"]["value"]


def test_v3_known_answer_and_eth_account_agree() -> None:
    """The mppx v3 digest known answer; v2 and v3 digests equal eth-account's EIP-712 hashing."""
    account = "0x1a642f0E3c3aF545E7AcBD38b07251B3990914F1"
    digest = proof_digest(3, chain_id=42431, challenge_id="kM9xPqWvT2nJrHsY4aDfEb", realm="api.example.com",
                          account=account)
    assert digest.hex() == "3860a700a55e02ad3c2dc047e92489feceecbdb0a801d948e1d9f0b61ea9bc3f"
    for version in (2, 3):
        data = typed_data(version, chain_id=7, challenge_id="c", realm="r", account=account)
        full = {**data, "types": {**data["types"], "EIP712Domain": [
            {"name": "name", "type": "string"}, {"name": "version", "type": "string"},
            {"name": "chainId", "type": "uint256"}]}}
        signable = encode_typed_data(full_message=full)
        expected = Account.sign_message(signable, "0x" + "44" * 32).message_hash
        assert proof_digest(version, chain_id=7, challenge_id="c", realm="r", account=account) == expected


def test_sign_and_verify() -> None:
    """Our v3 proof verifies; a v2 proof is accepted too; other realms, sources, amounts are refused."""
    payload = sign_proof(SIGNER, chain_id=42431, challenge_id="proof-ch", realm="api.example.com")
    assert payload["type"] == "proof"
    assert verify_proof(payload["signature"], SOURCE, CTX) == SIGNER.address
    v2 = sign_proof(SIGNER, chain_id=42431, challenge_id="proof-ch", realm="api.example.com", version=2)
    assert verify_proof(v2["signature"], SOURCE, CTX) == SIGNER.address
    with pytest.raises(VerificationFailed, match="does not recover"):
        verify_proof(v2["signature"], SOURCE, CTX, versions=(3,))
    other_realm = ChargeContext.from_values("proof-ch", "evil.example", ZERO)
    with pytest.raises(VerificationFailed, match="does not recover"):
        verify_proof(payload["signature"], SOURCE, other_realm)
    with pytest.raises(VerificationFailed, match="does not recover"):
        verify_proof(payload["signature"], charge.did_pkh(42431, "0x" + "01" * 20), CTX)
    paid = ChargeContext.from_values("proof-ch", "api.example.com", {**ZERO, "amount": "1"})
    with pytest.raises(VerificationFailed, match="only pays zero-amount"):
        verify_proof(payload["signature"], SOURCE, paid)
    for bad in ("0x1234", "nothex", None, "0x" + "zz" * 65):
        with pytest.raises(VerificationFailed, match="65-byte"):
            verify_proof(bad, SOURCE, CTX)


def test_typed_data_arguments() -> None:
    """Unknown versions and v3 without an account are caller errors."""
    with pytest.raises(ValueError, match="unsupported proof version"):
        typed_data(1, chain_id=1, challenge_id="c", realm="r")
    with pytest.raises(ValueError, match="account"):
        typed_data(3, chain_id=1, challenge_id="c", realm="r")
