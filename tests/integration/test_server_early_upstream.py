"""The upstream call runs while the payment settles on the devnet, and only what follows ``Paid`` is sent.

The app runs in this test's event loop (its lifespan, ASGI calls) on the real chain through a
pass-through RPC client that notes when the broadcast starts and when the chain's verdict came
back; the upstream notes when it was called.  So the overlap is checked by order, not by time:
with the switch on, the upstream call starts after the broadcast started and before the
verdict; off, after the verdict.  Payments are real devnet transactions (never mocked).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import httpx2
import pytest
from eth_account import Account
from server_harness import asgi_post, server_config

from mpp_claude.devnet import Devnet
from mpp_claude.protocol.challenge import Challenge, parse_challenges
from mpp_claude.protocol.credential import Credential, format_credential, parse_credential
from mpp_claude.protocol.receipt import parse_receipt
from mpp_claude.server import serving
from mpp_claude.server.app import create_app
from mpp_claude.server.stores import MemoryStore
from mpp_claude.server.upstreams import AnthropicUpstream, LocalUpstream, create_local_anthropic_app
from mpp_claude.server.upstreams.base import Upstream, UpstreamResponse
from mpp_claude.tempo.charge import build_charge_transaction, sign_charge
from mpp_claude.tempo.request import ChargeRequest
from mpp_claude.tempo.rpc import AsyncRpcClient
from mpp_claude.tempo.signer import LocalSigner
from mpp_claude.tempo.tx import tx_hash as hash_of

pytestmark = pytest.mark.devnet

CHAT = "/v1/chat/completions"
MESSAGES = "/v1/messages"
KEY = "sk-ant-early"
MIN_FEE_CAP = 2 * 10**10


class NotingRpc:
    """The pooled RPC client, noting ``broadcast`` and ``verdict`` around the broadcast in ``events``."""

    def __init__(self, rpc: AsyncRpcClient, events: list[str]) -> None:
        self._rpc, self.events = rpc, events

    def __getattr__(self, name: str) -> Any:
        return getattr(self._rpc, name)

    async def send_raw_sync(self, raw: bytes) -> dict[str, Any]:
        self.events.append("broadcast")
        try:
            return await self._rpc.send_raw_sync(raw)
        finally:
            self.events.append("verdict")


class NotingUpstream:
    """An upstream noting ``upstream`` when called in ``events``, counting the closes of its answers
    and the calls cancelled before they answered."""

    def __init__(self, inner: Upstream | None, events: list[str], *, bug: bool = False) -> None:
        self.inner, self.events, self.bug = inner, events, bug
        self.calls = self.closed = self.cancelled = 0

    async def send(self, body: Mapping[str, Any], *, stream: bool,
                   headers: Mapping[str, str] | None = None) -> UpstreamResponse:
        self.calls += 1
        self.events.append("upstream")
        if self.bug or self.inner is None:
            raise RuntimeError("a bug in the upstream")
        try:
            up = await self.inner.send(body, stream=stream, headers=headers)
        except asyncio.CancelledError:
            self.cancelled += 1
            raise

        async def close() -> None:
            self.closed += 1
            await up.aclose()

        return UpstreamResponse(up.status, up.headers, json=up.json, stream=up.stream, _close=close)

    async def aclose(self) -> None:
        return None


def _body(stream: bool = False, text: str = "overlap") -> bytes:
    return json.dumps({"model": "claude-haiku-4-5", "max_tokens": 60, "stream": stream,
                       "messages": [{"role": "user", "content": text}]}).encode()


async def _post(app: Any, path: str, body: bytes, auth: str | None = None,
                **headers: str) -> tuple[int, dict[str, str], bytes]:
    sent = await asgi_post(app, path, body, auth, None, **headers)
    start = sent[0]
    return (start["status"], {k.decode(): v.decode() for k, v in start["headers"]},
            b"".join(m.get("body", b"") for m in sent[1:]))


Scenario = Callable[[Any, Callable[..., Awaitable[Any]]], Awaitable[Any]]


def _with_app(devnet: Devnet, upstream: Callable[[list[str]], NotingUpstream], scenario: Scenario, *,
              early: bool = True, clock: Callable[[], float] = time.time,
              **flags: Any) -> tuple[Any, list[str]]:
    """Run ``scenario(app, pay)`` in one event loop with the app's lifespan; ``pay(path, body,
    signer)`` returns the Authorization paying that request's 402.  Returns what the scenario
    returned and the events noted."""
    events: list[str] = []
    cfg = server_config(devnet.rpc_url, devnet.chain_id, metrics=True, upstream_during_settlement=early,
                        **flags)

    async def main() -> Any:
        async with AsyncRpcClient(devnet.rpc_url) as rpc:
            app = create_app(cfg, store=MemoryStore(), upstream=upstream(events),
                             rpc=NotingRpc(rpc, events),  # type: ignore[arg-type]
                             clock=clock, nonce=lambda: "fixed-nonce")

            async def pay(path: str, body: bytes, signer: LocalSigner) -> str:
                status, headers, _ = await _post(app, path, body)
                assert status == 402
                (challenge,) = parse_challenges([headers["www-authenticate"]])
                return _pay(challenge, signer, devnet)

            async with app.router.lifespan_context(app):
                return await scenario(app, pay)

    return asyncio.run(main()), events


def _pay(challenge: Challenge, signer: LocalSigner, devnet: Devnet) -> str:
    """The Authorization paying ``challenge``.  Its fee cap is at least 2e10 per gas (the T1+ base
    fee), whatever an earlier test left the devnet's base fee at: a payer without fee tokens is
    then refused when broadcasting (with a near-zero cap anvil admits it and drops it silently)."""
    request = ChargeRequest.from_request(challenge.request_data)
    expires = int(challenge.expires_at.timestamp()) if challenge.expires_at else None
    fee_cap = max(2 * devnet.rpc.base_fee(), MIN_FEE_CAP)
    tx = build_charge_transaction(request, challenge_id=challenge.id, realm=challenge.realm,
                                  now=int(time.time()), expires=expires, max_fee_per_gas=fee_cap)
    signed = sign_charge(tx, signer)
    return format_credential(Credential(challenge=challenge, payload=signed.payload(), source=signed.source))


async def _records(app: Any, kind: str) -> list[dict[str, Any]]:
    return list(await app.state.services.store.records(kind))


def _overlapped(events: list[str]) -> bool:
    """The upstream was called after the broadcast started and before the chain's verdict."""
    return events.index("broadcast") < events.index("upstream") < events.index("verdict")


