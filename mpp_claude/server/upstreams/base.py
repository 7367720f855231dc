"""The one seam between the server and an LLM: ``Upstream.send`` of an Anthropic Messages body.

An upstream speaks the Anthropic Messages API (``POST /v1/messages``, API version
``2023-06-01``): the body is a Messages request as a dict; the answer is an
:class:`UpstreamResponse` that is either

* a parsed JSON body (a ``message`` object on 200, or Anthropic's error object
  ``{"type": "error", "error": {"type", "message"}, "request_id"}`` on 4xx/5xx), or
* on 200 with ``stream=True``, an async iterator of the raw SSE bytes, exactly as
  the upstream sent them (the server translates and meters them itself).

An error status is always returned as parsed JSON, also when streaming was asked
for, so the caller knows the outcome before it sends its own headers
(conversion doc §3.1).  :class:`~mpp_claude.errors.UpstreamError` is raised only
when there is no usable HTTP answer: connection failure, timeout, a non-JSON 200,
or a stream that breaks off (raised from the iterator).

Implementations: :mod:`.anthropic` (the real API over a pooled httpx2 client)
and :mod:`.local` (an offline, deterministic imitation with fault injection).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

ANTHROPIC_VERSION = "2023-06-01"
"""The ``anthropic-version`` header value both upstreams speak."""

FAULT_HEADER = "x-mpp-claude-fault"
"""Request header that asks the local upstream to inject a fault (see :mod:`.local`)."""


async def _nothing() -> None:
    return None


@dataclass(slots=True)
class UpstreamResponse:
    """One answer from an upstream.

    Attributes:
        status: the HTTP status.
        headers: response headers, names lower-cased (e.g. ``request-id``, ``retry-after``).
        json: the parsed body, or ``None`` when ``stream`` is set.
        stream: async iterator of raw ``text/event-stream`` bytes (only on 200 with
            ``stream=True``).  It raises :class:`~mpp_claude.errors.UpstreamError`
            (``code="upstream_stream_interrupted"``) if the connection breaks mid-way.
    """

    status: int
    headers: dict[str, str]
    json: dict[str, Any] | None = None
    stream: AsyncIterator[bytes] | None = None
    _close: Callable[[], Awaitable[None]] = field(default=_nothing, repr=False)

    @property
    def ok(self) -> bool:
        """True for a 2xx status."""
        return 200 <= self.status < 300

    async def aclose(self) -> None:
        """Release the connection behind ``stream``; safe to call twice, needed if not fully read."""
        close, self._close = self._close, _nothing
        await close()

    async def __aenter__(self) -> UpstreamResponse:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


@runtime_checkable
class Upstream(Protocol):
    """Something that answers Anthropic Messages requests."""

    async def send(self, body: Mapping[str, Any], *, stream: bool,
                   headers: Mapping[str, str] | None = None) -> UpstreamResponse:
        """Send one Messages request.

        Args:
            body: the Messages request (``model``, ``messages``, ``max_tokens``, …);
                its ``stream`` field is overridden by the ``stream`` argument.
            stream: ask for Server-Sent Events instead of one JSON message.
            headers: extra request headers for the upstream (e.g. ``anthropic-beta``);
                never the client's own headers wholesale (its payment credential
                must not travel upstream).

        Returns:
            The :class:`UpstreamResponse`; call ``aclose()`` if ``stream`` is not read to the end.

        Raises:
            UpstreamError: no usable HTTP answer (connection, timeout, non-JSON 200).
        """
        ...

    async def aclose(self) -> None:
        """Close pooled connections."""
        ...


def error_body(error_type: str, message: str, request_id: str | None = None) -> dict[str, Any]:
    """Build Anthropic's error object ``{"type": "error", "error": {...}, "request_id"}``."""
    body: dict[str, Any] = {"type": "error", "error": {"type": error_type, "message": message}}
    if request_id is not None:
        body["request_id"] = request_id
    return body


ERROR_TYPES: Mapping[int, str] = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    409: "conflict_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    504: "timeout_error",
    529: "overloaded_error",
}
"""Anthropic's error ``type`` for each status it documents (errors page)."""


def error_type_for(status: int) -> str:
    """Anthropic's error type for ``status``: unknown 5xx → ``api_error``, else ``invalid_request_error``."""
    if status in ERROR_TYPES:
        return ERROR_TYPES[status]
    return "api_error" if status >= 500 else "invalid_request_error"
