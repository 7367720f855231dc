"""The paid routes start their upstream call during settlement, and drop it when the payment fails.

A scripted RPC stands for the chain (these are unit tests: no network): it answers the chain id,
then, for the broadcast, first lets a call started before it answer (as the slower chain does),
then fails the way each case names.  Each case runs twice in one process, with the switch on
(``upstream_during_settlement``, the default) and off, against the same credential: the client
must get byte for byte the same answer, and with the switch on the started call must have been
closed, logged and counted, with nothing served or recorded.  Successful settlements are
tested on the devnet (``tests/integration/test_server_early_upstream.py``).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import pytest
from server_harness import asgi_post

from mpp_claude.errors import ChainError, CredentialReplayed, ReceiptTimeout, RpcError
from mpp_claude.protocol.challenge import parse_challenges
from mpp_claude.protocol.credential import Credential, format_credential
from mpp_claude.server.app import create_app
from mpp_claude.server.config import build_config
from mpp_claude.server.stores import MemoryStore
from mpp_claude.server.upstreams import LocalUpstream
from mpp_claude.server.upstreams.base import UpstreamResponse
from mpp_claude.tempo.charge import build_charge_transaction, sign_charge
from mpp_claude.tempo.request import ChargeRequest
from mpp_claude.tempo.signer import LocalSigner
from mpp_claude.tempo.tx import tx_hash as hash_of

CLOCK = 1_900_000_000.0
CHAT = "/v1/chat/completions"
MESSAGES = "/v1/messages"
PAYER = LocalSigner("0x" + "33" * 32)


def _body(path: str, stream: bool) -> bytes:
    body: dict[str, Any] = {"model": "claude-haiku-4-5", "max_tokens": 50, "stream": stream,
                            "messages": [{"role": "user", "content": "early"}]}
    return json.dumps(body).encode()


class RecordingUpstream:
    """The local upstream's answers, counting sends, answers and closes.  ``hold``: every send
    waits forever (cancelled sends are counted)."""

    def __init__(self, *, hold: bool = False) -> None:
        self.local = LocalUpstream(seed=b"early")
        self.hold = hold
        self.sent = self.closed = self.cancelled = 0
        self.answered: asyncio.Event | None = None

    def event(self) -> asyncio.Event:
        if self.answered is None:
            self.answered = asyncio.Event()
        return self.answered

    async def send(self, body: Mapping[str, Any], *, stream: bool,
                   headers: Mapping[str, str] | None = None) -> UpstreamResponse:
        self.sent += 1
        if self.hold:
            try:
                await asyncio.Event().wait()
            except asyncio.CancelledError:
                self.cancelled += 1
                raise
        up = await self.local.send(body, stream=stream, headers=headers)

        async def close() -> None:
            self.closed += 1
            await up.aclose()

        self.event().set()
        return UpstreamResponse(up.status, up.headers, json=up.json, stream=up.stream, _close=close)

    async def aclose(self) -> None:
        return None


class ScriptedRpc:
    """The chain: answers ``eth_chainId``; the broadcast fails as ``outcome`` says, after letting
    an upstream call started before it answer.  Notes how many upstream calls had been made when
    the chain's verdict came (``sent_before_verdict``)."""

    def __init__(self, outcome: str, upstream: RecordingUpstream) -> None:
        self.outcome, self.upstream = outcome, upstream
        self.sent_before_verdict: int | None = None
        self.hanging = asyncio.Event()

    async def chain_id(self) -> int:
        return 31337

    async def send_raw_sync(self, raw: bytes) -> dict[str, Any]:
        await asyncio.sleep(0)  # a call started before the broadcast runs from here on
        if self.upstream.sent and not self.upstream.hold:
            await asyncio.wait_for(self.upstream.event().wait(), 5)
        self.sent_before_verdict = self.upstream.sent
        tx_hash = hash_of(raw)
        if self.outcome in ("refused", "timeout"):
            raise RpcError("eth_sendRawTransactionSync", -32003, "insufficient funds for gas * price + value")
        if self.outcome == "reverted":
            return {"transactionHash": tx_hash, "status": "0x0", "logs": [], "blockNumber": "0x5"}
        if self.outcome == "unreachable":
            raise ChainError("cannot reach the node: connection refused")
        if self.outcome == "replayed":
            raise CredentialReplayed(f"transaction {tx_hash} was already used")
        if self.outcome == "hang":
            self.hanging.set()
            await asyncio.Event().wait()
        raise RuntimeError("a bug in the chain client")

    async def transaction(self, tx_hash: str) -> dict[str, Any] | None:
        return {"hash": tx_hash} if self.outcome == "timeout" else None  # known: the receipt is polled

    async def wait_for_receipt(self, tx_hash: str, *, timeout: float = 10.0, poll: float = 0.002
                               ) -> dict[str, Any]:
        raise ReceiptTimeout(tx_hash, timeout)


