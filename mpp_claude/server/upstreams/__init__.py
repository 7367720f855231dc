"""LLM upstreams behind one seam: :class:`Upstream` (``send`` a Messages body, get JSON or raw SSE).

* :class:`AnthropicUpstream` — the real Anthropic Messages API over a pooled httpx2 client.
* :class:`LocalUpstream` — an offline, deterministic imitation with fault injection,
  also served over HTTP by :func:`create_local_anthropic_app`.
"""

from __future__ import annotations

from .anthropic import AnthropicUpstream
from .base import ANTHROPIC_VERSION, FAULT_HEADER, Upstream, UpstreamResponse, error_body, error_type_for
from .local import LocalUpstream, create_local_anthropic_app

__all__ = [
    "ANTHROPIC_VERSION",
    "FAULT_HEADER",
    "AnthropicUpstream",
    "LocalUpstream",
    "Upstream",
    "UpstreamResponse",
    "create_local_anthropic_app",
    "error_body",
    "error_type_for",
]
