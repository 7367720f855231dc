"""The paid proxy on the devnet: real payments, receipts on chain, the replay matrix, idempotency.

The server runs under uvicorn on loopback with the offline local upstream (so upstream calls
can be counted); payments are real Tempo transactions on the anvil devnet (never mocked).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx2
import openai
import pytest
from eth_account import Account
from paying_transport import PayingTransport, pay_challenge
from server_harness import paid_server, server_config

from mpp_claude.devnet import Devnet
from mpp_claude.protocol.challenge import Challenge, parse_challenges
from mpp_claude.protocol.credential import Credential, format_credential, parse_credential
from mpp_claude.protocol.problem import Problem
from mpp_claude.protocol.receipt import parse_receipt
from mpp_claude.server.stores import MemoryStore
from mpp_claude.server.upstreams import LocalUpstream
from mpp_claude.tempo import tip20
from mpp_claude.tempo.charge import build_charge_transaction, charge_gas_limit, sign_charge
from mpp_claude.tempo.memo import attribution_memo
from mpp_claude.tempo.request import ChargeRequest
from mpp_claude.tempo.signer import LocalSigner

pytestmark = pytest.mark.devnet

CHAT = "/v1/chat/completions"
BODY = {"model": "claude-haiku-4-5", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 100}


class Server:
    """A running paid server plus what tests inspect: its URL, upstream, store and recipient."""

    def __init__(self, url: str, upstream: LocalUpstream, store: MemoryStore, recipient: str) -> None:
        self.url, self.upstream, self.store, self.recipient = url, upstream, store, recipient
        self.http = httpx2.Client(base_url=url, timeout=30)

    def post(self, path: str, body: bytes, authorization: str | None = None,
             **headers: str) -> httpx2.Response:
        hdrs = {"content-type": "application/json", **headers}
        if authorization:
            hdrs["authorization"] = authorization
        return self.http.post(path, content=body, headers=hdrs)

    def challenge(self, path: str, body: bytes) -> Challenge:
        r = self.post(path, body)
        assert r.status_code == 402, r.text
        return parse_challenges(r.headers.get_list("www-authenticate"))[0]


@pytest.fixture(scope="module")
def server(devnet: Devnet) -> Iterator[Server]:
    recipient = Account.create().address
    upstream, store = LocalUpstream(seed=b"paid"), MemoryStore()
    with paid_server(server_config(devnet.rpc_url, devnet.chain_id, recipient=recipient),
                     upstream=upstream, store=store) as (url, _):
        srv = Server(url, upstream, store, recipient)
        yield srv
        srv.http.close()


@pytest.fixture
def signer(funded_account: Any) -> LocalSigner:
    return LocalSigner.from_account(funded_account)


def _body(**changes: Any) -> bytes:
    return json.dumps({**BODY, **changes}).encode()


def _problem(r: httpx2.Response) -> str | None:
    assert r.headers["content-type"] == "application/problem+json", r.text
    return Problem.from_json(r.content).suffix


def _transfer_log(receipt: dict[str, Any], recipient: str) -> tuple[int, bytes]:
    """(amount, memo) of the TransferWithMemo log from pathUSD to ``recipient``."""
    for lg in receipt["logs"]:
        topics = lg["topics"]
        if (lg["address"].lower() == tip20.PATH_USD and topics[0] == tip20.TOPIC_TRANSFER_WITH_MEMO
                and int(topics[2], 16) == int(recipient, 16)):
            return int(lg["data"], 16), bytes.fromhex(topics[3][2:])
    raise AssertionError(f"no TransferWithMemo to {recipient} in {receipt['logs']}")


def _openai(server: Server, devnet: Devnet, account: Any) -> tuple[openai.OpenAI, PayingTransport]:
    transport = PayingTransport(account, devnet.rpc_url)
    client = openai.OpenAI(base_url=server.url + "/v1", api_key="not-needed", max_retries=0,
                           http_client=httpx2.Client(transport=transport))
    return client, transport


# --- acceptance: an unmodified openai client pays and gets a completion ---------------------------


def test_openai_client_completion_with_receipt_on_chain(server: Server, devnet: Devnet,
                                                        funded_account: Any) -> None:
    """Non-streaming: completion, receipt whose tx is on chain with the right amount, payee and memo."""
    client, transport = _openai(server, devnet, funded_account)
    before = devnet.balance(server.recipient)
    raw = client.chat.completions.with_raw_response.create(
        model="claude-haiku-4-5", messages=[{"role": "user", "content": "hello"}])
    completion = raw.parse()
    assert completion.choices[0].message.content
    assert raw.headers["cache-control"] == "private"
    receipt = parse_receipt(raw.headers["payment-receipt"])
    (payment,) = transport.payments
    assert receipt.reference == payment.tx_hash and receipt.status == "success"
    chain_receipt = devnet.rpc.receipt(receipt.reference)
    assert chain_receipt is not None and int(chain_receipt["status"], 16) == 1
    amount, memo = _transfer_log(chain_receipt, server.recipient)
    assert amount == int(payment.challenge.request_data["amount"])
    assert memo == attribution_memo(payment.challenge.id, payment.challenge.realm)
    assert devnet.balance(server.recipient) - before == amount


def test_openai_client_streaming_with_receipt(server: Server, devnet: Devnet, funded_account: Any) -> None:
    """Streaming: chunks arrive, the receipt is in the initial headers, and the usage is recorded."""
    client, transport = _openai(server, devnet, funded_account)
    with client.chat.completions.with_streaming_response.create(
            model="claude-haiku-4-5", messages=[{"role": "user", "content": "stream please"}], stream=True,
            stream_options={"include_usage": True}) as response:
        receipt = parse_receipt(response.headers["payment-receipt"])
        chunks = list(response.parse())
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens > 0
    assert receipt.reference == transport.payments[0].tx_hash
    assert devnet.rpc.receipt(receipt.reference) is not None


def test_native_messages_route_is_paid(server: Server, devnet: Devnet, funded_account: Any) -> None:
    """/v1/messages passes the Anthropic answer through after payment, with a receipt."""
    transport = PayingTransport(funded_account, devnet.rpc_url)
    with httpx2.Client(transport=transport, base_url=server.url) as http:
        r = http.post("/v1/messages", json={"model": "claude-haiku-4-5", "max_tokens": 50,
                                            "messages": [{"role": "user", "content": "hi"}]})
    assert r.status_code == 200, r.text
    assert r.json()["type"] == "message"
    assert parse_receipt(r.headers["payment-receipt"]).reference == transport.payments[0].tx_hash


def test_hash_mode_payment_is_accepted(server: Server, devnet: Devnet, signer: LocalSigner) -> None:
    """A push (hash) credential: the payer broadcast the transfer; the server checks the receipt."""
    body = _body()
    auth, tx_hash = pay_challenge(server.challenge(CHAT, body), signer, devnet.rpc, mode="hash")
    r = server.post(CHAT, body, auth)
    assert r.status_code == 200, r.text
    assert parse_receipt(r.headers["payment-receipt"]).reference == tx_hash


# --- the replay matrix: each refused with the right problem, no upstream call ----------------------


def _refused(server: Server, devnet: Devnet, path: str, body: bytes, auth: str, problem: str) -> None:
    calls, balance = server.upstream.calls, devnet.balance(server.recipient)
    r = server.post(path, body, auth)
    assert r.status_code == 402, r.text
    assert _problem(r) == problem
    assert parse_challenges(r.headers.get_list("www-authenticate"))  # a fresh challenge to pay
    assert "payment-receipt" not in r.headers
    assert server.upstream.calls == calls
    assert devnet.balance(server.recipient) == balance


def test_same_credential_twice(server: Server, devnet: Devnet, signer: LocalSigner) -> None:
    """The same transaction credential sent again is refused (invalid-challenge), not charged again."""
    body = _body()
    auth, _ = pay_challenge(server.challenge(CHAT, body), signer, devnet.rpc)
    assert server.post(CHAT, body, auth).status_code == 200
    _refused(server, devnet, CHAT, body, auth, "invalid-challenge")


def test_same_challenge_paid_twice(server: Server, devnet: Devnet, signer: LocalSigner) -> None:
    """A second, different transaction for an already used challenge is refused and not broadcast."""
    body = _body()
    challenge = server.challenge(CHAT, body)
    now = int(time.time())
    first, tx1 = pay_challenge(challenge, signer, devnet.rpc, now=now)
    assert server.post(CHAT, body, first).status_code == 200
    second, tx2 = pay_challenge(challenge, signer, devnet.rpc, now=now - 1)  # another validity window
    assert tx2 != tx1
    _refused(server, devnet, CHAT, body, second, "invalid-challenge")
    assert tx2 is not None and devnet.rpc.receipt(tx2) is None


def test_credential_for_route_a_on_route_b(server: Server, devnet: Devnet, signer: LocalSigner) -> None:
    """A credential for /v1/chat/completions presented on /v1/messages (same body, same price) is refused."""
    body = _body()
    auth, _ = pay_challenge(server.challenge(CHAT, body), signer, devnet.rpc)
    paid_request = parse_credential(auth).challenge.request_data
    assert server.challenge("/v1/messages", body).request_data == paid_request
    _refused(server, devnet, "/v1/messages", body, auth, "invalid-challenge")


def test_credential_for_body_x_with_body_y(server: Server, devnet: Devnet, signer: LocalSigner) -> None:
    """A credential paid for one prompt cannot buy another prompt of the same price (digest binding)."""
    auth, _ = pay_challenge(server.challenge(CHAT, _body()), signer, devnet.rpc)
    other = _body(messages=[{"role": "user", "content": "ho"}])
    _refused(server, devnet, CHAT, other, auth, "invalid-challenge")


def test_credential_for_one_query_on_another(server: Server, devnet: Devnet, signer: LocalSigner) -> None:
    """The query is part of the bound resource: ?tier=basic's credential does not pay ?tier=premium."""
    body = _body()
    auth, _ = pay_challenge(server.challenge(CHAT + "?tier=basic", body), signer, devnet.rpc)
    _refused(server, devnet, CHAT + "?tier=premium", body, auth, "invalid-challenge")


