"""The MPP attribution memo: 32 bytes that bind a TIP-20 transfer to one challenge (pure).

Layout (mpp-protocol.md §3.4 step 3; mppx/pympp, not in the draft spec)::

    offset  size  field
    0       4     tag      keccak256("mpp")[0:4] = ef1ed712
    4       1     version  0x01
    5       10    server   keccak256(realm)[0:10]
    15      10    client   keccak256(client_id)[0:10], or 10 zero bytes (anonymous)
    25      7     nonce    keccak256(challenge_id)[0:7]

Known answer: realm ``api.example.com``, challenge ``challenge-123``, no client id ->
``0xef1ed712011ece072f76bd8b82350e00000000000000000000eb18f2d4402269``.

A server checks tag, version, server and nonce; the client part is the payer's
to choose and is ignored.  Without this memo a payment for challenge A could be
presented for challenge B (the vectors' ``unrelated_challenge_memo_rejected``).
"""

from __future__ import annotations

from functools import lru_cache

from ._keccak import keccak

MEMO_TAG = keccak(b"mpp")[:4]
MEMO_VERSION = 1
ANONYMOUS_CLIENT = bytes(10)


def attribution_memo(challenge_id: str, realm: str, client_id: str | None = None) -> bytes:
    """The 32-byte attribution memo for ``challenge_id`` issued by ``realm``.

    Args:
        challenge_id: the challenge's ``id`` exactly as received.
        realm: the challenge's ``realm`` (the server identity).
        client_id: optional payer identity; ``None``/empty = anonymous (10 zero bytes).
    """
    client = keccak(client_id.encode())[:10] if client_id else ANONYMOUS_CLIENT
    return (MEMO_TAG + bytes((MEMO_VERSION,)) + _server_part(realm) + client
            + keccak(challenge_id.encode())[:7])


@lru_cache(maxsize=256)  # a payer pays few realms, a server has one: skip a keccak per memo
def _server_part(realm: str) -> bytes:
    return keccak(realm.encode())[:10]


def is_mpp_memo(memo: bytes) -> bool:
    """True when ``memo`` is 32 bytes with the MPP tag and a supported version."""
    return len(memo) == 32 and memo[:4] == MEMO_TAG and memo[4] == MEMO_VERSION


def memo_matches(memo: bytes, challenge_id: str, realm: str) -> bool:
    """True when ``memo`` is an MPP memo for exactly this challenge id and realm."""
    return (is_mpp_memo(memo) and memo[5:15] == _server_part(realm)
            and memo[25:32] == keccak(challenge_id.encode())[:7])


def describe_mismatch(memo: bytes, challenge_id: str, realm: str) -> str:
    """Why ``memo`` does not bind this challenge, in words (for error messages)."""
    if len(memo) != 32:
        return f"memo is {len(memo)} bytes, expected 32"
    if not is_mpp_memo(memo):
        return f"memo 0x{memo.hex()} is not an MPP attribution memo"
    if memo[5:15] != keccak(realm.encode())[:10]:
        return f"memo 0x{memo.hex()} was made for another realm than {realm!r}"
    if memo[25:32] != keccak(challenge_id.encode())[:7]:
        return f"memo 0x{memo.hex()} was made for another challenge than {challenge_id!r}"
    return "memo matches"
