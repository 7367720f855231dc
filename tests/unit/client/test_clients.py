"""The four shells (httpx2/httpx x sync/async) end to end over a MockTransport shop, driven by the
openai SDK where it matters (its retries).  The same flows on a real chain are in
tests/integration/test_client_devnet.py; the pure core is driven by hand in test_flow.py."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import openai
import pytest
from _shop import LIBS, ORIGIN, PAYEE, AsyncFakePayer, FakePayer, Shop

from mpp_claude.client import Hooks, Policy, receipt_of, spending_limit
from mpp_claude.client.ledger import Ledger
from mpp_claude.errors import (
    ApprovalDenied,
    BudgetExceeded,
    OriginNotAllowed,
    PaymentOutcomeUnknown,
    PaymentQuoted,
    PaymentRejected,
    PolicyDenied,
)
from mpp_claude.protocol.problem import Problem

MSG = [{"role": "user", "content": "hi"}]
Make = Callable[..., tuple[Any, Shop]]


def oai(client: Any, **kw: Any) -> openai.OpenAI:
    return openai.OpenAI(base_url=ORIGIN + "/v1", api_key="placeholder", http_client=client, **kw)


def aoai(client: Any, **kw: Any) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=ORIGIN + "/v1", api_key="placeholder", http_client=client, **kw)


class TestOpenAI:
    def test_sync(self, make_client: Make) -> None:
        """One create() pays once; the completion and the receipt come back."""
        client, shop = make_client()
        raw = oai(client).chat.completions.with_raw_response.create(model="claude-test", messages=MSG)
        assert raw.parse().choices[0].message.content == "hi"
        receipt = receipt_of(raw)
        assert receipt is not None and receipt.amount == 10_000 and receipt.model == "claude-test"
        assert receipt.reference == "0x" + "cd" * 32 and receipt.payee == PAYEE
        assert len(shop.accepted) == 1 and client.spent == 10_000 and client.receipts == [receipt]

    def test_paid_retry_replaces_bearer_and_keeps_idempotency_key(self, make_client: Make) -> None:
        client, shop = make_client()
        oai(client).chat.completions.create(model="m", messages=MSG)
        probe, paid = shop.requests
        assert probe.headers["authorization"] == "Bearer placeholder"
        assert paid.headers["authorization"].startswith("Payment ")
        assert probe.headers["idempotency-key"] == paid.headers["idempotency-key"]
        # the same body and the same headers otherwise (content-length included), byte for byte
        assert paid.content == probe.content and paid.content.startswith(b"{")
        assert [(k, v) for k, v in paid.headers.multi_items() if k != "authorization"] == \
            [(k, v) for k, v in probe.headers.multi_items() if k != "authorization"]

    def test_async(self, make_client: Make) -> None:
        client, shop = make_client(asynchronous=True)

        async def run() -> Any:
            async with client:
                return await aoai(client).chat.completions.with_raw_response.create(model="m", messages=MSG)

        raw = asyncio.run(run())
        assert raw.parse().choices[0].message.content == "hi"
        assert receipt_of(raw) is not None and len(shop.accepted) == 1

    def test_stream_sync(self, make_client: Make) -> None:
        """stream=True: pay on the 402, return the paid stream unread."""
        client, shop = make_client(shop=Shop(stream=True))
        raw = oai(client).chat.completions.with_raw_response.create(model="m", messages=MSG, stream=True)
        assert receipt_of(raw) is not None
        assert [c.id for c in raw.parse()] == ["1"]
        assert len(shop.accepted) == 1

    def test_stream_async(self, make_client: Make) -> None:
        client, shop = make_client(asynchronous=True, shop=Shop(stream=True))

        async def run() -> list[str]:
            raw = await aoai(client).chat.completions.with_raw_response.create(model="m", messages=MSG,
                                                                               stream=True)
            assert receipt_of(raw) is not None
            return [c.id async for c in raw.parse()]

        assert asyncio.run(run()) == ["1"] and len(shop.accepted) == 1

    def test_two_calls_pay_twice(self, make_client: Make) -> None:
        """Two logical requests with the same body are two payments (not SDK retries)."""
        client, shop = make_client()
        oai(client).chat.completions.create(model="m", messages=MSG)
        oai(client).chat.completions.create(model="m", messages=MSG)
        assert len(shop.accepted) == 2 and client.spent == 20_000


class TestRetrySafety:
    def test_500_after_payment_replays_the_stored_response(self, make_client: Make) -> None:
        """The SDK retries the 500; the retry carries the same credential and key: one payment."""
        client, shop = make_client(shop=Shop(fail_first_paid=True))
        out = oai(client, max_retries=2).chat.completions.create(model="m", messages=MSG)
        assert out.choices[0].message.content == "hi"
        assert len(shop.accepted) == 1 and len(client._engine.payer.signed) == 1
        keys = {r.headers.get("idempotency-key") for r in shop.requests}
        assert len(keys) == 1

    def test_500_after_payment_without_stored_response_is_a_clear_error(self, make_client: Make) -> None:
        """The server keeps no response: the replayed credential is refused -> PaymentRejected."""
        client, shop = make_client(shop=Shop(paid_status=500))
        with pytest.raises(PaymentRejected) as info:
            oai(client, max_retries=2).chat.completions.create(model="m", messages=MSG)
        assert info.value.problem["type"].endswith("invalid-challenge")
        assert len(shop.accepted) == 1 and len(client._engine.payer.signed) == 1

    def test_dropped_connection_after_paying_resends_same_credential(self, make_client: Make) -> None:
        """The server accepted and stored the response, the connection died on the way back: the
        same credential and key are sent once more and the stored response comes back."""
        client, shop = make_client()
        lost = [1]

        def lossy(request: Any) -> Any:
            response = shop(request)
            if request.headers.get("authorization", "").startswith("Payment ") and lost:
                lost.pop()
                raise shop.mod.ReadError("connection reset after the server answered")
            return response

        client._transport.inner.handler = lossy
        out = oai(client, max_retries=0).chat.completions.create(model="m", messages=MSG)
        assert out.choices[0].message.content == "hi"
        assert len(shop.accepted) == 1 and len(client._engine.payer.signed) == 1
        paid = [r for r in shop.requests if r.headers.get("authorization", "").startswith("Payment ")]
        assert len(paid) == 2 and paid[0].headers["authorization"] == paid[1].headers["authorization"]

    def test_dropped_connection_twice_is_outcome_unknown(self, make_client: Make) -> None:
        """Two losses after paying: PaymentOutcomeUnknown, the chain is asked, never a re-payment
        (the openai SDK does not retry it: it is an OpenAIError)."""
        client, shop = make_client(payer=FakePayer(mined=True))

        def black_hole(request: Any) -> Any:
            response = shop(request)
            if request.headers.get("authorization", "").startswith("Payment "):
                raise shop.mod.ReadError("gone")
            return response

        client._transport.inner.handler = black_hole
        with pytest.raises(PaymentOutcomeUnknown, match="settled on chain") as info:
            oai(client, max_retries=3).chat.completions.create(model="m", messages=MSG)
        assert info.value.details["tx_hash"] and len(client._engine.payer.signed) == 1
        assert len(shop.requests) == 3  # probe, paid, one resend; no SDK retry

    def test_402_after_paid_retry_is_rejection(self, make_client: Make) -> None:
        """A server that answers every credential with a fresh 402 gets exactly one payment."""
        client, shop = make_client()

        def always_402(request: Any) -> Any:
            shop.requests.append(request)
            return shop._402(Problem.of("verification-failed", "nope"))

        client._transport.inner.handler = always_402
        with pytest.raises(PaymentRejected, match="nope") as info:
            oai(client, max_retries=2).chat.completions.create(model="m", messages=MSG)
        assert info.value.details["tx_hash"] is not None
        assert len(client._engine.payer.signed) == 1 and len(shop.requests) == 2


class TestNoPayment:
    def test_origin_not_allowed(self, make_client: Make) -> None:
        client, shop = make_client(allowed_origins=[])
        with pytest.raises(OriginNotAllowed):
            oai(client).chat.completions.create(model="m", messages=MSG)
        assert shop.accepted == [] and client._engine.payer.signed == []

    def test_cross_origin_redirect(self, make_client: Make) -> None:
        """A request to another origin redirected to the shop's 402 is not paid."""
        client, shop = make_client(allowed_origins=[ORIGIN, "https://other.test"])
        inner = client._transport.inner

        def handler(request: Any) -> Any:
            if request.url.host == "other.test":
                return shop.mod.Response(307, headers={"location": ORIGIN + "/v1/chat/completions"})
            return shop(request)

        inner.handler = handler
        with pytest.raises(PolicyDenied) as info:
            client.post("https://other.test/v1/chat/completions", json={"model": "m"})
        assert info.value.rule == "cross_origin_redirect" and shop.accepted == []

    def test_plain_http_to_remote_host(self, make_client: Make) -> None:
        client, shop = make_client(allowed_origins=["http://shop.test"])
        with pytest.raises(PolicyDenied) as info:
            client.post("http://shop.test/v1/chat/completions", json={})
        assert info.value.rule == "https" and shop.accepted == []

    def test_changed_payee(self, make_client: Make) -> None:
        client, shop = make_client()
        client.post(ORIGIN + "/v1/x", json={})
        shop.payee = "0x" + "ef" * 20
        with pytest.raises(PolicyDenied) as info:
            client.post(ORIGIN + "/v1/x", json={})
        assert info.value.rule == "payee_changed" and len(shop.accepted) == 1

    def test_other_chain(self, make_client: Make) -> None:
        client, _ = make_client(shop=Shop(chain_id=4217))
        with pytest.raises(PolicyDenied) as info:
            client.post(ORIGIN + "/v1/x", json={})
        assert info.value.rule == "chain"

    def test_expired_challenge(self, make_client: Make) -> None:
        client, _ = make_client(shop=Shop(expires_in=-5))
        with pytest.raises(PolicyDenied) as info:
            client.post(ORIGIN + "/v1/x", json={})
        assert info.value.rule == "expired"

    def test_veto(self, make_client: Make) -> None:
        seen: list[Any] = []
        client, shop = make_client(approve=lambda q: seen.append(q) or False)
        with pytest.raises(ApprovalDenied):
            client.post(ORIGIN + "/v1/x", json={})
        assert shop.accepted == [] and seen[0].amount == 10_000 and client.spent == 0

    def test_async_veto(self, make_client: Make) -> None:
        async def approve(quote: Any) -> bool:
            return quote.amount < 5_000

        client, shop = make_client(asynchronous=True, approve=approve)

        async def run() -> None:
            async with client:
                await client.post(ORIGIN + "/v1/x", json={})

        with pytest.raises(ApprovalDenied):
            asyncio.run(run())
        assert shop.accepted == []

    def test_approve_above_only_routes_large_payments(self, make_client: Make) -> None:
        client, shop = make_client(approve=lambda q: False, approve_above="0.05")
        client.post(ORIGIN + "/v1/x", json={})
        assert len(shop.accepted) == 1

    def test_dry_run_quote(self, make_client: Make) -> None:
        client, shop = make_client()
        quote = client.quote(lambda: oai(client).chat.completions.create(model="m", messages=MSG))
        assert quote is not None and quote.amount == 10_000 and quote.payee == PAYEE
        assert quote.budget_left["max_payment"] == 990_000
        assert shop.accepted == [] and client.spent == 0
        with pytest.raises(PaymentQuoted):
            make_client(dry_run=True)[0].post(ORIGIN + "/v1/x", json={})

    def test_unpaid_responses_pass_through(self, make_client: Make) -> None:
        client, shop = make_client()
        client._transport.inner.handler = lambda request: shop.mod.Response(200, json={"free": True})
        response = client.get(ORIGIN + "/v1/models")
        assert response.json() == {"free": True} and receipt_of(response) is None


