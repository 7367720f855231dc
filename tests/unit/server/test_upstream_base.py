"""The upstream seam's small helpers: error shapes, statuses, closing a response."""

from __future__ import annotations

import pytest

from mpp_claude.server.stores import MemoryStore, SQLiteStore, Store
from mpp_claude.server.upstreams import LocalUpstream, Upstream, UpstreamResponse, error_body, error_type_for

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.mark.parametrize(
    ("status", "kind"),
    [
        (400, "invalid_request_error"),
        (401, "authentication_error"),
        (402, "billing_error"),
        (404, "not_found_error"),
        (413, "request_too_large"),
        (429, "rate_limit_error"),
        (500, "api_error"),
        (502, "api_error"),
        (504, "timeout_error"),
        (529, "overloaded_error"),
        (418, "invalid_request_error"),
    ],
)
def test_error_type_for(status: int, kind: str) -> None:
    """Each documented status maps to Anthropic's error type; unknown ones fall back by class."""
    assert error_type_for(status) == kind


def test_error_body_shape() -> None:
    """The error object is Anthropic's: type error, inner type and message, optional request id."""
    assert error_body("api_error", "boom") == {
        "type": "error",
        "error": {"type": "api_error", "message": "boom"},
    }
    assert error_body("api_error", "boom", "req_1")["request_id"] == "req_1"


async def test_aclose_runs_once() -> None:
    """aclose calls the closer once, however often it is called, and also on leaving async with."""
    calls: list[int] = []

    async def closer() -> None:
        calls.append(1)

    resp = UpstreamResponse(200, {}, json={}, _close=closer)
    async with resp as same:
        assert same is resp and resp.ok
    await resp.aclose()
    assert calls == [1]
    assert not UpstreamResponse(529, {}).ok


async def test_protocols_are_runtime_checkable() -> None:
    """The concrete classes satisfy the Store and Upstream protocols."""
    sqlite = SQLiteStore(":memory:")
    try:
        assert isinstance(MemoryStore(), Store)
        assert isinstance(sqlite, Store)
        assert isinstance(LocalUpstream(), Upstream)
    finally:
        await sqlite.close()
