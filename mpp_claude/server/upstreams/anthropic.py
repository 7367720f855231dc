"""The real Anthropic Messages API as an :class:`~.base.Upstream`, over one pooled httpx2 client.

Only an API key is needed::

    upstream = AnthropicUpstream(api_key)             # https://api.anthropic.com
    async with await upstream.send(body, stream=True) as resp: ...
    await upstream.aclose()

Requests go to ``POST {base_url}/v1/messages`` with ``x-api-key``,
``anthropic-version: 2023-06-01`` and ``content-type: application/json``
(conversion doc §1.0).  Error statuses come back as parsed JSON, also for
streams, so the server knows the outcome before it answers its own client.

Retries and money (``retry_before_payment``).  A paid server calls the upstream
either before it settles the payer's payment (verify → call upstream → settle
only on success) or after (settle → call upstream).  Only in the first order is
a retry free of risk for the payer: nothing has been charged yet and a final
failure becomes a plain error with no credit to issue.  After settlement the
server must answer quickly and, on failure, record a credit rather than keep a
paid request waiting on retries, so retries are off by default.  With
``retry_before_payment=True`` a request is retried up to ``max_retries`` times,
and only when Anthropic did not start a completion: connection failures before
the request was sent, and statuses 408/409/429/500/502/503/504/529 (honouring
``retry-after``/``retry-after-ms`` up to ``max_retry_wait_s`` and
``x-should-retry: false``).  Read timeouts and broken streams are never retried:
the completion may have run (and been billed upstream).  Two instances may
share one pool through ``client=``, e.g. one with retries for the verify-first
path and one without.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
from collections.abc import AsyncGenerator, Mapping
from typing import Any

import httpx2

from ...errors import ConfigError, UpstreamError
from ...protocol.encoding import loads_bounded
from .base import ANTHROPIC_VERSION, UpstreamResponse, error_body, error_type_for

log = logging.getLogger("mpp_claude.server.upstream")

DEFAULT_BASE_URL = "https://api.anthropic.com"
DEFAULT_TIMEOUT = httpx2.Timeout(connect=5.0, read=600.0, write=60.0, pool=10.0)
"""Connect 5 s; read 600 s (a long non-streamed answer; streams get a ping every few seconds); write 60 s."""

RETRY_STATUSES = frozenset({408, 409, 429, 500, 502, 503, 504, 529})
_NEVER_FORWARD = frozenset({"authorization", "host", "content-length", "cookie", "x-api-key",
                            "anthropic-version", "transfer-encoding", "connection"})


def _limits() -> httpx2.Limits:
    return httpx2.Limits(max_connections=100, max_keepalive_connections=20, keepalive_expiry=30.0)


class AnthropicUpstream:
    """Anthropic's Messages API behind the :class:`~.base.Upstream` seam.

    Args:
        api_key: the Anthropic API key (sent as ``x-api-key``; never logged).
        base_url: API origin (default ``https://api.anthropic.com``); point it at
            :func:`~.local.create_local_anthropic_app` served by uvicorn for offline runs.
        timeout: httpx2 timeout (default :data:`DEFAULT_TIMEOUT`).
        retry_before_payment: allow retries (see the module docstring); off by default.
        max_retries: retries after the first attempt when allowed.
        max_retry_wait_s: a ``retry-after`` longer than this is not waited for: the
            error is returned instead.
        backoff_s: first backoff when no ``retry-after`` is given (doubles, ±25 % jitter).
        client: an ``httpx2.AsyncClient`` to share; not closed by :meth:`aclose`.

    Raises:
        ConfigError: empty key or a base URL that is not http(s).
    """

    def __init__(self, api_key: str, *, base_url: str = DEFAULT_BASE_URL,
                 timeout: httpx2.Timeout = DEFAULT_TIMEOUT, retry_before_payment: bool = False,
                 max_retries: int = 2, max_retry_wait_s: float = 10.0, backoff_s: float = 0.5,
                 client: httpx2.AsyncClient | None = None) -> None:
        if not isinstance(api_key, str) or not api_key.strip():
            raise ConfigError("Anthropic API key is empty (set ANTHROPIC_API_KEY or pass api_key)")
        if not base_url.startswith(("https://", "http://")):
            raise ConfigError(f"Anthropic base URL must start with https:// or http://, got {base_url!r}")
        if max_retries < 0:
            raise ConfigError(f"max_retries must be >= 0, got {max_retries}")
        self._key = api_key.strip()
        self.url = base_url.rstrip("/") + "/v1/messages"
        self.retry_before_payment = retry_before_payment
        self.max_retries = max_retries
        self.max_retry_wait_s = max_retry_wait_s
        self.backoff_s = backoff_s
        self._owned = client is None
        self._client = client if client is not None else httpx2.AsyncClient(timeout=timeout, limits=_limits())

    def __repr__(self) -> str:  # never show the key
        return f"AnthropicUpstream(url={self.url!r}, retry_before_payment={self.retry_before_payment})"

    def _headers(self, stream: bool, extra: Mapping[str, str] | None) -> dict[str, str]:
        headers = {k.lower(): v for k, v in (extra or {}).items() if k.lower() not in _NEVER_FORWARD}
        headers.update({"x-api-key": self._key, "anthropic-version": ANTHROPIC_VERSION,
                        "content-type": "application/json",
                        "accept": "text/event-stream" if stream else "application/json"})
        return headers

    def _wait(self, attempt: int, response: httpx2.Response | None) -> float | None:
        """Seconds to wait before retry ``attempt`` (1-based), or ``None`` for "do not retry"."""
        if not self.retry_before_payment or attempt > self.max_retries:
            return None
        if response is not None:
            if response.status_code not in RETRY_STATUSES:
                return None
            if response.headers.get("x-should-retry", "").lower() == "false":
                return None
            for name, scale in (("retry-after-ms", 0.001), ("retry-after", 1.0)):
                value = response.headers.get(name)
                if value is not None:
                    try:
                        wait = float(value) * scale
                    except ValueError:
                        continue
                    return wait if 0 <= wait <= self.max_retry_wait_s else None
        backoff = min(self.backoff_s * 2.0 ** (attempt - 1), self.max_retry_wait_s)
        return backoff * (0.75 + random.random() / 2)  # jitter spreads retries of many workers

    async def send(self, body: Mapping[str, Any], *, stream: bool,
                   headers: Mapping[str, str] | None = None) -> UpstreamResponse:
        """See :meth:`~.base.Upstream.send`.

        Raises:
            UpstreamError: connection failure (502 ``upstream_connection_error``),
                timeout (504 ``upstream_timeout``), or a 200 that is not a JSON object
                (502 ``upstream_invalid_response``).  A broken stream raises from the
                iterator (502 ``upstream_stream_interrupted``).
        """
        payload = json.dumps({**body, "stream": stream}, separators=(",", ":")).encode()
        request = self._client.build_request("POST", self.url, content=payload,
                                             headers=self._headers(stream, headers))
        attempt = 0
        while True:
            attempt += 1
            try:
                response = await self._client.send(request, stream=True)
            except (httpx2.ConnectError, httpx2.ConnectTimeout, httpx2.PoolTimeout) as exc:
                wait = self._wait(attempt, None)
                if wait is None:
                    raise UpstreamError(f"cannot reach {self.url}: {type(exc).__name__}",
                                        code="upstream_connection_error", status=502) from exc
                await asyncio.sleep(wait)
                continue
            except httpx2.TimeoutException as exc:
                raise UpstreamError(f"{self.url} timed out ({type(exc).__name__})",
                                    code="upstream_timeout", status=504) from exc
            except httpx2.TransportError as exc:
                raise UpstreamError(f"connection to {self.url} failed: {type(exc).__name__}",
                                    code="upstream_connection_error", status=502) from exc
            wait = self._wait(attempt, response) if response.status_code >= 400 else None
            if wait is None:
                break
            log.info("upstream %s answered %s; retry %d in %.2fs", self.url, response.status_code,
                     attempt, wait)
            await response.aclose()
            await asyncio.sleep(wait)
        resp_headers = {k.lower(): v for k, v in response.headers.items()}
        content_type = resp_headers.get("content-type", "")
        if stream and response.status_code == 200 and content_type.startswith("text/event-stream"):
            return _streaming(response, resp_headers)
        return UpstreamResponse(response.status_code, resp_headers,
                                json=await _read_json(response, self.url))

    async def aclose(self) -> None:
        """Close the pooled client if this object created it."""
        if self._owned:
            await self._client.aclose()


async def _read_json(response: httpx2.Response, url: str) -> dict[str, Any]:
    try:
        raw = await response.aread()
    except httpx2.TimeoutException as exc:
        raise UpstreamError(f"{url} timed out reading the body", code="upstream_timeout", status=504) from exc
    except httpx2.TransportError as exc:
        raise UpstreamError(f"connection to {url} broke while reading the body ({type(exc).__name__})",
                            code="upstream_connection_error", status=502) from exc
    finally:
        await response.aclose()
    try:
        data = loads_bounded(raw)
    except ValueError:
        data = None
    if isinstance(data, dict):
        return data
    if response.status_code < 400:
        raise UpstreamError(f"{url} answered {response.status_code} with a body that is not a JSON object",
                            code="upstream_invalid_response", status=502)
    # an error page from a proxy or CDN (e.g. a 413 in HTML): keep the status, give it Anthropic's shape
    text = raw[:200].decode("utf-8", "replace").strip()
    return error_body(error_type_for(response.status_code), text or f"HTTP {response.status_code}")


def _streaming(response: httpx2.Response, headers: dict[str, str]) -> UpstreamResponse:
    async def chunks() -> AsyncGenerator[bytes, None]:
        try:
            async for chunk in response.aiter_bytes():
                yield chunk
        except httpx2.TimeoutException as exc:
            raise UpstreamError("upstream stream stalled (read timeout)",
                                code="upstream_stream_interrupted", status=504) from exc
        except (httpx2.TransportError, httpx2.StreamError) as exc:
            raise UpstreamError(f"upstream stream broke off ({type(exc).__name__})",
                                code="upstream_stream_interrupted", status=502) from exc
        finally:
            await response.aclose()

    iterator = chunks()

    async def close() -> None:
        await iterator.aclose()
        await response.aclose()

    return UpstreamResponse(response.status_code, headers, stream=iterator, _close=close)