def test_paid_request_log_line(server: Server, devnet: Devnet, signer: LocalSigner,
                               caplog: pytest.LogCaptureFixture) -> None:
    """A paid request logs payer, amount, model, tokens, tx reference, latency and outcome 'paid'."""
    import logging

    body = _body(messages=[{"role": "user", "content": "log me"}])
    auth, maybe_hash = pay_challenge(server.challenge(CHAT, body), signer, devnet.rpc)
    tx_hash = str(maybe_hash)
    with caplog.at_level(logging.INFO, logger="mpp_claude.server.access"):
        assert server.post(CHAT, body, auth).status_code == 200
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and tx_hash not in caplog.text:
            time.sleep(0.01)
    line = next(json.loads(r.getMessage()) for r in caplog.records
                if r.name == "mpp_claude.server.access" and tx_hash in r.getMessage())
    assert line["outcome"] == "paid" and line["status"] == 200
    assert line["payer"] == signer.address.lower() and line["reference"] == tx_hash
    assert line["amount"] == int(parse_credential(auth).challenge.request_data["amount"])
    assert line["model"] == "claude-haiku-4-5" and line["output_tokens"] > 0 and line["latency_ms"] > 0
    assert auth.split()[1] not in caplog.text


def test_tampered_echo(server: Server, devnet: Devnet, signer: LocalSigner) -> None:
    """Editing the echoed amount breaks the HMAC binding: invalid-challenge."""
    body = _body()
    challenge = server.challenge(CHAT, body)
    request = challenge.request_data
    request["amount"] = "1"
    forged = Challenge.from_dict({**challenge.to_echo(), "request": request})
    cheap = ChargeRequest.from_request(request)
    tx = build_charge_transaction(cheap, challenge_id=forged.id, realm=forged.realm, now=int(time.time()),
                                  expires=int(time.time()) + 60, max_fee_per_gas=2 * devnet.rpc.base_fee())
    signed = sign_charge(tx, signer)
    auth = format_credential(Credential(challenge=forged, payload=signed.payload(), source=signed.source))
    _refused(server, devnet, CHAT, body, auth, "invalid-challenge")