def _text(path: str, stream: bool, raw: bytes) -> str:
    """The assistant's text in an answer of either route, JSON or SSE."""
    if not stream:
        data = json.loads(raw)
        if path == CHAT:
            return str(data["choices"][0]["message"]["content"])
        return "".join(b.get("text", "") for b in data["content"])
    out = []
    for frame in raw.decode().split("\n\n"):
        for line in frame.split("\n"):
            if line.startswith("data: ") and line != "data: [DONE]":
                data = json.loads(line[6:])
                if path == CHAT:
                    out += [c["delta"].get("content") or "" for c in data.get("choices", [])]
                elif data.get("type") == "content_block_delta":
                    out.append(data["delta"].get("text", ""))
    return "".join(out)


# --- a settled payment: the early call's answer is served, exactly as before ---------------------


@pytest.mark.parametrize(("path", "stream"),
                         [(CHAT, False), (CHAT, True), (MESSAGES, False), (MESSAGES, True)])
def test_answer_of_the_call_started_during_settlement(devnet: Devnet, funded_account: Any, path: str,
                                                      stream: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    """On: the upstream is called inside the settlement window, and a JSON answer is rendered there
    too; off: both after it.  Either way the client gets the same whole answer with its receipt,
    and one usage row."""
    signer = LocalSigner.from_account(funded_account)
    noted: list[list[str]] = []
    render = serving.compact_json

    def noting_render(value: Any) -> bytes:  # the client's JSON body is made with this
        noted[-1].append("render")
        return render(value)

    monkeypatch.setattr(serving, "compact_json", noting_render)

    def upstream(events: list[str]) -> NotingUpstream:
        noted.append(events)
        return NotingUpstream(LocalUpstream(seed=b"early"), events)

    results = {}
    for early in (True, False):
        async def scenario(app: Any, pay: Any) -> Any:
            body = _body(stream)
            status, headers, raw = await _post(app, path, body, await pay(path, body, signer))
            return status, headers, raw, await _records(app, "usage")

        (status, headers, raw, usage), events = _with_app(devnet, upstream, scenario, early=early)
        assert status == 200, raw
        assert devnet.rpc.receipt(parse_receipt(headers["payment-receipt"]).reference) is not None
        assert _overlapped(events) is early
        if stream:
            assert "render" not in events
            assert raw.endswith(b"data: [DONE]\n\n" if path == CHAT else b"event: message_stop\n"
                                b'data: {"type":"message_stop"}\n\n')
        else:  # rendered once: before the verdict with the switch on, after it off
            assert events.count("render") == 1
            assert events.index("upstream") < events.index("render")
            assert (events.index("render") < events.index("verdict")) is early
        assert events[-1] == ("verdict" if early else "render" if not stream else "upstream")
        assert len(usage) == 1 and usage[0]["output_tokens"] > 0 and usage[0]["outcome"] == "paid"
        results[early] = _text(path, stream, raw) if stream else _without_ids(json.loads(raw))
    assert results[True] and results[True] == results[False]


def _without_ids(answer: dict[str, Any]) -> dict[str, Any]:
    """A JSON answer without what differs from one request to the next (its id, creation time)."""
    return {k: v for k, v in answer.items() if k not in ("id", "created")}


@pytest.mark.parametrize("fault", ["529", "drop", "bug"])
def test_upstream_failure_of_the_early_call_is_credited_after_settlement(devnet: Devnet, funded_account: Any,
                                                                        fault: str) -> None:
    """The early call fails (an error status, an UpstreamError, a bug) and the payment settles:
    the same failed-after-payment answer as with the strict order (credit, usage row, error with
    the payment, stored for Idempotency-Key replays)."""
    signer = LocalSigner.from_account(funded_account)
    answers = {}
    for early in (True, False):
        async def scenario(app: Any, pay: Any) -> Any:
            body = _body(text=f"fault [[mpp-fault:{fault}]]")
            auth = await pay(CHAT, body, signer)
            first = await _post(app, CHAT, body, auth, idempotency_key="early-fault")
            again = await _post(app, CHAT, body, auth, idempotency_key="early-fault")
            return auth, first, again, await _records(app, "credit"), await _records(app, "usage")

        (auth, first, again, credits, usage), events = _with_app(
            devnet, lambda ev: NotingUpstream(LocalUpstream(seed=b"fault"), ev, bug=fault == "bug"),
            scenario, early=early)
        assert _overlapped(events) is early
        status, headers, raw = first
        credential = parse_credential(auth)
        tx_hash = hash_of(bytes.fromhex(credential.payload["signature"][2:]))  # unsponsored: as signed
        amount = int(credential.challenge.request_data["amount"])
        assert status >= 500 and headers["x-should-retry"] == "false" and "payment-receipt" not in headers
        assert json.loads(raw)["error"]["payment"]["reference"] == tx_hash
        assert json.loads(raw)["error"]["payment"]["credited"] == str(amount)
        assert devnet.rpc.receipt(tx_hash) is not None
        assert [(c["reference"], c["amount"]) for c in credits] == [(tx_hash, amount)]
        assert [(u["reference"], u["cost"], u["outcome"]) for u in usage] == [(tx_hash, 0, "upstream_error")]
        assert again[0] == status and again[2] == raw and again[1]["idempotent-replayed"] == "true"
        answers[early] = (status, {k: v for k, v in headers.items() if k != "content-length"},
                          raw.replace(tx_hash.encode(), b"TX"))
    assert answers[True] == answers[False]


# --- the payment fails on chain after the claims: the started call is dropped ---------------------


def _local(noted: list[NotingUpstream]) -> Callable[[list[str]], NotingUpstream]:
    """A factory of noting local upstreams, each kept in ``noted``."""
    def make(events: list[str]) -> NotingUpstream:
        noted.append(NotingUpstream(LocalUpstream(), events))
        return noted[-1]

    return make


def test_refused_broadcast_answers_as_before_and_drops_the_call(devnet: Devnet) -> None:
    """A payer without funds: its credential passes every check and the claims, the node refuses
    the transaction.  The same credential on two apps (on and off) gets byte for byte the same 402;
    with the switch on the call was made during the settlement and its answer closed."""
    signer = LocalSigner.from_account(Account.create())
    now = time.time()
    recipient = Account.create().address
    runs = {}
    auth: list[str] = []
    for early in (True, False):
        async def scenario(app: Any, pay: Any) -> Any:
            body = _body()
            if not auth:
                auth.append(await pay(CHAT, body, signer))
            answer = await _post(app, CHAT, body, auth[0])
            return answer, await _records(app, "usage"), app.state.services.metrics.render()

        noted: list[NotingUpstream] = []
        (answer, usage, metrics), events = _with_app(devnet, _local(noted), scenario, early=early,
                                                     clock=lambda: now, recipient=recipient)
        assert answer[0] == 402 and json.loads(answer[2])["type"].endswith("verification-failed"), answer
        assert "the chain refused the transaction" in json.loads(answer[2])["detail"]
        assert usage == []
        assert ("upstream" in events) is early and noted[0].closed == (1 if early else 0)
        assert f"mpp_upstream_abandoned_total {1 if early else 0}" in metrics
        runs[early] = answer
    assert runs[True] == runs[False]


def test_reverted_transfer_drops_the_call(devnet: Devnet) -> None:
    """A sponsored payment from a payer without pathUSD is mined and reverts (the sponsor paid the
    gas): 402 verification-failed, the early call closed, nothing served or recorded as used."""
    sponsor = devnet.new_funded_account()
    signer = LocalSigner.from_account(Account.create())
    noted: list[NotingUpstream] = []

    async def scenario(app: Any, pay: Any) -> Any:
        body = _body()
        answer = await _post(app, CHAT, body, await pay(CHAT, body, signer))
        return answer, await _records(app, "usage"), await _records(app, "credit")

    (answer, usage, credits), events = _with_app(devnet, _local(noted), scenario, modes=["transaction"],
                                                 fee_payer_key="0x" + bytes(sponsor.key).hex())
    problem = json.loads(answer[2])
    assert answer[0] == 402 and problem["type"].endswith("verification-failed"), answer
    assert "reverted" in problem["detail"]
    assert _overlapped(events) and noted[0].closed == 1
    assert usage == [] and credits == []


# --- the real HTTP upstream: a stream sent from one task and read from another ---------------------


def _http_upstream(base_url: str, client: httpx2.AsyncClient) -> AnthropicUpstream:
    return AnthropicUpstream(KEY, base_url=base_url, client=client)


@pytest.mark.parametrize("path", [CHAT, MESSAGES])
def test_http_stream_started_during_settlement_is_served(devnet: Devnet, funded_account: Any,
                                                         serve: Callable[[Any], str], path: str) -> None:
    """AnthropicUpstream (pooled httpx2, one connection) over HTTP: the stream opened by the early
    call's task is read by the response; an interrupted one is credited; then a payment refused on
    chain drops its opened stream, and the next paid request still gets the (only) connection."""
    local = LocalUpstream(seed=b"http", chunk_delay_s=0.002)  # a stream takes a few ms to arrive
    base_url = serve(create_local_anthropic_app(local, api_key=KEY))
    signer = LocalSigner.from_account(funded_account)
    broke = LocalSigner.from_account(Account.create())
    holder: list[httpx2.AsyncClient] = []
    noted: list[NotingUpstream] = []

    def make(ev: list[str]) -> NotingUpstream:
        limits = httpx2.Limits(max_connections=1, max_keepalive_connections=1)
        holder.append(httpx2.AsyncClient(limits=limits, timeout=httpx2.Timeout(5.0, pool=3.0)))
        noted.append(NotingUpstream(_http_upstream(base_url, holder[0]), ev))
        return noted[0]

    async def scenario(app: Any, pay: Any) -> Any:
        try:
            out = []
            for text, payer in (("stream me", signer), ("[[mpp-fault:drop]] and break", signer),
                                ("refused", broke), ("after the refusal", signer)):
                body = _body(True, text)
                out.append(await _post(app, path, body, await pay(path, body, payer)))
            return out, await _records(app, "usage"), await _records(app, "credit")
        finally:
            await holder[0].aclose()

    (answers, usage, credits), events = _with_app(devnet, make, scenario)
    (ok, ok_headers, ok_raw), (drop, _, drop_raw), (refused, _, _), (after, _, after_raw) = answers
    assert ok == 200 and ok_headers["content-type"].startswith("text/event-stream")
    assert _text(path, True, ok_raw)
    assert drop == 200 and b'"error"' in drop_raw.split(b"\n\n")[-2]  # broke off: the last frame says so
    assert refused == 402
    assert after == 200 and _text(path, True, after_raw)
    assert events.count("upstream") == 4 and events.count("verdict") == 4
    # three streams closed by their responses; the refused payment's call dropped: cancelled while
    # its request was under way, or its opened stream closed (whichever the chain's refusal met)
    assert noted[0].closed + noted[0].cancelled == 4 and noted[0].cancelled <= 1
    windows = " ".join(events).split("verdict")
    assert all("broadcast upstream" in w for w in windows[:4])  # each call began in its settlement
    references = [u["reference"] for u in usage]
    assert len(usage) == 3 and all(u["outcome"] == "paid" for u in usage)
    (credit,) = credits
    assert credit["reference"] == references[1] and credit["reason"] == "upstream_stream_interrupted"
    assert 0 < credit["amount"] <= usage[1]["quoted"]