@dataclass
class Run:
    """What one paid request did: the ASGI messages sent, the exception raised, the records."""

    sent: list[dict[str, Any]]
    raised: BaseException | None
    upstream: RecordingUpstream
    rpc: ScriptedRpc
    records: dict[str, list[dict[str, Any]]]
    metrics: str
    extra: dict[str, Any] = field(default_factory=dict)




def _credential(sent: list[dict[str, Any]]) -> str:
    """An Authorization value paying the 402 in ``sent`` (a real signed charge, never broadcast)."""
    start = sent[0]
    assert start["status"] == 402, sent
    values = [v.decode() for k, v in start["headers"] if k == b"www-authenticate"]
    (challenge,) = parse_challenges(values)
    request = ChargeRequest.from_request(challenge.request_data)
    expires = int(challenge.expires_at.timestamp()) if challenge.expires_at else None
    tx = build_charge_transaction(request, challenge_id=challenge.id, realm=challenge.realm, now=int(CLOCK),
                                  expires=expires, max_fee_per_gas=10**10)
    signed = sign_charge(tx, PAYER)
    return format_credential(Credential(challenge=challenge, payload=signed.payload(), source=signed.source))


def _app(early: bool, upstream: RecordingUpstream, rpc: ScriptedRpc) -> Any:
    cfg = build_config(flags={"secret_key": "k" * 40, "recipient": "0x" + "cd" * 20, "rpc_url": "http://x",
                              "chain_id": 31337, "store": "memory://", "realm": "unit.test", "metrics": True,
                              "upstream_during_settlement": early})
    return create_app(cfg, store=MemoryStore(), upstream=upstream, rpc=rpc,  # type: ignore[arg-type]
                      clock=lambda: CLOCK, nonce=lambda: "fixed")


def _paid_request(early: bool, outcome: str, path: str = CHAT, stream: bool = False, *,
                  hold: bool = False, cancel: bool = False) -> Run:
    """Pay one request on a fresh app whose chain fails as ``outcome`` says.  ``cancel``: the
    request is cancelled while its payment settles (the client went away)."""
    upstream = RecordingUpstream(hold=hold)
    rpc = ScriptedRpc(outcome, upstream)
    app = _app(early, upstream, rpc)
    body = _body(path, stream)

    async def main() -> Run:
        raised: BaseException | None = None
        sent: list[dict[str, Any]] = []
        extra: dict[str, Any] = {}
        async with app.router.lifespan_context(app):
            auth = _credential(await asgi_post(app, path, body))
            if cancel:
                task = asyncio.create_task(asgi_post(app, path, body, auth, sent, idempotency_key="k"))
                await asyncio.wait_for(rpc.hanging.wait(), 5)
                task.cancel()
                try:
                    await task
                except asyncio.CancelledError as exc:
                    raised = exc
                store = app.state.services.store
                extra["idem_after"] = (await store.idem_begin(f"{PAYER.address.lower()}:k", "other")).state
            else:
                try:
                    await asgi_post(app, path, body, auth, sent)
                except Exception as exc:  # the bug case: the 500 is sent, then it is raised
                    raised = exc
            svc = app.state.services
            records = {kind: list(await svc.store.records(kind)) for kind in ("usage", "credit", "unsettled")}
            return Run(sent, raised, upstream, rpc, records, svc.metrics.render(), extra)

    return asyncio.run(main())


def _answer(run: Run) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
    start = run.sent[0]
    body = b"".join(m.get("body", b"") for m in run.sent[1:])
    return start["status"], start["headers"], body


