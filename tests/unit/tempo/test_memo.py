"""The MPP attribution memo: known answer, binding to challenge and realm, client part ignored."""

from __future__ import annotations

from mpp_claude.tempo.memo import MEMO_TAG, attribution_memo, describe_mismatch, is_mpp_memo, memo_matches

KNOWN = bytes.fromhex("ef1ed712011ece072f76bd8b82350e00000000000000000000eb18f2d4402269")


def test_known_answer() -> None:
    """realm api.example.com, challenge challenge-123, anonymous -> the documented 32 bytes."""
    assert attribution_memo("challenge-123", "api.example.com") == KNOWN
    assert MEMO_TAG.hex() == "ef1ed712"


def test_binding() -> None:
    """A memo matches only its own challenge id and realm; the client id does not matter."""
    with_client = attribution_memo("challenge-123", "api.example.com", client_id="agent-7")
    assert with_client != KNOWN and with_client[15:25] != bytes(10)
    assert memo_matches(with_client, "challenge-123", "api.example.com")
    assert not memo_matches(KNOWN, "challenge-124", "api.example.com")
    assert not memo_matches(KNOWN, "challenge-123", "api.example.org")
    assert not memo_matches(b"\xab" * 32, "challenge-123", "api.example.com")
    assert is_mpp_memo(KNOWN) and not is_mpp_memo(KNOWN[:31]) and not is_mpp_memo(b"\x00" * 32)


def test_mismatch_descriptions() -> None:
    """Each kind of mismatch is described in words."""
    assert "another challenge" in describe_mismatch(KNOWN, "other", "api.example.com")
    assert "another realm" in describe_mismatch(KNOWN, "challenge-123", "other.example")
    assert "not an MPP attribution memo" in describe_mismatch(b"\x01" * 32, "c", "r")
    assert "31 bytes" in describe_mismatch(b"\x01" * 31, "c", "r")
    assert describe_mismatch(KNOWN, "challenge-123", "api.example.com") == "memo matches"