def test_wrong_amount_is_payment_insufficient(server: Server, devnet: Devnet, signer: LocalSigner) -> None:
    """A transaction paying less than the challenge asks is refused before broadcast."""
    body = _body()
    challenge = server.challenge(CHAT, body)
    request = challenge.request_data
    request["amount"] = str(int(request["amount"]) - 1)
    tx = build_charge_transaction(ChargeRequest.from_request(request), challenge_id=challenge.id,
                                  realm=challenge.realm, now=int(time.time()),
                                  expires=int(time.time()) + 60, max_fee_per_gas=2 * devnet.rpc.base_fee())
    signed = sign_charge(tx, signer)
    auth = format_credential(Credential(challenge=challenge, payload=signed.payload(), source=signed.source))
    _refused(server, devnet, CHAT, body, auth, "payment-insufficient")
    assert signed.tx_hash is not None and devnet.rpc.receipt(signed.tx_hash) is None


def test_other_realm(server: Server, devnet: Devnet, signer: LocalSigner) -> None:
    """A credential for another realm (same secret) is refused by this server."""
    other_cfg = server_config(devnet.rpc_url, devnet.chain_id, recipient=server.recipient,
                              realm="other.realm")
    with paid_server(other_cfg, upstream=LocalUpstream(), store=MemoryStore()) as (url, _):
        other = Server(url, LocalUpstream(), MemoryStore(), server.recipient)
        auth, _ = pay_challenge(other.challenge(CHAT, _body()), signer, devnet.rpc)
        other.http.close()
    _refused(server, devnet, CHAT, _body(), auth, "invalid-challenge")


