"""Spec §7.4 error mapping: T71-T78 (upstream errors -> OpenAI errors and statuses)."""

from __future__ import annotations

import json

import pytest

from mpp_claude.convert import anthropic_error_to_openai, stream_error_to_openai


def _body(etype: str, message: str, request_id: str | None = None) -> bytes:
    data: dict[str, object] = {"type": "error", "error": {"type": etype, "message": message}}
    if request_id:
        data["request_id"] = request_id
    return json.dumps(data).encode()


def test_T71_invalid_request_with_request_id() -> None:
    """A 400 keeps its message, appends the request id and uses the Anthropic type as code."""
    err = anthropic_error_to_openai(400, _body("invalid_request_error", "messages.1: bad", "req_x"), {})
    assert err.status == 400
    assert err.to_openai() == {
        "error": {
            "message": "messages.1: bad (request_id: req_x)",
            "type": "invalid_request_error",
            "param": None,
            "code": "invalid_request_error",
        }
    }


def test_T72_prompt_too_long() -> None:
    """'prompt is too long' becomes context_length_exceeded."""
    err = anthropic_error_to_openai(
        400, _body("invalid_request_error", "prompt is too long: 220000 tokens > 200000 maximum"), {}
    )
    assert err.status == 400 and err.code == "context_length_exceeded"


@pytest.mark.parametrize(
    ("status", "etype", "message", "code"),
    [
        (401, "authentication_error", "invalid x-api-key", "authentication_error"),
        (403, "permission_error", "no access", "permission_error"),
        (404, "not_found_error", "model: claude-sonnet-4-20250514", "model_not_found"),
    ],
    ids=["T73-401", "T73-403", "T73-404"],
)
def test_T73_auth_permission_not_found(status: int, etype: str, message: str, code: str) -> None:
    """401/403/404 keep their status; a 404 naming the model is model_not_found."""
    err = anthropic_error_to_openai(status, _body(etype, message), {})
    assert err.status == status and err.code == code


def test_T74_rate_limit_keeps_retry_after() -> None:
    """429 keeps retry-after."""
    err = anthropic_error_to_openai(429, _body("rate_limit_error", "slow down"), {"Retry-After": "7"})
    assert err.status == 429 and err.type == "rate_limit_error"
    assert err.headers["retry-after"] == "7" and "x-should-retry" not in err.headers


def test_T75_spend_cap_not_retried() -> None:
    """A 429 without retry-after tells the SDK not to retry."""
    err = anthropic_error_to_openai(429, _body("rate_limit_error", "spend cap reached"), {})
    assert err.headers["x-should-retry"] == "false"


@pytest.mark.parametrize(
    ("status", "etype", "otype"),
    [
        (402, "billing_error", "insufficient_quota"),
        (413, "request_too_large", "invalid_request_error"),
        (500, "api_error", "server_error"),
        (504, "timeout_error", "server_error"),
    ],
    ids=["T76-402", "T76-413", "T76-500", "T76-504"],
)
def test_T76_other_statuses(status: int, etype: str, otype: str) -> None:
    """402/413/500/504 keep their status; the code is the Anthropic type."""
    err = anthropic_error_to_openai(status, _body(etype, "x"), {})
    assert (err.status, err.type, err.code) == (status, otype, etype)


def test_T77_html_502() -> None:
    """A non-JSON body (CDN HTML) becomes 502 upstream_invalid_response."""
    err = anthropic_error_to_openai(502, b"<html><body>Bad gateway</body></html>", {})
    assert (err.status, err.type, err.code) == (502, "server_error", "upstream_invalid_response")


@pytest.mark.parametrize("status", [400, 429, 500, 529], ids=lambda s: f"T78-{s}")
def test_T78_request_id_header(status: int) -> None:
    """Every mapped error carries x-request-id from Anthropic's request-id header."""
    err = anthropic_error_to_openai(status, _body("api_error", "x"), [("request-id", "req_42")])
    assert err.headers["x-request-id"] == "req_42"


class TestErrorEdges:
    def test_unknown_type_keeps_status_family(self) -> None:
        """An unknown error type keeps the upstream status and a family type."""
        err = anthropic_error_to_openai(418, _body("teapot_error", "x"), {})
        assert (err.status, err.type, err.code) == (418, "invalid_request_error", "teapot_error")

    def test_stream_error_payload(self) -> None:
        """A mid-stream error payload maps by type."""
        err = stream_error_to_openai('{"type":"error","error":{"type":"api_error","message":"boom"}}')
        assert err.to_openai()["error"]["type"] == "server_error" and err.code == "api_error"

    def test_ratelimit_headers_translated(self) -> None:
        """anthropic-ratelimit-* counts are exposed under OpenAI's x-ratelimit-* names."""
        err = anthropic_error_to_openai(
            429,
            _body("rate_limit_error", "x"),
            {"anthropic-ratelimit-requests-remaining": "0", "retry-after": "1"},
        )
        assert err.headers["x-ratelimit-remaining-requests"] == "0"
