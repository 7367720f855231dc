"""Idempotency-Key scoped by the credential's claimed ``source``, through the HTTP app on the devnet.

A credential whose ``source`` names another payer (Bob signs, claims Alice) is served when it
paid for itself, but nothing is kept for it; it never gets Alice's stored answer; and a
sponsored one is refused before anything is broadcast.  Payments are real (never mocked).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from typing import Any

import httpx2
import pytest
from eth_account import Account
from paying_transport import pay_challenge
from server_harness import paid_server, server_config

from mpp_claude.devnet import Devnet
from mpp_claude.protocol.challenge import parse_challenges
from mpp_claude.protocol.credential import Credential, format_credential, parse_credential
from mpp_claude.protocol.problem import Problem
from mpp_claude.protocol.receipt import parse_receipt
from mpp_claude.server.stores import MemoryStore
from mpp_claude.server.upstreams import LocalUpstream
from mpp_claude.tempo.charge import did_pkh
from mpp_claude.tempo.signer import LocalSigner

pytestmark = pytest.mark.devnet

CHAT = "/v1/chat/completions"


def _body(text: str) -> bytes:
    return json.dumps({"model": "claude-haiku-4-5", "max_tokens": 60,
                       "messages": [{"role": "user", "content": text}]}).encode()


class Shop:
    """A running paid server: post, fetch a challenge, pay it (optionally claiming another source)."""

    def __init__(self, url: str, devnet: Devnet, upstream: LocalUpstream) -> None:
        self.http = httpx2.Client(base_url=url, timeout=30)
        self.devnet, self.upstream = devnet, upstream

    def post(self, body: bytes, auth: str | None = None, key: str | None = None) -> httpx2.Response:
        headers = {"content-type": "application/json"}
        if auth:
            headers["authorization"] = auth
        if key:
            headers["idempotency-key"] = key
        return self.http.post(CHAT, content=body, headers=headers)

    def pay(self, body: bytes, signer: LocalSigner, claims: str | None = None) -> str:
        """A credential paying a fresh challenge for ``body``, signed by ``signer``, whose
        ``source`` names ``claims`` (default: the signer itself)."""
        r = self.post(body)
        assert r.status_code == 402, r.text
        auth, _ = pay_challenge(parse_challenges(r.headers.get_list("www-authenticate"))[0], signer,
                                self.devnet.rpc)
        if claims is None:
            return str(auth)
        cred = parse_credential(auth)
        lying = Credential(challenge=cred.challenge, payload=cred.payload,
                           source=did_pkh(self.devnet.chain_id, claims))
        return format_credential(lying)


@pytest.fixture
def accounts(devnet: Devnet) -> tuple[LocalSigner, LocalSigner]:
    """Alice and Bob, each with pathUSD for payments and fees."""
    return (LocalSigner.from_account(devnet.new_funded_account()),
            LocalSigner.from_account(devnet.new_funded_account()))


@pytest.fixture(scope="module")
def shop(devnet: Devnet) -> Iterator[Shop]:
    upstream = LocalUpstream(seed=b"source")
    cfg = server_config(devnet.rpc_url, devnet.chain_id)
    with paid_server(cfg, upstream=upstream, store=MemoryStore()) as (url, _):
        s = Shop(url, devnet, upstream)
        yield s
        s.http.close()


def _problem(r: httpx2.Response) -> str | None:
    assert r.status_code == 402 and r.headers["content-type"] == "application/problem+json", r.text
    return Problem.from_json(r.content).suffix


def test_a_lying_source_pays_for_itself_but_never_reaches_anothers_answer(
        shop: Shop, devnet: Devnet, accounts: tuple[LocalSigner, LocalSigner],
        caplog: pytest.LogCaptureFixture) -> None:
    """Bob pays claiming Alice with her key K: served (his money moved), a warning, nothing kept:
    Alice's own request with K is then paid and answered afresh, her retry replays her answer,
    and Bob's credential with K gets a 402 (verification-failed), not Alice's answer."""
    alice, bob = accounts
    body, key = _body("who pays?"), f"k-{time.monotonic_ns()}"
    bob_before = devnet.balance(bob.address)
    lying = shop.pay(body, bob, claims=alice.address)
    with caplog.at_level(logging.WARNING, logger="mpp_claude.server.payments"):
        served = shop.post(body, lying, key)
        assert served.status_code == 200, served.text
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and bob.address.lower() not in caplog.text:
            time.sleep(0.01)
    amount = int(parse_credential(lying).challenge.request_data["amount"])
    assert bob_before - devnet.balance(bob.address) >= amount  # Bob paid (amount + his fee)
    assert "idempotent-replayed" not in served.headers
    warning = next(r.getMessage() for r in caplog.records if r.name == "mpp_claude.server.payments")
    assert bob.address.lower() in warning and alice.address.lower() in warning and key not in caplog.text

    calls = shop.upstream.calls
    first = shop.post(body, shop.pay(body, alice), key)  # K was not kept for Bob: Alice pays afresh
    assert first.status_code == 200 and "idempotent-replayed" not in first.headers
    assert parse_receipt(first.headers["payment-receipt"]).reference != \
        parse_receipt(served.headers["payment-receipt"]).reference
    assert shop.upstream.calls == calls + 1
    again = shop.post(body, shop.pay(body, alice), key)  # any credential of Alice's gets her answer
    assert again.status_code == 200 and again.headers["idempotent-replayed"] == "true"
    assert again.content == first.content
    assert _problem(shop.post(body, lying, key)) == "verification-failed"
    assert _problem(shop.post(body, shop.pay(body, bob, claims=alice.address), key)) == "verification-failed"
    assert shop.upstream.calls == calls + 1


def test_sponsored_pull_with_a_lying_source_is_refused_before_broadcast(
        devnet: Devnet, accounts: tuple[LocalSigner, LocalSigner]) -> None:
    """Fees sponsored: Bob claiming Alice is refused (verification-failed) before anything is
    broadcast: no balance moves, no upstream call; the key stays free for Alice."""
    alice, bob = accounts
    sponsor = devnet.new_funded_account()
    recipient = Account.create().address
    cfg = server_config(devnet.rpc_url, devnet.chain_id, recipient=recipient,
                        fee_payer_key="0x" + bytes(sponsor.key).hex(), modes=["transaction"])
    upstream = LocalUpstream(seed=b"sponsored-source")
    with paid_server(cfg, upstream=upstream, store=MemoryStore()) as (url, _):
        shop = Shop(url, devnet, upstream)
        body, key = _body("sponsored"), "sponsored-key"
        lying = shop.pay(body, bob, claims=alice.address)
        assert parse_credential(lying).challenge.request_data["methodDetails"]["feePayer"] is True
        before: dict[str, Any] = {a: devnet.balance(a) for a in (bob.address, sponsor.address, recipient)}
        assert _problem(shop.post(body, lying, key)) == "verification-failed"
        devnet.mine()
        assert {a: devnet.balance(a) for a in before} == before and upstream.calls == 0
        paid = shop.post(body, shop.pay(body, alice), key)
        assert paid.status_code == 200 and "idempotent-replayed" not in paid.headers
        assert devnet.balance(recipient) > before[recipient] and upstream.calls == 1
        shop.http.close()
