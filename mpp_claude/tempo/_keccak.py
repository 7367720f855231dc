"""Keccak-256 (Ethereum's hash, not NIST SHA3-256): one function, the fastest implementation here.

With ``safe-pysha3`` installed (a C extension; a Linux dependency of this package) a short input
hashes in ~1.6 us; otherwise ``eth_hash``'s pycryptodome backend is used (~8 us, mostly Python
wrapper work).  A paid request hashes a handful of times on each side (transaction, signing hash,
attribution memo), so this is on the hot path of both client and server.

The C implementation is checked once at import against the Keccak-256 of the empty string: a
module named ``sha3`` that hashed with SHA3 padding would give another digest and is not used.
"""

from __future__ import annotations

from collections.abc import Callable

#: Keccak-256 of b"" (the Ethereum empty-code hash).
_EMPTY = bytes.fromhex("c5d2460186f7233c927e7db2dcc703c0e500b653ca82273b7bfad8045d85a470")


def _c_keccak() -> Callable[[bytes], bytes] | None:
    try:
        from sha3 import keccak_256  # type: ignore[import-not-found,import-untyped,unused-ignore]
    except ImportError:
        return None

    def keccak(data: bytes | bytearray | memoryview) -> bytes:
        digest: bytes = keccak_256(data).digest()
        return digest

    return keccak if keccak(b"") == _EMPTY else None


def _fallback() -> Callable[[bytes], bytes]:
    from eth_hash.auto import keccak as eth_keccak

    return eth_keccak  # type: ignore[no-any-return,unused-ignore]


#: ``keccak(data) -> 32 bytes``.
keccak: Callable[[bytes], bytes] = _c_keccak() or _fallback()

#: Which implementation ``keccak`` is: "safe-pysha3" or "eth_hash".
BACKEND = "eth_hash" if keccak.__module__.startswith("eth_hash") else "safe-pysha3"
