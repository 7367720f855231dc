"""mpp_claude: pay per request for LLM calls over MPP (HTTP 402 Payment) on the Tempo chain."""

from __future__ import annotations

__version__ = "0.1.0"

# The paying client, imported on first use so ``import mpp_claude`` stays cheap.
_CLIENT_EXPORTS = frozenset({"openai_client", "async_openai_client", "MppClient", "AsyncMppClient", "Wallet",
                             "Policy", "receipt_of", "spending_limit"})


def __getattr__(name: str) -> object:
    if name in _CLIENT_EXPORTS:
        from . import client

        return getattr(client, name)
    raise AttributeError(f"module 'mpp_claude' has no attribute {name!r}")
