"""Anthropic errors -> OpenAI errors (spec §4).

The OpenAI SDKs choose the exception class from the HTTP status alone and retry 408/409/429/>=500
unless told ``x-should-retry: false``, so the status mapping is the contract: 529 overloaded ->
503, billing 402 stays 402 (never 429, which would be retried), a spend-cap 429 without
``retry-after`` gets ``x-should-retry: false``.  ``code`` carries the Anthropic error type.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from mpp_claude.errors import ConversionError
from mpp_claude.protocol.encoding import loads_bounded

__all__ = ["STATUS_FOR_TYPE", "anthropic_error_to_openai", "error_frame", "stream_error_to_openai"]

#: Anthropic error type -> (proxy status, OpenAI type).
STATUS_FOR_TYPE: Mapping[str, tuple[int, str]] = {
    "invalid_request_error": (400, "invalid_request_error"),
    "authentication_error": (401, "authentication_error"),
    "billing_error": (402, "insufficient_quota"),
    "permission_error": (403, "permission_error"),
    "not_found_error": (404, "invalid_request_error"),
    "conflict_error": (409, "invalid_request_error"),
    "request_too_large": (413, "invalid_request_error"),
    "rate_limit_error": (429, "rate_limit_error"),
    "api_error": (500, "server_error"),
    "timeout_error": (504, "server_error"),
    "overloaded_error": (503, "server_error"),
}
_TYPE_FOR_STATUS = {400: "invalid_request_error", 401: "authentication_error", 402: "billing_error",
                    403: "permission_error", 404: "not_found_error", 409: "conflict_error",
                    413: "request_too_large", 429: "rate_limit_error", 500: "api_error", 504: "timeout_error",
                    529: "overloaded_error"}
_RATELIMIT = {"anthropic-ratelimit-requests-limit": "x-ratelimit-limit-requests",
              "anthropic-ratelimit-requests-remaining": "x-ratelimit-remaining-requests",
              "anthropic-ratelimit-tokens-limit": "x-ratelimit-limit-tokens",
              "anthropic-ratelimit-tokens-remaining": "x-ratelimit-remaining-tokens"}


def _lower(headers: Mapping[str, str] | Any) -> dict[str, str]:
    if headers is None:
        return {}
    items = headers.items() if hasattr(headers, "items") else headers
    return {str(pair[0]).lower(): str(pair[1]) for pair in items}


def _decode(body: Any) -> Mapping[str, Any] | None:
    if isinstance(body, Mapping):
        return body
    if isinstance(body, (bytes, bytearray, memoryview)):
        body = bytes(body).decode("utf-8", "replace")
    if not isinstance(body, str) or not body.strip():
        return None
    try:
        value = loads_bounded(body)
    except ValueError:
        return None
    return value if isinstance(value, Mapping) else None


def _from_inner(status: int | None, inner: Mapping[str, Any], request_id: str | None) -> ConversionError:
    raw_type, raw_message = inner.get("type"), inner.get("message")
    etype = raw_type if isinstance(raw_type, str) else None
    message = raw_message if isinstance(raw_message, str) else "upstream error"
    if etype is None and status is not None:
        etype = _TYPE_FOR_STATUS.get(status, "api_error")
    etype = etype or "api_error"
    if etype in STATUS_FOR_TYPE:
        out_status, out_type = STATUS_FOR_TYPE[etype]
        if status == 529:
            out_status = 503
    else:
        out_status = status if status is not None and 400 <= status < 600 and status != 529 else 500
        out_type = "server_error" if out_status >= 500 else "invalid_request_error"
    code = etype
    if etype == "invalid_request_error" and message.lower().startswith("prompt is too long"):
        code = "context_length_exceeded"
    elif etype == "not_found_error" and "model" in message.lower():
        code = "model_not_found"
    if request_id:
        message = f"{message} (request_id: {request_id})"
    return ConversionError(message, status=out_status, type=out_type, param=None, code=code)


def anthropic_error_to_openai(status: int, body: Any, headers: Mapping[str, str] | Any = None
                              ) -> ConversionError:
    """Translate an upstream error response.

    Args:
        status: the upstream HTTP status (>= 400).
        body: the response body (bytes, text or decoded JSON).
        headers: the upstream response headers (any mapping or list of pairs).
    Returns:
        a ``ConversionError`` whose ``status``, ``to_openai()`` and ``headers`` (``retry-after``,
        ``x-request-id``, ``x-should-retry``, ``x-ratelimit-*``) are what the client must get.
        A body that is not Anthropic JSON (an HTML page from a CDN) becomes 502
        ``upstream_invalid_response``.
    """
    h = _lower(headers)
    decoded = _decode(body)
    inner = decoded.get("error") if decoded is not None else None
    request_id = h.get("request-id")
    if decoded is not None and isinstance(decoded.get("request_id"), str):
        request_id = request_id or decoded["request_id"]
    if not isinstance(inner, Mapping):
        err = ConversionError(f"upstream answered HTTP {status} with a body that is not an Anthropic error",
                              status=502, type="server_error", code="upstream_invalid_response")
    else:
        err = _from_inner(status, inner, request_id)
    if request_id:
        err.headers["x-request-id"] = request_id
    if "retry-after" in h and err.status in (429, 503, 500, 504, 409):
        err.headers["retry-after"] = h["retry-after"]
    elif err.status == 429:
        err.headers["x-should-retry"] = "false"  # spend cap: retrying cannot help
    for src, dst in _RATELIMIT.items():
        if src in h:
            err.headers[dst] = h[src]
    return err


def stream_error_to_openai(data: Any, request_id: str | None = None) -> ConversionError:
    """Translate the payload of a mid-stream ``event: error`` (``{"type": "error", "error": {...}}``)."""
    decoded = _decode(data)
    inner = decoded.get("error") if decoded is not None else None
    if not isinstance(inner, Mapping):
        return ConversionError("upstream sent an unreadable error event", status=502, type="server_error",
                               code="upstream_invalid_response")
    rid = request_id or (decoded.get("request_id") if decoded and isinstance(decoded.get("request_id"), str)
                         else None)
    return _from_inner(None, inner, rid)


def error_frame(err: ConversionError) -> bytes:
    """The SSE frame carrying ``err`` to an OpenAI streaming client (its SDK raises ``APIError``)."""
    payload = json.dumps(err.to_openai(), ensure_ascii=False, separators=(",", ":"))
    return b"data: " + payload.encode() + b"\n\n"
