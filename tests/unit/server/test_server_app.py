"""The app without a chain: 402 shape, bad input never 500 and never a payment, free routes.

A fake RPC answers only ``eth_chainId`` (no request in this file gets far enough to pay).
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from typing import Any

import pytest
from starlette.testclient import TestClient

from mpp_claude.errors import ConfigError
from mpp_claude.protocol.challenge import parse_challenges
from mpp_claude.protocol.problem import Problem
from mpp_claude.server.app import create_app
from mpp_claude.server.config import build_config
from mpp_claude.server.stores import MemoryStore
from mpp_claude.server.upstreams import LocalUpstream

PATH_USD = "0x20c0000000000000000000000000000000000000"
ALPHA = "0x20c0000000000000000000000000000000000001"
CHAT = {"model": "claude-haiku-4-5", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 100}


class FakeRpc:
    """Answers the chain id; anything else would be a bug in these tests."""

    def __init__(self, chain_id: int = 31337) -> None:
        self._chain_id = chain_id

    async def chain_id(self) -> int:
        return self._chain_id

    async def call(self, method: str, params: Any = None) -> Any:
        raise AssertionError(f"unexpected RPC {method}")


def make_client(*, chain_id: int = 31337, **flags: Any) -> tuple[TestClient, LocalUpstream]:
    cfg = build_config(flags={"secret_key": "k" * 40, "recipient": "0x" + "cd" * 20, "rpc_url": "http://x",
                              "chain_id": 31337, "store": "memory://", "realm": "unit.test",
                              "max_body_bytes": 4096, **flags})
    upstream = LocalUpstream(seed=b"unit")
    app = create_app(cfg, store=MemoryStore(), upstream=upstream, rpc=FakeRpc(chain_id))  # type: ignore[arg-type]
    return TestClient(app, raise_server_exceptions=True), upstream


@pytest.fixture
def client() -> Iterator[TestClient]:
    tc, _ = make_client(metrics=True)
    with tc:
        yield tc


def test_unpaid_request_gets_402_with_challenge_and_problem(client: TestClient) -> None:
    """No credential: 402, no-store, problem+json payment-required, one bound challenge."""
    r = client.post("/v1/chat/completions", json=CHAT)
    assert r.status_code == 402
    assert r.headers["cache-control"] == "no-store"
    assert r.headers["content-type"] == "application/problem+json"
    assert "retry-after" not in r.headers and "payment-receipt" not in r.headers
    problem = Problem.from_json(r.content)
    assert problem.suffix == "payment-required" and problem.status == 402
    (ch,) = parse_challenges(r.headers.get_list("www-authenticate"))
    assert (ch.realm, ch.method, ch.intent) == ("unit.test", "tempo", "charge")
    assert ch.request_data["currency"] == PATH_USD and int(ch.request_data["amount"]) > 0
    assert ch.digest is not None and ch.expires is not None and ch.opaque is not None


def test_openai_bearer_key_is_not_a_credential(client: TestClient) -> None:
    """The openai SDK's Authorization: Bearer is ignored: still 402 payment-required, no bearer needed."""
    r = client.post("/v1/chat/completions", json=CHAT, headers={"authorization": "Bearer sk-whatever"})
    assert r.status_code == 402
    assert Problem.from_json(r.content).suffix == "payment-required"


def test_several_currencies_give_several_offers() -> None:
    """With two accepted currencies the 402 carries two challenges, one per currency."""
    tc, _ = make_client(currencies=[PATH_USD, ALPHA])
    with tc:
        r = tc.post("/v1/chat/completions", json=CHAT)
    offers = parse_challenges(r.headers.get_list("www-authenticate"))
    assert [o.request_data["currency"] for o in offers] == [PATH_USD, ALPHA]
    assert len({o.id for o in offers}) == 2


def _fake_credential() -> str:
    token = json.dumps({"challenge": {"id": "x", "realm": "unit.test", "method": "tempo", "intent": "charge",
                                      "request": "e30"}, "payload": {"type": "hash", "hash": "0x00"}})
    return "Payment " + base64.urlsafe_b64encode(token.encode()).decode().rstrip("=")


