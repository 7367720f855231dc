"""Test doubles for client unit tests: a 402 "shop" for MockTransport and a payer without a chain.

The shop issues real HMAC-bound challenges with ``protocol/`` and checks credentials with
``parse_credential`` + ``verify_challenge_id`` (no chain: that is what the devnet tests do).
It honours ``Idempotency-Key`` by replaying the stored response, like the reference server.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from typing import Any

import httpx
import httpx2

import mpp_claude.httpx as legacy
from mpp_claude.client import AsyncMppClient, MppClient
from mpp_claude.client.payer import Signed
from mpp_claude.protocol.challenge import Challenge, format_challenge, new_challenge, verify_challenge_id
from mpp_claude.protocol.credential import Credential, format_credential, parse_credential
from mpp_claude.protocol.problem import Problem
from mpp_claude.protocol.receipt import Receipt, format_receipt
from mpp_claude.tempo import tip20

SECRET = "unit-test-secret-that-is-at-least-32-bytes-long"
PAYEE = "0x" + "ab" * 20
KEY = "0x" + "11" * 32
ORIGIN = "https://shop.test"
#: the HTTP library, its sync and its async paying client
LIBS: dict[str, tuple[Any, Any, Any]] = {"httpx2": (httpx2, MppClient, AsyncMppClient),
                                         "httpx": (httpx, legacy.MppClient, legacy.AsyncMppClient)}


class Shop:
    """A MockTransport handler: 402 without a valid credential, 200 + receipt with one."""

    def __init__(self, *, price: int = 10_000, payee: str = PAYEE, chain_id: int = 31337,
                 currency: str = tip20.PATH_USD, expires_in: float = 300, paid_status: int = 200,
                 realm: str = "shop.test", stream: bool = False, method: str = "tempo", mod: Any = httpx2,
                 fail_first_paid: bool = False) -> None:
        self.price, self.payee, self.chain_id, self.currency = price, payee, chain_id, currency
        self.expires_in, self.paid_status, self.realm, self.stream = expires_in, paid_status, realm, stream
        self.method, self.mod, self.fail_first_paid = method, mod, fail_first_paid
        self.requests: list[Any] = []
        self.issued = 0
        self.accepted: list[Credential] = []
        self.used: set[str] = set()
        self.stored: dict[str, tuple[int, bytes, dict[str, str]]] = {}
        self.on_paid: Callable[[Any], None] | None = None

    def challenge(self) -> Challenge:
        request: dict[str, Any] = {"amount": str(self.price), "currency": self.currency,
                                   "recipient": self.payee, "methodDetails": {"chainId": self.chain_id}}
        expires = datetime.now(timezone.utc) + timedelta(seconds=self.expires_in)
        self.issued += 1  # a nonce in opaque makes every challenge id unique, as real servers do
        return new_challenge(SECRET, realm=self.realm, method=self.method, intent="charge", request=request,
                             expires=expires.replace(microsecond=0), opaque={"n": str(self.issued)})

    def _402(self, problem: Problem | None = None) -> Any:
        body = (problem or Problem.of("payment-required", "pay first")).to_json()
        return self.mod.Response(402, headers={"www-authenticate": format_challenge(self.challenge()),
                                             "content-type": "application/problem+json",
                                             "cache-control": "no-store"}, content=body)

    def __call__(self, request: Any) -> Any:
        self.requests.append(request)
        auth = request.headers.get("authorization", "")
        key = request.headers.get("idempotency-key")
        if not auth.startswith("Payment "):
            return self._402()
        cred = parse_credential(auth)
        if key and key in self.stored:
            status, body, headers = self.stored[key]
            return self.mod.Response(status, headers=headers, content=body)
        if not verify_challenge_id(SECRET, cred.challenge) or cred.challenge.id in self.used:
            return self._402(Problem.of("invalid-challenge", "challenge already used or unknown"))
        self.used.add(cred.challenge.id)
        self.accepted.append(cred)
        if self.on_paid is not None:
            self.on_paid(request)
        if self.paid_status != 200:
            return self.mod.Response(self.paid_status, json={"error": {"message": "upstream failed"}})
        receipt = Receipt(status="success", timestamp="2026-11-25T12:00:00Z", reference="0x" + "cd" * 32,
                          method="tempo")
        headers = {"payment-receipt": format_receipt(receipt), "cache-control": "private"}
        if self.stream:
            headers["content-type"] = "text/event-stream"
            body = (b'data: {"id":"1","object":"chat.completion.chunk","created":1,"model":"m",'
                    b'"choices":[]}\n\ndata: [DONE]\n\n')
        else:
            headers["content-type"] = "application/json"
            shape = message() if request.url.path.endswith("/messages") else completion()
            body = json.dumps(shape).encode()
        if key:
            self.stored[key] = (200, body, headers)
        if self.fail_first_paid and len(self.accepted) == 1:
            return self.mod.Response(500, json={"error": {"message": "upstream failed after payment"}})
        return self.mod.Response(200, headers=headers, content=body)


def completion() -> dict[str, Any]:
    return {"id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": "claude-test",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "hi"},
                         "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}}


def message() -> dict[str, Any]:
    return {"id": "msg_1", "type": "message", "role": "assistant", "model": "claude-test",
            "content": [{"type": "text", "text": "hi"}], "stop_reason": "end_turn", "stop_sequence": None,
            "usage": {"input_tokens": 1, "output_tokens": 1}}


class FakePayer:
    """Signs nothing: a credential with a dummy payload, for flow tests without a chain."""

    def __init__(self, chain_id: int = 31337, mined: bool | None = None) -> None:
        self._chain_id = chain_id
        self.mined = mined
        self.signed: list[Challenge] = []

    def chain_id(self) -> int:
        return self._chain_id

    def sign(self, challenge: Challenge, charge: Any) -> Signed:
        self.signed.append(challenge)
        cred = Credential(challenge=challenge, payload={"type": "transaction", "signature": "0x76"})
        return Signed("Authorization", format_credential(cred), "0x" + f"{len(self.signed):064x}", 2**40)

    def tx_status(self, tx_hash: str) -> bool | None:
        return self.mined


class AsyncFakePayer(FakePayer):
    async def chain_id(self) -> int:  # type: ignore[override]
        return self._chain_id

    async def sign(self, challenge: Challenge, charge: Any) -> Signed:  # type: ignore[override]
        return FakePayer.sign(self, challenge, charge)

    async def tx_status(self, tx_hash: str) -> bool | None:  # type: ignore[override]
        return self.mined
