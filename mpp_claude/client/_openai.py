"""One-line constructors: an ``openai.OpenAI`` / ``AsyncOpenAI`` that pays through MPP.

The proxy's origin is added to the allowlist (agent-payments-ux.md §4.1 item 3), and a
placeholder ``api_key`` is set: the paid retry replaces ``Authorization: Bearer …`` with the
payment credential, so no real OpenAI or Anthropic key is needed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._httpx2 import AsyncMppClient, MppClient
from .policy import normalize_origin
from .wallet import Wallet

if TYPE_CHECKING:
    import openai

_CLIENT_KW = ("rpc_url", "rpc", "policy", "ledger", "approve", "approve_above", "hooks", "dry_run",
              "allowed_origins", "transport", "payer")


def _origin(base_url: str) -> str:
    from urllib.parse import urlsplit

    parts = urlsplit(base_url)
    return normalize_origin(f"{parts.scheme}://{parts.netloc}")


def openai_client(base_url: str, wallet: Wallet, **kwargs: Any) -> openai.OpenAI:
    """An ``openai.OpenAI`` whose requests to ``base_url`` are paid by ``wallet``.

    Args:
        base_url: the paid OpenAI-compatible endpoint, e.g. ``https://proxy.example/v1``.
        wallet: the paying wallet.
        **kwargs: :class:`MppClient` options (``rpc_url``, ``policy``, ``ledger``, ``approve``,
            ``hooks``, ``allowed_origins`` …) and ``openai.OpenAI`` options (``max_retries``,
            ``timeout``, ``api_key`` …).
    Raises:
        ConfigError: as :class:`MppClient`.
    """
    import openai

    ckw = {k: kwargs.pop(k) for k in _CLIENT_KW if k in kwargs}
    ckw["allowed_origins"] = [*ckw.get("allowed_origins", ()), _origin(base_url)]
    http = MppClient(wallet, **ckw)
    kwargs.setdefault("api_key", "mpp-paid")
    return openai.OpenAI(base_url=base_url, http_client=http, **kwargs)


def async_openai_client(base_url: str, wallet: Wallet, **kwargs: Any) -> openai.AsyncOpenAI:
    """The async twin of :func:`openai_client` (an ``openai.AsyncOpenAI``)."""
    import openai

    ckw = {k: kwargs.pop(k) for k in _CLIENT_KW if k in kwargs}
    ckw["allowed_origins"] = [*ckw.get("allowed_origins", ()), _origin(base_url)]
    http = AsyncMppClient(wallet, **ckw)
    kwargs.setdefault("api_key", "mpp-paid")
    return openai.AsyncOpenAI(base_url=base_url, http_client=http, **kwargs)