@pytest.mark.parametrize(("authorization", "problem"), [
    ("Payment !!!not-base64!!!", "malformed-credential"),
    ("Payment e30", "malformed-credential"),  # {} : no challenge
    ("Payment", "malformed-credential"),
    (_fake_credential(), "invalid-challenge"),  # forged id
])
def test_bad_credentials_get_402_with_a_fresh_challenge(client: TestClient, authorization: str,
                                                        problem: str) -> None:
    """Malformed or forged credentials: 402 with the right problem, a fresh challenge and Retry-After."""
    r = client.post("/v1/chat/completions", json=CHAT, headers={"authorization": authorization})
    assert r.status_code == 402
    assert Problem.from_json(r.content).suffix == problem
    assert parse_challenges(r.headers.get_list("www-authenticate"))
    assert r.headers["retry-after"] == "60"
    assert r.headers["cache-control"] == "no-store"


def test_two_payment_credentials_are_a_400(client: TestClient) -> None:
    """More than one Authorization: Payment credential is a 400 (spec SHOULD)."""
    r = client.post("/v1/chat/completions", json=CHAT,
                    headers=[("authorization", "Payment e30"), ("authorization", "Payment e30")])
    assert r.status_code == 400
    assert r.json()["error"]["code"] == "multiple_credentials"


@pytest.mark.parametrize(("body", "status", "code"), [
    (b"not json", 400, "invalid_json"),
    (b"", 400, "invalid_json"),
    (b"[1, 2]", 400, "invalid_json"),
    (json.dumps({**CHAT, "model": "gpt-4o"}).encode(), 404, "model_not_found"),
    (json.dumps({**CHAT, "messages": "hi"}).encode(), 400, None),
    (json.dumps({**CHAT, "content": "x" * 5000}).encode(), 413, "request_too_large"),
])
def test_bad_input_is_a_clear_4xx_before_any_payment(client: TestClient, body: bytes, status: int,
                                                     code: str | None) -> None:
    """Bad JSON, unknown model, wrong shapes, oversize bodies: OpenAI-shaped 4xx, never 402 or 500."""
    r = client.post("/v1/chat/completions", content=body, headers={"content-type": "application/json"})
    assert r.status_code == status, r.text
    error = r.json()["error"]
    assert error["message"]
    if code:
        assert error["code"] == code
    assert "www-authenticate" not in r.headers


@pytest.mark.parametrize("path", ["/v1/chat/completions", "/v1/messages"])
def test_get_on_a_paid_route_is_405_with_allow(client: TestClient, path: str) -> None:
    """Paid routes answer other methods with 405 and Allow: POST."""
    r = client.get(path)
    assert r.status_code == 405
    assert r.headers["allow"] == "POST"


def test_unknown_path_is_404(client: TestClient) -> None:
    """An unknown path is a JSON 404."""
    r = client.get("/v2/nothing")
    assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"


@pytest.mark.parametrize(("payload", "param"), [
    ({"model": "claude-haiku-4-5", "messages": [{"role": "user", "content": "x"}]}, "max_tokens"),
    ({"model": "claude-haiku-4-5", "max_tokens": 10, "messages": []}, "messages"),
    ({"model": "claude-haiku-4-5", "max_tokens": 10, "messages": [{"role": "user", "content": "x"}],
      "container": "c"}, "container"),
    ({"model": "claude-haiku-4-5", "max_tokens": 10, "messages": [{"role": "user", "content": "x"}],
      "tools": [{"type": "web_search_20250305", "name": "web_search"}]}, "tools"),
    ({"model": "claude-haiku-4-5", "max_tokens": 10_000_000, "messages": [{"role": "user", "content": "x"}]},
     "max_tokens"),
])
def test_messages_route_refuses_what_the_quote_cannot_cover(client: TestClient, payload: dict[str, Any],
                                                            param: str) -> None:
    """/v1/messages: missing max_tokens, server tools, unknown fields: Anthropic-shaped 400 before payment."""
    r = client.post("/v1/messages", json=payload)
    assert r.status_code == 400
    body = r.json()
    assert body["type"] == "error" and body["error"]["type"] == "invalid_request_error"
    assert param in body["error"]["message"]


def test_messages_route_asks_for_payment(client: TestClient) -> None:
    """A valid Messages request is quoted from its own max_tokens and gets a 402."""
    r = client.post("/v1/messages", json={"model": "claude-haiku-4-5", "max_tokens": 1000,
                                          "messages": [{"role": "user", "content": "x"}]})
    assert r.status_code == 402
    (ch,) = parse_challenges(r.headers.get_list("www-authenticate"))
    assert int(ch.request_data["amount"]) >= 1000 * 5


def test_models_list_has_prices(client: TestClient) -> None:
    """GET /v1/models is free and lists every model with its prices."""
    r = client.get("/v1/models")
    assert r.status_code == 200
    haiku = next(m for m in r.json()["data"] if m["id"] == "claude-haiku-4-5")
    assert haiku["pricing"]["input"] == "1" and haiku["pricing"]["output"] == "5"


