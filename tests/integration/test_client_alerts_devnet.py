"""Budget alerts and the low-balance observer on real Tempo payments to the reference server (devnet).

A client capped at two payments (``max_per_client``) pays twice through the openai SDK: the first
payment reaches 50 % of the cap, the second 100 % (one alert, at 95 %); the wallet's balance as
the payer tracks it (read from the chain once, then debited; no extra RPC) falls below a floor
set between the first and the second payment's balance.  The third request is refused.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import openai
import pytest
from eth_account import Account
from server_harness import running, server_config

from mpp_claude.client import (
    AsyncMppClient,
    BudgetAlert,
    Hooks,
    LowBalance,
    MppClient,
    PaymentReceipt,
    Policy,
    Wallet,
)
from mpp_claude.client.ledger import Ledger
from mpp_claude.devnet import Devnet
from mpp_claude.errors import BudgetExceeded, PaymentQuoted
from mpp_claude.server.app import create_app
from mpp_claude.server.stores import MemoryStore
from mpp_claude.server.upstreams import LocalUpstream
from mpp_claude.tempo import tip20

pytestmark = pytest.mark.devnet

MSG = [{"role": "user", "content": "hello"}]
MODEL = "claude-haiku-4-5"


@pytest.fixture(scope="module")
def server(devnet: Devnet) -> Iterator[tuple[str, str]]:
    """The reference server on loopback: ``(base URL, recipient)``."""
    recipient = Account.create().address
    app = create_app(server_config(devnet.rpc_url, devnet.chain_id, recipient=recipient),
                     upstream=LocalUpstream(seed=b"alerts"), store=MemoryStore())
    with running(app) as url:
        yield url, recipient


def _price(devnet: Devnet, url: str, wallet: Wallet, tmp_path: Any) -> int:
    """What the server asks for one completion (a dry run: nothing signed, nothing paid)."""
    probe = MppClient(wallet, rpc_url=devnet.rpc_url, allowed_origins=[url], ledger=Ledger(tmp_path / "p.db"),
                      dry_run=True)
    with pytest.raises(PaymentQuoted) as info:
        openai.OpenAI(base_url=url + "/v1", api_key="x", http_client=probe, max_retries=0
                      ).chat.completions.create(model=MODEL, messages=MSG)
    probe.close()
    amount = info.value.quote.amount
    assert isinstance(amount, int) and amount > 0
    return amount


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_alerts_on_real_payments(devnet: Devnet, server: tuple[str, str], funded_account: Any, mode: str,
                                 tmp_path: Any) -> None:
    url, recipient = server
    wallet = Wallet.from_private_key(bytes(funded_account.key))
    price = _price(devnet, url, wallet, tmp_path)
    start = devnet.balance(wallet.address)
    alerts: list[BudgetAlert] = []
    lows: list[LowBalance] = []
    # floor: the first payment leaves the tracked balance at start - price (not below), the second below
    hooks = Hooks(on_budget=alerts.append, on_low_balance=lows.append, low_balance_floor=start - price)
    options: dict[str, Any] = dict(rpc_url=devnet.rpc_url, allowed_origins=[url],
                                   ledger=Ledger(tmp_path / "l.db"), policy=Policy(max_per_client=2 * price),
                                   hooks=hooks)
    paid_before = devnet.balance(recipient)

    if mode == "sync":
        client: Any = MppClient(wallet, **options)
        oai = openai.OpenAI(base_url=url + "/v1", api_key="x", http_client=client, max_retries=0)
        oai.chat.completions.create(model=MODEL, messages=MSG)
        assert [a.threshold for a in alerts] == [0.5] and lows == []
        oai.chat.completions.create(model=MODEL, messages=MSG)
        with pytest.raises(BudgetExceeded):
            oai.chat.completions.create(model=MODEL, messages=MSG)
        client.close()
    else:
        client = AsyncMppClient(wallet, **options)

        async def run() -> None:
            async with client:
                oai = openai.AsyncOpenAI(base_url=url + "/v1", api_key="x", http_client=client, max_retries=0)
                await oai.chat.completions.create(model=MODEL, messages=MSG)
                assert [a.threshold for a in alerts] == [0.5] and lows == []
                await oai.chat.completions.create(model=MODEL, messages=MSG)
                with pytest.raises(BudgetExceeded):
                    await oai.chat.completions.create(model=MODEL, messages=MSG)

        asyncio.run(run())

    receipts: list[PaymentReceipt] = list(client.receipts)
    assert [r.amount for r in receipts] == [price, price]
    assert devnet.balance(recipient) - paid_before == 2 * price  # two real payments, no more
    assert [(a.limit, a.cap, a.used, a.threshold, a.amount, a.origin) for a in alerts] == [
        ("max_per_client", 2 * price, price, 0.5, price, url),
        ("max_per_client", 2 * price, 2 * price, 0.95, price, url)]
    (low,) = lows
    assert (low.token, low.symbol, low.amount, low.floor) == (tip20.PATH_USD, "pathUSD", price, start - price)
    # the payer's tracked balance: at most what the payments took, at least what the chain holds now
    # (the chain also took the transactions' fees when they are paid in pathUSD)
    assert devnet.balance(wallet.address) <= low.balance <= start - 2 * price
