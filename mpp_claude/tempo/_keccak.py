"""keccak-256 (Ethereum's hash) in one call.

``eth_hash.auto.keccak`` dispatches through a backend object and type checks on every call
(~13 us for a transaction); calling pycryptodome, the backend it picks here, directly costs
~7 us.  A payment hashes three times (memo, signing hash, transaction hash).  Without
pycryptodome, eth_hash's choice is used.
"""

from __future__ import annotations

from collections.abc import Callable

__all__ = ["keccak"]

keccak: Callable[[bytes], bytes]

try:
    from Crypto.Hash import keccak as _pycryptodome
except ImportError:  # pragma: no cover - eth_hash picks another backend
    from eth_hash.auto import keccak as _eth_hash

    def keccak(data: bytes) -> bytes:
        """keccak-256 of ``data``."""
        return bytes(_eth_hash(data))
else:
    _new = _pycryptodome.new

    def keccak(data: bytes) -> bytes:
        """keccak-256 of ``data``."""
        return _new(data=data, digest_bits=256).digest()