class TestBudgets:
    def test_per_payment(self, make_client: Make) -> None:
        client, _ = make_client(shop=Shop(price=1_000_001))
        with pytest.raises(BudgetExceeded) as info:
            client.post(ORIGIN + "/v1/x", json={})
        assert info.value.limit == "max_payment"

    def test_lifetime(self, make_client: Make) -> None:
        client, shop = make_client(policy=Policy(max_per_client=25_000))
        client.post(ORIGIN + "/v1/x", json={})
        client.post(ORIGIN + "/v1/x", json={})
        with pytest.raises(BudgetExceeded) as info:
            client.post(ORIGIN + "/v1/x", json={})
        assert (info.value.limit, info.value.limit_value, info.value.requested) == (
            "max_per_client", 25_000, 10_000)
        assert len(shop.accepted) == 2

    def test_rolling_day_survives_restart(self, make_client: Make, tmp_path: Any) -> None:
        path = tmp_path / "ledger.sqlite3"
        first, _ = make_client(ledger=Ledger(path), policy=Policy(max_per_day=15_000))
        first.post(ORIGIN + "/v1/x", json={})
        first.close()
        second, shop = make_client(ledger=Ledger(path), policy=Policy(max_per_day=15_000))
        with pytest.raises(BudgetExceeded) as info:
            second.post(ORIGIN + "/v1/x", json={})
        assert info.value.limit == "max_per_day" and shop.accepted == []

    def test_rate(self, make_client: Make) -> None:
        client, _ = make_client(policy=Policy(max_per_minute=2))
        client.post(ORIGIN + "/v1/x", json={})
        client.post(ORIGIN + "/v1/x", json={})
        with pytest.raises(BudgetExceeded) as info:
            client.post(ORIGIN + "/v1/x", json={})
        assert info.value.limit == "max_per_minute"

    def test_scoped_sub_budget(self, make_client: Make) -> None:
        client, shop = make_client()
        with client.budget("0.015", name="agent step") as step:
            client.post(ORIGIN + "/v1/x", json={})
            with pytest.raises(BudgetExceeded) as info:
                client.post(ORIGIN + "/v1/x", json={})
        assert info.value.limit == "agent step" and step.spent == 10_000
        client.post(ORIGIN + "/v1/x", json={})  # outside the block: only the client limits apply
        assert len(shop.accepted) == 2

    def test_scoped_budget_in_async_tasks(self, make_client: Make) -> None:
        """Tasks started inside the block share its cap: 3 concurrent payments, only 2 fit."""
        client, shop = make_client(asynchronous=True)

        async def run() -> list[Any]:
            async with client:
                with spending_limit(25_000):
                    calls = (client.post(ORIGIN + "/v1/x", json={"n": i}) for i in range(3))
                    return await asyncio.gather(*calls, return_exceptions=True)

        results = asyncio.run(run())
        assert sum(isinstance(r, BudgetExceeded) for r in results) == 1 and len(shop.accepted) == 2

    def test_declined_payment_releases_everything(self, make_client: Make, tmp_path: Any) -> None:
        """A veto after reservation gives back scope, lifetime and ledger budget."""
        led = Ledger(tmp_path / "l.sqlite3")
        client, _ = make_client(ledger=led, approve=lambda q: False)
        with client.budget(10_000) as scope, pytest.raises(ApprovalDenied):
            client.post(ORIGIN + "/v1/x", json={})
        assert scope.spent == 0 and client.spent == 0
        assert [r.status for r in led.rows()] == ["released"]


