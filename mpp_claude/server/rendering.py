"""Turning outcomes into HTTP responses: problem+json with challenges, OpenAI and Anthropic errors.

Endpoints raise; the handlers in ``app.py`` call these functions (style.md: "endpoints raise;
one handler renders").  Header rules (mpp-protocol.md §1.10):

* every 402 carries at least one ``WWW-Authenticate: Payment`` line (one per offer) and
  ``Cache-Control: no-store``; after a refused credential also ``Retry-After`` (flow golden);
* a response with ``Payment-Receipt`` has ``Cache-Control: private``;
* an error that follows an accepted payment carries ``x-should-retry: false`` so the openai
  SDK does not retry (and pay) again behind the caller's back.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from functools import lru_cache
from typing import Any

from starlette.responses import Response

from ..errors import ConversionError, PaymentRequired, VerificationError
from ..protocol.challenge import Challenge, format_challenge
from ..protocol.problem import PROBLEM_CONTENT_TYPE, Problem

RETRY_AFTER_REFUSED = "60"

# Anthropic's error ``type`` for the OpenAI-style codes our own 4xx use.
_ANTHROPIC_TYPES = {400: "invalid_request_error", 404: "not_found_error", 405: "invalid_request_error",
                    409: "conflict_error", 413: "request_too_large", 422: "invalid_request_error",
                    429: "rate_limit_error", 500: "api_error", 502: "api_error", 503: "overloaded_error",
                    504: "timeout_error", 529: "overloaded_error"}


_compact = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode  # one encoder, not one per call


def compact_json(data: Any) -> bytes:
    """``json.dumps(data, separators=(",", ":"), ensure_ascii=False)`` as UTF-8 (one shared encoder).

    Raises:
        TypeError, ValueError: ``data`` holds a value JSON cannot carry.
    """
    return _compact(data).encode()


@lru_cache(maxsize=16)
def _payment_required_json(problem_type: str, title: str, status: int, detail: str) -> bytes:
    """The problem+json body of a ``PaymentRequired`` without extensions (the same few texts each time)."""
    return Problem(type=problem_type, title=title, status=status, detail=detail).to_json()


def payment_problem(exc: VerificationError, challenges: Sequence[Challenge]) -> Response:
    """402 (or the error's own status) with problem+json and one challenge line per offer.

    Args:
        exc: why the request is not served (``PaymentRequired`` when no credential came).
        challenges: fresh challenges for this request (empty for non-402 statuses).
    """
    if isinstance(exc, PaymentRequired) and not exc.extra and type(exc.detail) is str:  # every first leg
        body = _payment_required_json(exc.problem_type, exc.title, exc.status, exc.detail)
    else:
        body = Problem.from_error(exc).to_json()
    headers: list[tuple[bytes, bytes]] = [(b"cache-control", b"no-store")]
    if exc.status == 402:
        headers += [(b"www-authenticate", format_challenge(ch).encode("latin-1")) for ch in challenges]
        if not isinstance(exc, PaymentRequired):
            headers.append((b"retry-after", RETRY_AFTER_REFUSED.encode()))
    response = Response(body, status_code=exc.status, media_type=PROBLEM_CONTENT_TYPE)
    response.raw_headers.extend(headers)
    return response


def openai_error_body(message: str, *, type: str, param: str | None = None, code: str | None = None,
                      **extra: Any) -> dict[str, Any]:
    """OpenAI's error shape ``{"error": {"message", "type", "param", "code", ...}}``."""
    error: dict[str, Any] = {"message": message, "type": type, "param": param, "code": code}
    error.update(extra)
    return {"error": error}


def anthropic_error_body(message: str, *, status: int, type: str | None = None) -> dict[str, Any]:
    """Anthropic's error shape ``{"type": "error", "error": {"type", "message"}}``."""
    kind = type if type in set(_ANTHROPIC_TYPES.values()) else _ANTHROPIC_TYPES.get(status, "api_error")
    return {"type": "error", "error": {"type": kind, "message": message}}


def json_response(body: Mapping[str, Any], status: int, headers: Mapping[str, str] | None = None
                  ) -> Response:
    """A JSON response with ``Cache-Control: no-store`` unless ``headers`` say otherwise."""
    merged = {"cache-control": "no-store", **(headers or {})}
    return Response(compact_json(body), status_code=status, media_type="application/json", headers=merged)


def client_error(exc: ConversionError, *, anthropic: bool) -> Response:
    """Render a ``ConversionError``/``BadRequest`` in the route's error dialect."""
    if anthropic:
        body = anthropic_error_body(exc.message, status=exc.status, type=exc.type)
    else:
        body = exc.to_openai()
    return json_response(body, exc.status, exc.headers)


def http_error(status: int, message: str, *, anthropic: bool, headers: Mapping[str, str] | None = None
               ) -> Response:
    """Render a plain HTTP error (404, 405 with ``Allow`` …) in the route's error dialect."""
    if anthropic:
        body = anthropic_error_body(message, status=status)
    else:
        code = {404: "not_found", 405: "method_not_allowed"}.get(status)
        body = openai_error_body(message, type="invalid_request_error", code=code)
    return json_response(body, status, headers)