def test_openapi_discovery_document(client: TestClient) -> None:
    """/openapi.json: OpenAPI 3.1.0, x-service-info, x-payment-info offers and a 402 on paid operations."""
    doc = client.get("/openapi.json").json()
    assert doc["openapi"] == "3.1.0"
    assert doc["x-service-info"]["docs"]["llms"].endswith("/llms.txt")
    op = doc["paths"]["/v1/chat/completions"]["post"]
    assert "402" in op["responses"]
    (offer,) = op["x-payment-info"]["offers"]
    assert offer == {"intent": "charge", "method": "tempo", "amount": None, "currency": PATH_USD,
                     "description": offer["description"]}


def test_llms_txt_health_and_metrics(client: TestClient) -> None:
    """llms.txt explains payment; /health is ok; /metrics counts requests by outcome."""
    assert "Payment" in client.get("/llms.txt").text
    assert client.get("/health").json() == {"status": "ok"}
    client.post("/v1/chat/completions", json=CHAT)
    text = client.get("/metrics").text
    line = 'mpp_requests_total{route="/v1/chat/completions",outcome="payment_required",status="402"} 1'
    assert line in text


def test_unpaid_requests_never_reach_the_upstream() -> None:
    """402s and 4xx make no upstream call."""
    tc, upstream = make_client()
    with tc:
        tc.post("/v1/chat/completions", json=CHAT)
        tc.post("/v1/chat/completions", json=CHAT, headers={"authorization": _fake_credential()})
        tc.post("/v1/chat/completions", content=b"{")
    assert upstream.calls == 0


def test_wrong_chain_fails_at_start() -> None:
    """The lifespan refuses to start when the RPC serves another chain than configured."""
    tc, _ = make_client(chain_id=4217)
    with pytest.raises(ConfigError, match="serves chain 4217"), tc:
        pass


def test_accept_payment_never_removes_every_offer(client: TestClient) -> None:
    """An Accept-Payment that matches nothing (or is malformed) leaves the offers as they are."""
    for header in ("stripe/charge", "tempo/charge;q=0", "%%%"):
        r = client.post("/v1/chat/completions", json=CHAT, headers={"accept-payment": header})
        assert r.status_code == 402
        assert parse_challenges(r.headers.get_list("www-authenticate"))


def test_query_is_part_of_the_bound_scope(client: TestClient) -> None:
    """The challenge's opaque scope names method, path and query."""
    from mpp_claude.protocol.encoding import decode_b64_json

    r = client.post("/v1/chat/completions?tier=basic", json=CHAT)
    (ch,) = parse_challenges(r.headers.get_list("www-authenticate"))
    assert decode_b64_json(ch.opaque or "")["route"] == "POST /v1/chat/completions?tier=basic"


def test_one_structured_log_line_per_request(client: TestClient, caplog: pytest.LogCaptureFixture) -> None:
    """Each request logs one JSON line with route, status, outcome, model, amount; never the credential."""
    import logging

    secret_looking = _fake_credential()
    with caplog.at_level(logging.INFO, logger="mpp_claude.server.access"):
        client.post("/v1/chat/completions", json=CHAT, headers={"authorization": secret_looking})
        client.get("/health")
    lines = [json.loads(r.getMessage()) for r in caplog.records if r.name == "mpp_claude.server.access"]
    assert len(lines) == 2
    refused, health = lines
    assert refused["route"] == "/v1/chat/completions" and refused["status"] == 402
    assert refused["outcome"] == "rejected" and refused["problem"] == "invalid-challenge"
    assert refused["model"] == "claude-haiku-4-5" and refused["latency_ms"] >= 0
    assert health["outcome"] == "free" and health["status"] == 200
    assert secret_looking.split()[1] not in caplog.text


def test_price_override_for_a_new_model_needs_both_prices() -> None:
    """A configured price for a model the table lacks must name input and output: ConfigError at build."""
    with pytest.raises(ConfigError, match="my-model"):
        make_client(prices={"my-model": {"output": "1"}})


def test_messages_thinking_budget_must_fit_max_tokens(client: TestClient) -> None:
    """A thinking budget >= max_tokens would be an upstream 400 after payment: refused before."""
    r = client.post("/v1/messages", json={"model": "claude-haiku-4-5", "max_tokens": 100,
                                          "thinking": {"type": "enabled", "budget_tokens": 100},
                                          "messages": [{"role": "user", "content": "x"}]})
    assert r.status_code == 400 and "budget_tokens" in r.json()["error"]["message"]