def _check_abandoned(on: Run, off: Run, caplog: pytest.LogCaptureFixture) -> None:
    """With the switch on the call was made during settlement and dropped; off, never made; the
    client's answer is the same, nothing was served or recorded as used, the drop is logged and
    counted once."""
    assert _answer(on) == _answer(off)
    assert repr(on.raised) == repr(off.raised)
    assert on.rpc.sent_before_verdict == 1 and off.rpc.sent_before_verdict == 0
    assert on.upstream.sent == 1 and off.upstream.sent == 0
    assert on.records == off.records and on.records["usage"] == [] and on.records["credit"] == []
    assert "mpp_upstream_abandoned_total 1" in on.metrics and "mpp_upstream_abandoned_total 0" in off.metrics
    abandoned = [r for r in caplog.records if r.name == "mpp_claude.server" and "abandoned" in r.getMessage()]
    assert len(abandoned) == 1 and abandoned[0].levelno == logging.INFO
    assert "Payment " not in abandoned[0].getMessage()  # no credential in the line


@pytest.mark.parametrize(("outcome", "status", "problem"), [
    ("refused", 402, "verification-failed"),  # the node refused the broadcast
    ("reverted", 402, "verification-failed"),  # mined, reverted: the payer paid gas for nothing
    ("timeout", 402, "verification-failed"),  # ReceiptTimeout: an unsettled row for the operator
    ("unreachable", 402, "verification-failed"),  # ChainError after the claims
    ("replayed", 402, "invalid-challenge"),  # CredentialReplayed
    ("bug", 500, None),  # any other exception
])
def test_failed_settlement_abandons_the_started_call(outcome: str, status: int, problem: str | None,
                                                     caplog: pytest.LogCaptureFixture) -> None:
    """Settlement fails after the call started and answered: its answer is closed, the client gets
    exactly today's error, nothing is served, no usage row."""
    with caplog.at_level(logging.INFO, logger="mpp_claude.server"):
        on = _paid_request(True, outcome)
        off = _paid_request(False, outcome)
    _check_abandoned(on, off, caplog)
    assert on.upstream.closed == 1 and on.upstream.cancelled == 0
    got, headers, body = _answer(on)
    assert got == status and (b"payment-receipt", b"") not in headers
    if problem is not None:
        assert json.loads(body)["type"].endswith(problem)
    assert len(on.records["unsettled"]) == (1 if outcome in ("timeout", "unreachable") else 0)


@pytest.mark.parametrize(("path", "stream"), [(CHAT, True), (MESSAGES, False), (MESSAGES, True)])
def test_failed_settlement_closes_a_started_stream_on_both_routes(path: str, stream: bool,
                                                                 caplog: pytest.LogCaptureFixture) -> None:
    """Both routes, JSON and SSE: the answer the call produced (a stream) is closed, never read."""
    with caplog.at_level(logging.INFO, logger="mpp_claude.server"):
        on = _paid_request(True, "refused", path, stream)
        off = _paid_request(False, "refused", path, stream)
    _check_abandoned(on, off, caplog)
    assert on.upstream.closed == 1
    assert _answer(on)[0] == 402


def test_failed_settlement_cancels_a_call_still_running(caplog: pytest.LogCaptureFixture) -> None:
    """The upstream had not answered when the payment failed: the call is cancelled."""
    with caplog.at_level(logging.INFO, logger="mpp_claude.server"):
        on = _paid_request(True, "refused", hold=True)
        off = _paid_request(False, "refused", hold=True)
    _check_abandoned(on, off, caplog)
    assert on.upstream.cancelled == 1 and on.upstream.closed == 0


def test_client_gone_during_settlement_abandons_the_call(caplog: pytest.LogCaptureFixture) -> None:
    """The request is cancelled while its payment settles: the call's answer is closed, the
    idempotency key is released, nothing is sent or recorded; the drop is logged and counted."""
    with caplog.at_level(logging.INFO, logger="mpp_claude.server"):
        run = _paid_request(True, "hang", cancel=True)
    assert isinstance(run.raised, asyncio.CancelledError)
    assert run.sent == [] and run.upstream.sent == 1 and run.upstream.closed == 1
    assert run.records["usage"] == [] and run.records["credit"] == []
    assert run.extra["idem_after"].name == "NEW"  # released: a retry with the key may pay again
    assert "mpp_upstream_abandoned_total 1" in run.metrics
    assert any("abandoned" in r.getMessage() and "CancelledError" in r.getMessage() for r in caplog.records)
