"""Discovery documents (pure): ``/openapi.json``, ``/llms.txt`` and the ``/v1/models`` list.

``openapi.json`` follows draft-payment-discovery-00 (mpp-protocol.md §5): OpenAPI 3.1.0, a
top-level ``x-service-info`` and, on each paid operation, ``x-payment-info`` in the ``offers``
form with ``amount: null`` (the price depends on the model and the request; the 402 challenge
is authoritative) and a ``402`` response.
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal
from typing import Any

from .. import __version__
from .pricing import PriceTable

PAID_ROUTES: dict[str, str] = {
    "/v1/chat/completions": "OpenAI-compatible chat completions (JSON or SSE), answered by Claude",
    "/v1/messages": "Anthropic Messages API passthrough (JSON or SSE)",
}


def _usd(value: Decimal) -> str:
    return format(value.normalize(), "f")


def models_list(table: PriceTable, *, created: int = 0) -> dict[str, Any]:
    """The ``GET /v1/models`` body: OpenAI's list shape plus a ``pricing`` object per model.

    ``pricing`` is USD per million tokens (decimal strings) for input, output, cache reads and
    5-minute cache writes.
    """
    data = []
    for model in sorted(table.models()):
        price = table.price(model)
        data.append({"id": model, "object": "model", "created": created, "owned_by": "anthropic",
                     "pricing": {"unit": "USD per million tokens", "input": _usd(price.input),
                                 "output": _usd(price.output), "cache_read": _usd(price.cache_read),
                                 "cache_write": _usd(price.cache_write)}})
    return {"object": "list", "data": data}


def _offers(currencies: Sequence[str]) -> dict[str, Any]:
    return {"offers": [{"intent": "charge", "method": "tempo", "amount": None, "currency": cur,
                        "description": "price depends on the model, prompt size and max_tokens"}
                       for cur in currencies]}


def _paid_operation(summary: str, currencies: Sequence[str]) -> dict[str, Any]:
    problem = {"application/problem+json": {"schema": {"type": "object"}}}
    return {"post": {
        "summary": summary,
        "requestBody": {"required": True, "content": {"application/json": {"schema": {
            "type": "object", "required": ["model", "messages"],
            "properties": {"model": {"type": "string"}, "messages": {"type": "array"},
                           "max_tokens": {"type": "integer"}, "stream": {"type": "boolean"}}}}}},
        "parameters": [{"name": "Idempotency-Key", "in": "header", "required": False,
                        "schema": {"type": "string"},
                        "description": "replays the stored response of a paid request (24 h)"}],
        "responses": {
            "200": {"description": "the completion; Payment-Receipt header",
                    "content": {"application/json": {}, "text/event-stream": {}}},
            "402": {"description": "payment required: WWW-Authenticate: Payment challenges",
                    "content": problem},
        },
        "x-payment-info": _offers(currencies),
    }}


def openapi(*, base_url: str, realm: str, currencies: Sequence[str]) -> dict[str, Any]:
    """The discovery document.

    Args:
        base_url: the server's public origin, e.g. ``https://llm.example.com`` (for doc links).
        realm: the payment realm (shown in the description).
        currencies: accepted TIP-20 token addresses.
    """
    paths: dict[str, Any] = {path: _paid_operation(summary, currencies)
                             for path, summary in PAID_ROUTES.items()}
    paths["/v1/models"] = {"get": {"summary": "models served here, with prices (free)",
                                   "responses": {"200": {"description": "model list"}}}}
    paths["/health"] = {"get": {"summary": "liveness (free)", "responses": {"200": {"description": "ok"}}}}
    return {
        "openapi": "3.1.0",
        "info": {"title": "mpp-claude paid LLM proxy", "version": __version__,
                 "description": f"Pay per request over MPP (realm {realm}) on the Tempo chain."},
        "servers": [{"url": base_url}],
        "x-service-info": {"categories": ["ai", "llm"],
                           "docs": {"homepage": f"{base_url}/", "apiReference": f"{base_url}/openapi.json",
                                    "llms": f"{base_url}/llms.txt"}},
        "paths": paths,
    }


def llms_txt(*, base_url: str, realm: str, currencies: Sequence[str], table: PriceTable) -> str:
    """A short plain-text guide for agents (``/llms.txt``)."""
    lines = [
        "# mpp-claude paid LLM proxy",
        "",
        "> OpenAI-compatible chat completions answered by Claude, paid per request over MPP",
        "> (HTTP 402, `Payment` auth scheme, intent `charge`, method `tempo`).",
        "",
        f"- Realm: {realm}",
        f"- Currencies (TIP-20): {', '.join(currencies)}",
        f"- Discovery: {base_url}/openapi.json",
        f"- Models and prices: {base_url}/v1/models",
        "",
        "## How to pay",
        "",
        "1. POST /v1/chat/completions (or /v1/messages) without payment: the 402 answer carries",
        "   one `WWW-Authenticate: Payment` challenge per accepted currency. The amount is an",
        "   upper bound: prompt size plus max_tokens at the model's output price.",
        "2. Pay the challenge (a Tempo transferWithMemo with the challenge-bound memo) and resend",
        "   the same body with `Authorization: Payment <credential>`; no API key is needed.",
        "3. The 200 answer has a `Payment-Receipt` header (reference = transaction hash).",
        "   Send an `Idempotency-Key` so a retry replays the answer instead of paying twice.",
        "",
        "## Models",
        "",
    ]
    for model in sorted(table.models()):
        price = table.price(model)
        lines.append(f"- {model}: ${_usd(price.input)} input / ${_usd(price.output)} output "
                     "per million tokens")
    return "\n".join(lines) + "\n"