def test_expired_challenge(devnet: Devnet, signer: LocalSigner) -> None:
    """A credential presented after its challenge expired is payment-expired (and nothing moves)."""
    offset = [0.0]
    upstream, recipient = LocalUpstream(), Account.create().address
    cfg = server_config(devnet.rpc_url, devnet.chain_id, recipient=recipient)
    with paid_server(cfg, upstream=upstream, store=MemoryStore(),
                     clock=lambda: time.time() + offset[0]) as (url, _):
        srv = Server(url, upstream, MemoryStore(), recipient)
        auth, _ = pay_challenge(srv.challenge(CHAT, _body()), signer, devnet.rpc)
        offset[0] = 301.0
        _refused(srv, devnet, CHAT, _body(), auth, "payment-expired")
        srv.http.close()


def test_idempotent_replay_outlives_the_challenge(devnet: Devnet, signer: LocalSigner) -> None:
    """After the challenge expired, the same key + credential still gets its stored answer (no charge);
    a credential that never completed gets payment-expired."""
    offset = [0.0]
    upstream, recipient = LocalUpstream(), Account.create().address
    cfg = server_config(devnet.rpc_url, devnet.chain_id, recipient=recipient)
    with paid_server(cfg, upstream=upstream, store=MemoryStore(),
                     clock=lambda: time.time() + offset[0]) as (url, _):
        srv = Server(url, upstream, MemoryStore(), recipient)
        body = _body()
        auth, _ = pay_challenge(srv.challenge(CHAT, body), signer, devnet.rpc)
        unused, _ = pay_challenge(srv.challenge(CHAT, body), signer, devnet.rpc)
        first = srv.post(CHAT, body, auth, **{"idempotency-key": "late-retry"})
        assert first.status_code == 200
        offset[0] = 3600.0  # an hour later: challenge and validBefore long expired
        calls, balance = upstream.calls, devnet.balance(recipient)
        again = srv.post(CHAT, body, auth, **{"idempotency-key": "late-retry"})
        assert again.status_code == 200 and again.content == first.content
        late = srv.post(CHAT, body, unused, **{"idempotency-key": "never-completed"})
        assert late.status_code == 402 and _problem(late) == "payment-expired"
        assert upstream.calls == calls and devnet.balance(recipient) == balance
        srv.http.close()


