"""An offline, deterministic Anthropic Messages API: :class:`LocalUpstream` and its ASGI app.

It answers like ``POST https://api.anthropic.com/v1/messages`` (JSON and SSE,
usage, error objects and statuses) without a network or a key, so the server,
the examples, the demo and the tests run anywhere.  What it says and how it
counts tokens is described in :mod:`._local_model` (SSE framing in
:mod:`._local_stream`); what it refuses, in
:mod:`._local_validate`.  Served standalone by :func:`create_local_anthropic_app`
(``POST /v1/messages``, ``POST /v1/messages/count_tokens``)::

    uvicorn --factory mpp_claude.server.upstreams.local:create_local_anthropic_app

Fault injection (for tests of retries, credits and error mapping).  A fault
spec is one of:

* ``"<status>"`` or ``"<status>:<retry_after_s>"`` — answer that status with
  Anthropic's error object for it (``429`` → ``rate_limit_error`` with
  ``retry-after: 1`` unless given, ``500`` → ``api_error``, ``529`` →
  ``overloaded_error``, ``401``, ``403``, ``404``, ``413``, ``504``, …);
* ``"drop"`` — the connection breaks half-way through the body (SSE or JSON);
* ``"stream-error"`` — a 200 stream that ends half-way with an SSE ``error``
  event (``overloaded_error``), as the real API does under load;
* ``"none"`` — no fault (overrides the instance default).

A fault is chosen per request, first match wins: the request header
``x-mpp-claude-fault: <spec>``; the magic text ``[[mpp-fault:<spec>]]`` in the
last user message; the next spec queued with :meth:`LocalUpstream.inject`; the
instance default ``LocalUpstream(fault=...)``.  Status faults are answered
before validation, ``drop``/``stream-error`` only for valid requests.
"""

from __future__ import annotations

import asyncio
import collections
import json
import os
import re
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from ...errors import UpstreamError
from ...protocol.encoding import loads_bounded
from . import _local_model as model
from ._local_stream import encode_event, message_events
from ._local_validate import LocalApiError, validate_request
from .base import ANTHROPIC_VERSION, FAULT_HEADER, UpstreamResponse, error_body, error_type_for

_FAULT_TEXT = re.compile(r"\[\[mpp-fault:([A-Za-z0-9:._-]+)\]\]")
_FAULT_SPEC = re.compile(r"^(?:none|drop|stream-error|[1-5]\d\d(?::\d+(?:\.\d+)?)?)$")
MAX_BODY_BYTES = 32 * 1024 * 1024  # the Messages API's request size limit


def check_fault(spec: str) -> str:
    """Return ``spec`` if it is a valid fault spec (see the module docstring), else raise ``ValueError``."""
    if not isinstance(spec, str) or not _FAULT_SPEC.match(spec):
        raise ValueError(f"fault spec must be none, drop, stream-error, <status> or <status>:<retry_after>, "
                         f"got {spec!r}")
    return spec


@dataclass(slots=True)
class LocalReply:
    """What the local API answers: a JSON body, or SSE chunks (200 streams only)."""

    status: int
    headers: dict[str, str]
    json: dict[str, Any] | None = None
    chunks: list[bytes] = field(default_factory=list)
    drop_after: int | None = None  # break the connection after this many chunks / half the JSON

    def json_bytes(self) -> bytes:
        return json.dumps(self.json, separators=(",", ":")).encode()


