"""OpenTelemetry spans: one per payment, with the payment's attributes and never the credential."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import pytest
from _shop import ORIGIN

from mpp_claude.client import _telemetry


class _Span:
    def __init__(self, name: str) -> None:
        self.name, self.attributes = name, {}

    def set_attribute(self, key: str, value: Any) -> None:
        self.attributes[key] = value


class _Tracer:
    def __init__(self) -> None:
        self.spans: list[_Span] = []

    @contextlib.contextmanager
    def start_as_current_span(self, name: str) -> Iterator[_Span]:
        span = _Span(name)
        self.spans.append(span)
        yield span


class _Trace:
    def __init__(self) -> None:
        self.tracer = _Tracer()

    def get_tracer(self, name: str) -> _Tracer:
        return self.tracer


def test_payment_span(make_client: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    trace = _Trace()
    monkeypatch.setattr(_telemetry, "_trace", trace)
    client, shop = make_client()
    client.post(ORIGIN + "/v1/x", json={})
    (span,) = trace.tracer.spans
    assert span.name == "mpp.pay" and span.attributes["mpp.amount"] == 10_000
    assert span.attributes["mpp.origin"] == ORIGIN and span.attributes["mpp.tx_hash"].startswith("0x")
    token = shop.requests[-1].headers["authorization"].split()[1]
    assert all(token not in str(v) for v in span.attributes.values())


def test_without_opentelemetry(make_client: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_telemetry, "_trace", None)
    client, _ = make_client()
    assert client.post(ORIGIN + "/v1/x", json={}).status_code == 200


def test_no_span_without_a_tracer_provider() -> None:
    """opentelemetry-api without a provider: nothing could record, so no span is made at all."""
    trace = pytest.importorskip("opentelemetry.trace")
    if not isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider):
        pytest.skip("a tracer provider is installed in this process")
    with _telemetry.span("mpp.pay", None) as span:  # type: ignore[arg-type]
        assert span is None