class TestObservability:
    def test_hooks_and_ledger_rows(self, make_client: Make, tmp_path: Any) -> None:
        events: list[str] = []

        def boom(receipt: Any) -> None:
            events.append("receipt")
            raise RuntimeError("a broken observer must not lose the paid response")

        led = Ledger(tmp_path / "l.sqlite3")
        hooks = Hooks(on_challenge=lambda q: events.append("challenge"),
                      on_payment=lambda q, tx: events.append(f"payment {tx is not None}"), on_receipt=boom)
        client, _ = make_client(hooks=hooks, ledger=led)
        response = client.post(ORIGIN + "/v1/chat/completions", json={"model": "claude-x"})
        assert response.status_code == 200
        assert events == ["challenge", "payment True", "receipt"]
        (row,) = led.rows()
        assert (row.status, row.model, row.amount, row.path) == ("settled", "claude-x", 10_000,
                                                                 "/v1/chat/completions")
        assert row.request_id == response.request.headers["idempotency-key"]

    def test_a_paid_request_writes_the_ledger_twice(self, make_client: Make, tmp_path: Any) -> None:
        """The reservation (one transaction, before signing) and the outcome with the transaction."""
        led = Ledger(tmp_path / "l.sqlite3")
        client, _ = make_client(ledger=led)
        client.post(ORIGIN + "/v1/x", json={})  # first payment: pins the payee
        statements: list[str] = []
        led._db.set_trace_callback(statements.append)
        client.post(ORIGIN + "/v1/x", json={})
        led._db.set_trace_callback(None)
        writes, in_transaction = 0, False
        for sql in statements:
            verb = sql.split(None, 1)[0].upper()
            if verb == "BEGIN":
                writes, in_transaction = writes + 1, True
            elif verb in ("COMMIT", "ROLLBACK"):
                in_transaction = False
            elif verb in ("INSERT", "UPDATE", "DELETE") and not in_transaction:
                writes += 1
        assert writes == 2
        row = led.rows()[-1]
        assert row.status == "settled" and row.tx_hash is not None and row.valid_before is not None

    def test_credential_never_logged(self, make_client: Make, caplog: pytest.LogCaptureFixture) -> None:
        caplog.set_level("DEBUG", logger="mpp_claude")
        client, shop = make_client()
        client.post(ORIGIN + "/v1/x", json={})
        token = shop.requests[-1].headers["authorization"].split()[1]
        assert "paid 0.01 pathUSD" in caplog.text and token not in caplog.text