class LocalUpstream:
    """An in-process :class:`~.base.Upstream` imitating the Anthropic Messages API.

    Args:
        fault: default fault spec applied to every request (``None``: none).
        seed: bytes the message/tool ids derive from (with a call counter);
            fixed → the same ids in every run; default: random per instance.
        chunk_delay_s: pause before each SSE chunk (and once before a 200 JSON body when
            served over HTTP), to imitate generation time.

    Attributes:
        received: the last 1000 request bodies, oldest first (tests count upstream calls).
    """

    def __init__(self, *, fault: str | None = None, seed: bytes | None = None,
                 chunk_delay_s: float = 0.0) -> None:
        self.fault = check_fault(fault) if fault is not None else None
        self._seed = os.urandom(8) if seed is None else seed
        self._calls = 0
        self._queued: collections.deque[str] = collections.deque()
        self.chunk_delay_s = chunk_delay_s
        self.received: collections.deque[dict[str, Any]] = collections.deque(maxlen=1000)

    @property
    def calls(self) -> int:
        """How many requests were answered (including faults and invalid requests)."""
        return self._calls

    def inject(self, *specs: str) -> None:
        """Queue fault specs for the next requests that carry no per-request fault, in order."""
        self._queued.extend(check_fault(s) for s in specs)

    # --- the core both shells share ----------------------------------------------------------------

    def _pick_fault(self, body: Any, headers: Mapping[str, str]) -> str | None:
        lowered = {k.lower(): v for k, v in headers.items()}
        if FAULT_HEADER in lowered:
            return check_fault(lowered[FAULT_HEADER].strip())
        if isinstance(body, Mapping) and isinstance(body.get("messages"), list):
            for message in reversed(body["messages"]):
                if isinstance(message, Mapping) and message.get("role") == "user":
                    content = message.get("content")
                    texts = [content] if isinstance(content, str) else [
                        str(b.get("text", "")) for b in content or [] if isinstance(b, Mapping)]
                    found = _FAULT_TEXT.search(" ".join(texts))
                    if found:
                        return check_fault(found.group(1))
                    break
        if self._queued:
            return self._queued.popleft()
        return self.fault

    def respond(self, body: Any, headers: Mapping[str, str] | None = None) -> LocalReply:
        """Answer one Messages request (``body["stream"]`` selects SSE).

        Args:
            body: the parsed request body (anything: invalid bodies get a 400).
            headers: request headers (only the fault header is read here).

        Returns:
            The :class:`LocalReply`; nothing is raised for bad input.
        """
        self._calls += 1
        nonce = self._seed + self._calls.to_bytes(8, "big")
        request_id = model.make_id("req_01", nonce)
        base_headers = {"request-id": request_id, "anthropic-version": ANTHROPIC_VERSION}
        if isinstance(body, Mapping):
            self.received.append(dict(body))
        try:
            fault = self._pick_fault(body, headers or {})
        except ValueError as exc:
            return _error(LocalApiError(400, "invalid_request_error", f"{FAULT_HEADER}: {exc}"),
                          base_headers, request_id)
        if fault and fault[0].isdigit():
            status, _, retry_after = fault.partition(":")
            code = int(status)
            extra = dict(base_headers)
            if retry_after or code == 429:
                extra["retry-after"] = retry_after or "1"
            text = _FAULT_MESSAGES.get(code, "Injected fault")
            return _error(LocalApiError(code, error_type_for(code), text), extra, request_id)
        try:
            validate_request(body)
        except LocalApiError as exc:
            return _error(exc, base_headers, request_id)
        message = model.build_message(body, nonce)
        if not body.get("stream"):
            reply = LocalReply(200, {**base_headers, "content-type": "application/json"}, json=message)
            if fault == "drop":
                reply.drop_after = 0
            return reply
        chunks = [encode_event(name, data) for name, data in message_events(message)]
        reply = LocalReply(200, {**base_headers, "content-type": "text/event-stream; charset=utf-8",
                                 "cache-control": "no-cache"}, chunks=chunks)
        half = max(1, len(chunks) // 2)
        if fault == "drop":
            reply.drop_after = half
        elif fault == "stream-error":
            failure = error_body("overloaded_error", "Overloaded", request_id)
            reply.chunks = [*chunks[:half], encode_event("error", failure)]
        return reply

    def count_tokens(self, body: Any) -> LocalReply:
        """Answer ``POST /v1/messages/count_tokens``: ``{"input_tokens": n}`` or a 400."""
        probe = dict(body, max_tokens=1) if isinstance(body, Mapping) else body
        try:
            validate_request(probe)
        except LocalApiError as exc:
            return _error(exc, {}, None)
        return LocalReply(200, {"content-type": "application/json"},
                          json={"input_tokens": model.count_input_tokens(probe)})

    # --- in-process Upstream ----------------------------------------------------------------------

    async def send(self, body: Mapping[str, Any], *, stream: bool,
                   headers: Mapping[str, str] | None = None) -> UpstreamResponse:
        """See :meth:`~.base.Upstream.send`; runs in process, no sockets.

        Raises:
            UpstreamError: only for the ``drop`` fault on a JSON answer.
        """
        reply = self.respond({**body, "stream": stream}, headers)
        if reply.chunks:
            return UpstreamResponse(reply.status, reply.headers, stream=self._iterate(reply))
        if reply.drop_after is not None:
            raise UpstreamError("local upstream: connection dropped before the body ended (fault 'drop')",
                                code="upstream_connection_error", status=502)
        return UpstreamResponse(reply.status, reply.headers, json=reply.json)

    async def _iterate(self, reply: LocalReply) -> AsyncIterator[bytes]:
        for i, chunk in enumerate(reply.chunks):
            if reply.drop_after is not None and i == reply.drop_after:
                raise UpstreamError("local upstream: stream dropped mid-way (fault 'drop')",
                                    code="upstream_stream_interrupted", status=502)
            if self.chunk_delay_s:
                await asyncio.sleep(self.chunk_delay_s)
            yield chunk

    async def aclose(self) -> None:
        """Nothing to release."""


_FAULT_MESSAGES = {
    400: "Injected invalid request", 401: "invalid x-api-key", 402: "Your credit balance is too low",
    403: "Your API key does not have permission to use the specified resource.",
    404: "Not found", 413: "Request exceeds the maximum allowed number of bytes.",
    429: "Number of request tokens has exceeded your per-minute rate limit", 500: "Internal server error",
    504: "Request timed out", 529: "Overloaded",
}


def _error(exc: LocalApiError, headers: Mapping[str, str], request_id: str | None) -> LocalReply:
    return LocalReply(exc.status, {**headers, "content-type": "application/json"},
                      json=error_body(exc.error_type, exc.message, request_id))


# --- the ASGI app -----------------------------------------------------------------------------------


class _Dropped(Exception):
    """Raised inside a response body to make the server break the connection (fault ``drop``)."""


def _to_response(reply: LocalReply, delay: float) -> Response:
    if reply.chunks:
        async def body() -> AsyncIterator[bytes]:
            for i, chunk in enumerate(reply.chunks):
                if reply.drop_after is not None and i == reply.drop_after:
                    raise _Dropped("fault 'drop': stream broken off")
                if delay:
                    await asyncio.sleep(delay)
                yield chunk

        return StreamingResponse(body(), status_code=reply.status, headers=reply.headers)
    data = reply.json_bytes()
    if delay and reply.status == 200:
        async def slow() -> AsyncIterator[bytes]:
            await asyncio.sleep(delay)  # a JSON answer arrives after "generation", all at once
            yield data

        return StreamingResponse(slow(), status_code=reply.status,
                                 headers={**reply.headers, "content-length": str(len(data))})
    if reply.drop_after is not None:
        async def partial() -> AsyncIterator[bytes]:
            yield data[: len(data) // 2]
            raise _Dropped("fault 'drop': body broken off")

        return StreamingResponse(partial(), status_code=reply.status,
                                 headers={**reply.headers, "content-length": str(len(data))})
    return Response(data, status_code=reply.status, headers=reply.headers)


def _presented_key(request: Request) -> str | None:
    """The API key of a request: ``x-api-key``, or ``Authorization: Bearer`` (the 2.x SDKs send that)."""
    key = request.headers.get("x-api-key")
    if key is not None:
        return key
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


def create_local_anthropic_app(upstream: LocalUpstream | None = None, *, api_key: str | None = None,
                               extra_routes: Sequence[Route] = ()) -> Starlette:
    """Serve a :class:`LocalUpstream` as the Anthropic Messages HTTP API.

    Args:
        upstream: the instance to serve (default: a new one); keep a reference to
            inject faults or read ``received``.
        api_key: when set, requests must carry ``x-api-key: <api_key>`` or
            ``Authorization: Bearer <api_key>`` (else 401); when ``None``, any key or none
            is accepted.  Any ``anthropic-version`` value is accepted (answers use the
            2023-06-01 shapes, which newer SDKs parse too), but the header is required.
        extra_routes: more routes to mount (tests).

    Returns:
        A Starlette app with ``POST /v1/messages`` and ``POST /v1/messages/count_tokens``.
    """
    local = upstream if upstream is not None else LocalUpstream()

    async def read(request: Request) -> tuple[Any, Response | None]:
        if api_key is not None and _presented_key(request) != api_key:
            missing = _presented_key(request) is None
            reply = _error(LocalApiError(401, "authentication_error",
                                         "x-api-key header is required" if missing else "invalid x-api-key"),
                           {}, None)
            return None, _to_response(reply, 0)
        if "anthropic-version" not in request.headers:
            missing_version = "anthropic-version: header is required"
            reply = _error(LocalApiError(400, "invalid_request_error", missing_version), {}, None)
            return None, _to_response(reply, 0)
        raw = await request.body()
        if len(raw) > MAX_BODY_BYTES:
            reply = _error(LocalApiError(413, "request_too_large",
                                         "Request exceeds the maximum allowed number of bytes."), {}, None)
            return None, _to_response(reply, 0)
        try:
            return loads_bounded(raw), None
        except ValueError:
            reply = _error(LocalApiError(400, "invalid_request_error", "There was an error parsing the body: "
                                         "invalid JSON"), {}, None)
            return None, _to_response(reply, 0)

    async def messages(request: Request) -> Response:
        body, refused = await read(request)
        if refused is not None:
            return refused
        return _to_response(local.respond(body, dict(request.headers)), local.chunk_delay_s)

    async def count_tokens(request: Request) -> Response:
        body, refused = await read(request)
        if refused is not None:
            return refused
        return _to_response(local.count_tokens(body), 0)

    app = Starlette(routes=[Route("/v1/messages", messages, methods=["POST"]),
                            Route("/v1/messages/count_tokens", count_tokens, methods=["POST"]),
                            *extra_routes])
    app.state.upstream = local
    return app


__all__ = ["LocalReply", "LocalUpstream", "check_fault", "create_local_anthropic_app"]
