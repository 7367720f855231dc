"""mpp_claude: pay per request for LLM calls over MPP (HTTP 402 Payment) on the Tempo chain."""

from __future__ import annotations

__version__ = "0.1.0"