def test_async_payer_used_by_async_client(make_client: Make) -> None:
    payer = AsyncFakePayer()
    client, shop = make_client(asynchronous=True, payer=payer)

    async def run() -> None:
        async with client:
            await client.post(ORIGIN + "/v1/x", json={})

    asyncio.run(run())
    assert len(payer.signed) == 1 and len(shop.accepted) == 1


class TestBareTransports:
    def test_sync_transport_in_a_plain_client(self, lib: str, wallet: Any) -> None:
        """MppTransport wraps any inner transport inside a client the caller built."""
        import mpp_claude.httpx as legacy
        from mpp_claude.client import MppTransport

        mod = LIBS[lib][0]
        shop = Shop(mod=mod)
        cls = MppTransport if lib == "httpx2" else legacy.MppTransport
        transport = cls(wallet, inner=mod.MockTransport(shop), payer=FakePayer(), ledger=None,
                        allowed_origins=[ORIGIN])
        with mod.Client(transport=transport) as client:
            response = client.post(ORIGIN + "/v1/x", json={})
        assert response.status_code == 200 and receipt_of(response) is not None
        assert len(shop.accepted) == 1

    def test_async_transport_in_a_plain_client(self, lib: str, wallet: Any) -> None:
        import mpp_claude.httpx as legacy
        from mpp_claude.client import AsyncMppTransport

        mod = LIBS[lib][0]
        shop = Shop(mod=mod)
        cls = AsyncMppTransport if lib == "httpx2" else legacy.AsyncMppTransport
        transport = cls(wallet, inner=mod.MockTransport(shop), payer=AsyncFakePayer(), ledger=None,
                        allowed_origins=[ORIGIN])

        async def run() -> Any:
            async with mod.AsyncClient(transport=transport) as client:
                return await client.post(ORIGIN + "/v1/x", json={})

        assert receipt_of(asyncio.run(run())) is not None and len(shop.accepted) == 1