def test_concurrent_replay_one_wins(server: Server, devnet: Devnet, signer: LocalSigner) -> None:
    """Two identical credentials sent at once: exactly one 200 and one 402, one payment on chain."""
    body = _body()
    auth, _ = pay_challenge(server.challenge(CHAT, body), signer, devnet.rpc)
    before = devnet.balance(server.recipient)
    results: list[int] = []
    barrier = threading.Barrier(2)

    def send() -> None:
        with httpx2.Client(base_url=server.url, timeout=30) as http:
            barrier.wait()
            r = http.post(CHAT, content=body,
                          headers={"authorization": auth, "content-type": "application/json"})
            results.append(r.status_code)

    threads = [threading.Thread(target=send) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == [200, 402]
    amount = int(parse_credential(auth).challenge.request_data["amount"])
    assert devnet.balance(server.recipient) - before == amount


# --- Idempotency-Key --------------------------------------------------------------------------------


def test_idempotent_retry_replays_without_charge_or_upstream(server: Server, devnet: Devnet,
                                                             signer: LocalSigner) -> None:
    """Same key + same credential: the stored answer, no second charge, no second upstream call."""
    body = _body(messages=[{"role": "user", "content": "idempotent"}])
    auth, _ = pay_challenge(server.challenge(CHAT, body), signer, devnet.rpc)
    first = server.post(CHAT, body, auth, **{"idempotency-key": "idem-1"})
    assert first.status_code == 200
    calls, balance = server.upstream.calls, devnet.balance(server.recipient)
    again = server.post(CHAT, body, auth, **{"idempotency-key": "idem-1"})
    assert again.status_code == 200
    assert again.content == first.content
    assert again.headers["payment-receipt"] == first.headers["payment-receipt"]
    assert again.headers["idempotent-replayed"] == "true"
    assert server.upstream.calls == calls and devnet.balance(server.recipient) == balance


def test_idempotent_streaming_answer_is_replayed(server: Server, devnet: Devnet, signer: LocalSigner) -> None:
    """A streamed answer is stored whole; the retry gets the same SSE bytes without a new charge."""
    body = _body(stream=True, messages=[{"role": "user", "content": "idempotent stream"}])
    auth, _ = pay_challenge(server.challenge(CHAT, body), signer, devnet.rpc)
    first = server.post(CHAT, body, auth, **{"idempotency-key": "idem-sse"})
    assert first.status_code == 200 and first.headers["content-type"].startswith("text/event-stream")
    assert first.content.endswith(b"data: [DONE]\n\n")
    calls = server.upstream.calls
    deadline = time.monotonic() + 5  # the stored copy is written when the stream has ended
    while True:
        again = server.post(CHAT, body, auth, **{"idempotency-key": "idem-sse"})
        if again.status_code != 409 or time.monotonic() > deadline:
            break
        time.sleep(0.02)
    assert again.status_code == 200 and again.content == first.content
    assert again.headers["payment-receipt"] == first.headers["payment-receipt"]
    assert server.upstream.calls == calls


def test_idempotency_key_with_another_body_is_422(server: Server, devnet: Devnet,
                                                  signer: LocalSigner) -> None:
    """Same key, different body (with a valid credential for it): 422, nothing charged."""
    body = _body(messages=[{"role": "user", "content": "first"}])
    auth, _ = pay_challenge(server.challenge(CHAT, body), signer, devnet.rpc)
    assert server.post(CHAT, body, auth, **{"idempotency-key": "idem-2"}).status_code == 200
    other = _body(messages=[{"role": "user", "content": "second"}])
    auth2, _ = pay_challenge(server.challenge(CHAT, other), signer, devnet.rpc)
    balance = devnet.balance(server.recipient)
    r = server.post(CHAT, other, auth2, **{"idempotency-key": "idem-2"})
    assert r.status_code == 422 and r.json()["error"]["code"] == "idempotency_key_reused"
    assert devnet.balance(server.recipient) == balance


# --- upstream failure after payment ----------------------------------------------------------------


@pytest.mark.parametrize("fault", ["529", "drop"])
def test_upstream_failure_after_payment_is_credited(server: Server, devnet: Devnet, signer: LocalSigner,
                                                    fault: str) -> None:
    """Upstream fails after the payment settled: OpenAI error, x-should-retry false, credit recorded."""
    import anyio

    body = _body(messages=[{"role": "user", "content": f"fault {fault}"}])
    auth, tx_hash = pay_challenge(server.challenge(CHAT, body), signer, devnet.rpc)
    server.upstream.inject(fault)
    r = server.post(CHAT, body, auth)
    assert r.status_code >= 500, r.text
    assert r.headers["x-should-retry"] == "false"
    assert "payment-receipt" not in r.headers
    error = r.json()["error"]
    assert error["payment"]["reference"] == tx_hash
    amount = parse_credential(auth).challenge.request_data["amount"]
    assert error["payment"]["credited"] == amount
    credits = anyio.run(server.store.records, "credit")
    assert any(c["reference"] == tx_hash and c["amount"] == int(amount) for c in credits)
    usage = [u for u in anyio.run(server.store.records, "usage") if u["reference"] == tx_hash]
    assert [(u["quoted"], u["cost"], u["outcome"]) for u in usage] == [(int(amount), 0, "upstream_error")]


def test_usage_is_recorded_next_to_the_quote(server: Server, devnet: Devnet, signer: LocalSigner) -> None:
    """Every paid request records its quoted amount and the actual cost from the upstream usage."""
    import anyio

    body = _body(messages=[{"role": "user", "content": "usage row"}])
    auth, tx_hash = pay_challenge(server.challenge(CHAT, body), signer, devnet.rpc)
    assert server.post(CHAT, body, auth).status_code == 200
    rows = [r for r in anyio.run(server.store.records, "usage") if r["reference"] == tx_hash]
    assert len(rows) == 1
    row = rows[0]
    assert row["quoted"] == int(parse_credential(auth).challenge.request_data["amount"])
    assert 0 < row["cost"] <= row["quoted"]
    assert row["output_tokens"] > 0 and row["model"] == "claude-haiku-4-5"


# --- fee sponsorship -----------------------------------------------------------------------------------


def test_sponsored_charge_and_gas_budget(devnet: Devnet, funded_account: Any) -> None:
    """With a fee payer the payer pays exactly the amount; once the gas budget is spent, challenges
    stop offering sponsorship and the payer pays its own fees."""
    sponsor = devnet.new_funded_account()
    recipient = Account.create().address
    budget = charge_gas_limit(1)  # one sponsored one-transfer payment
    cfg = server_config(devnet.rpc_url, devnet.chain_id, recipient=recipient,
                        fee_payer_key="0x" + bytes(sponsor.key).hex(), sponsor_budget=budget,
                        modes=["transaction"])
    signer = LocalSigner.from_account(funded_account)
    upstream = LocalUpstream()
    with paid_server(cfg, upstream=upstream, store=MemoryStore()) as (url, _):
        srv = Server(url, upstream, MemoryStore(), recipient)
        body = _body()
        challenge = srv.challenge(CHAT, body)
        assert challenge.request_data["methodDetails"]["feePayer"] is True
        payer_before, sponsor_before = devnet.balance(funded_account.address), devnet.balance(sponsor.address)
        auth, _ = pay_challenge(challenge, signer, devnet.rpc)
        r = srv.post(CHAT, body, auth)
        assert r.status_code == 200, r.text
        amount = int(challenge.request_data["amount"])
        assert payer_before - devnet.balance(funded_account.address) == amount  # no fee for the payer
        assert devnet.balance(sponsor.address) < sponsor_before  # the sponsor paid the fee
        chain_receipt = devnet.rpc.receipt(parse_receipt(r.headers["payment-receipt"]).reference)
        assert chain_receipt is not None and _transfer_log(chain_receipt, recipient)[0] == amount
        # budget spent: the next challenge does not sponsor, and an unsponsored payment still works
        nxt = srv.challenge(CHAT, body)
        assert "feePayer" not in nxt.request_data["methodDetails"]
        auth2, _ = pay_challenge(nxt, signer, devnet.rpc)
        assert srv.post(CHAT, body, auth2).status_code == 200
        srv.http.close()


def test_sponsor_budget_is_shared_by_replicas_and_spent_only_by_valid_payments(
        devnet: Devnet, funded_account: Any) -> None:
    """Two replicas on one store share one day's sponsor budget.  A refused credential spends none
    of it; once replica A spent it, replica B (which still offered feePayer) refuses the sponsored
    transaction before broadcast and stops offering sponsorship."""
    sponsor = devnet.new_funded_account()
    recipient = Account.create().address
    cfg = server_config(devnet.rpc_url, devnet.chain_id, recipient=recipient,
                        fee_payer_key="0x" + bytes(sponsor.key).hex(), sponsor_budget=charge_gas_limit(1),
                        modes=["transaction"])
    signer = LocalSigner.from_account(funded_account)
    store, upstream = MemoryStore(), LocalUpstream()
    body = _body()
    with paid_server(cfg, upstream=upstream, store=store) as (url_a, _), \
            paid_server(cfg, upstream=upstream, store=store) as (url_b, _):
        a, b = Server(url_a, upstream, store, recipient), Server(url_b, upstream, store, recipient)
        late = b.challenge(CHAT, body)  # B offers sponsorship: as far as it knows, the budget is whole
        assert late.request_data["methodDetails"]["feePayer"] is True
        # a credential whose echo is right but whose transaction pays too little spends no sponsor gas
        short = a.challenge(CHAT, body)
        request = ChargeRequest.from_request({**short.request_data,
                                              "amount": str(int(short.request_data["amount"]) - 1)})
        tx = build_charge_transaction(request, challenge_id=short.id, realm=short.realm, now=int(time.time()),
                                      expires=int(short.expires_at.timestamp()) if short.expires_at else None,
                                      max_fee_per_gas=2 * devnet.rpc.base_fee())
        signed = sign_charge(tx, signer)
        wrong = format_credential(Credential(challenge=short, payload=signed.payload("transaction"),
                                             source=signed.source))
        assert a.post(CHAT, body, wrong).status_code == 402
        valid = a.challenge(CHAT, body)
        assert valid.request_data["methodDetails"]["feePayer"] is True  # the refusal spent nothing
        auth, _ = pay_challenge(valid, signer, devnet.rpc)
        assert a.post(CHAT, body, auth).status_code == 200  # A spends the whole budget
        payer_before, sponsor_before = devnet.balance(funded_account.address), devnet.balance(sponsor.address)
        auth_late, _ = pay_challenge(late, signer, devnet.rpc)  # sponsored: its hash exists once co-signed
        refused = b.post(CHAT, body, auth_late)
        assert refused.status_code == 402 and "gas budget" in refused.json()["detail"], refused.text
        devnet.mine()
        assert devnet.balance(funded_account.address) == payer_before  # never broadcast
        assert devnet.balance(sponsor.address) == sponsor_before
        assert "feePayer" not in b.challenge(CHAT, body).request_data["methodDetails"]
        a.http.close()
        b.http.close()


# --- the project's own client SDK -----------------------------------------------------------------


def test_mpp_client_sdk_pays_the_server(server: Server, devnet: Devnet, funded_account: Any) -> None:
    """mpp_claude.client.openai_client (sync) and async_openai_client (streaming) pay and get answers."""
    from mpp_claude.client import MemoryLedger, Wallet, async_openai_client, openai_client

    wallet = Wallet.from_private_key(bytes(funded_account.key))
    client = openai_client(server.url + "/v1", wallet, rpc_url=devnet.rpc_url, ledger=MemoryLedger())
    raw = client.chat.completions.with_raw_response.create(
        model="claude-haiku-4-5", messages=[{"role": "user", "content": "sdk"}])
    assert raw.parse().choices[0].message.content
    assert devnet.rpc.receipt(parse_receipt(raw.headers["payment-receipt"]).reference) is not None

    async def stream() -> str:
        aclient = async_openai_client(server.url + "/v1", wallet, rpc_url=devnet.rpc_url,
                                      ledger=MemoryLedger())
        chunks = await aclient.chat.completions.create(
            model="claude-haiku-4-5", messages=[{"role": "user", "content": "async sdk"}], stream=True)
        text = "".join([c.choices[0].delta.content or "" async for c in chunks if c.choices])
        await aclient.close()
        return text

    import anyio

    assert anyio.run(stream)


class _BuggyUpstream:
    """An upstream with a bug: every call raises something that is not an UpstreamError."""

    calls = 0

    async def send(self, body: Any, *, stream: bool, headers: Any = None) -> Any:
        self.calls += 1
        raise RuntimeError("a bug")

    async def aclose(self) -> None:
        return None


def test_bug_after_payment_is_credited_not_retried(devnet: Devnet, signer: LocalSigner) -> None:
    """An unexpected exception after the payment settled: 500 with x-should-retry false and a credit."""
    import anyio

    store, recipient = MemoryStore(), Account.create().address
    cfg = server_config(devnet.rpc_url, devnet.chain_id, recipient=recipient)
    with paid_server(cfg, upstream=_BuggyUpstream(), store=store) as (url, _):
        srv = Server(url, LocalUpstream(), store, recipient)
        body = _body()
        auth, tx_hash = pay_challenge(srv.challenge(CHAT, body), signer, devnet.rpc)
        r = srv.post(CHAT, body, auth)
        srv.http.close()
    assert r.status_code == 500 and r.headers["x-should-retry"] == "false"
    assert r.json()["error"]["payment"]["reference"] == tx_hash
    assert [c["reference"] for c in anyio.run(store.records, "credit")] == [tx_hash]