class TestReconcile:
    @pytest.mark.parametrize(("mined", "status"), [(True, "settled"), (False, "released"), (None, "unknown")])
    def test_unknown_rows_are_resolved_from_the_chain(self, make_client: Make, tmp_path: Any,
                                                      mined: bool | None, status: str) -> None:
        """A rejected credential leaves the row unknown (budget held) until the chain says."""
        led = Ledger(tmp_path / "l.sqlite3")
        client, _ = make_client(ledger=led, payer=FakePayer(mined=mined), shop=Shop(paid_status=500))
        client.post(ORIGIN + "/v1/x", json={})
        assert [r.status for r in led.rows()] == ["unknown"] and len(client.unresolved()) == 1
        client.reconcile()
        assert [r.status for r in led.rows()] == [status]

    def test_not_mined_but_still_valid_stays_unknown(self, make_client: Make, tmp_path: Any) -> None:
        led = Ledger(tmp_path / "l.sqlite3")
        client, _ = make_client(ledger=led, shop=Shop(paid_status=500))
        client.post(ORIGIN + "/v1/x", json={})
        assert client.reconcile() == 0 and led.rows()[0].status == "unknown"


def test_other_origins_get_the_request_untouched(make_client: Make) -> None:
    """No Idempotency-Key (or anything else) is added for origins outside the allowlist."""
    client, shop = make_client()
    client._transport.inner.handler = lambda request: (shop.requests.append(request),
                                                       shop.mod.Response(200, json={}))[1]
    client.post("https://elsewhere.test/v1/x", json={})
    client.post(ORIGIN + "/v1/x", json={})
    assert "idempotency-key" not in shop.requests[0].headers
    assert "idempotency-key" in shop.requests[1].headers
