"""A request that began before another one pinned the chain still pays (engine fix 570a771).

The client pins the chain of its RPC node on the first 402.  A request whose attempt started
before that pin, and whose 402 arrives after it, used to keep the unpinned policy and was
refused with "this client pays only on chain None" (seen with concurrent AsyncOpenAI calls in
examples/async_fanout.py).  Here the interleaving is forced: request A runs to completion
inside the shop's handling of request B's unpaid probe.
"""

from __future__ import annotations

import asyncio
from typing import Any

import openai
from _shop import ORIGIN, Shop

MSG = [{"role": "user", "content": "hi"}]


class NestedShop(Shop):
    """On the first unpaid probe, run ``self.nested()`` (another whole paid request) first."""

    nested: Any = None

    def __call__(self, request: Any) -> Any:
        if self.nested is not None and not request.headers.get("authorization", "").startswith("Payment "):
            nested, self.nested = self.nested, None
            nested()
        return super().__call__(request)


def test_sync_request_started_before_the_pin_pays(make_client: Any) -> None:
    shop = NestedShop()
    client, _ = make_client(shop=shop)
    oai = openai.OpenAI(base_url=ORIGIN + "/v1", api_key="placeholder", http_client=client, max_retries=0)
    shop.nested = lambda: oai.chat.completions.create(model="a", messages=MSG)
    oai.chat.completions.create(model="b", messages=MSG)
    assert len(shop.accepted) == 2 and client.spent == 2 * shop.price


def test_async_requests_started_together_all_pay(make_client: Any) -> None:
    client, shop = make_client(asynchronous=True)

    async def run() -> None:
        oai = openai.AsyncOpenAI(base_url=ORIGIN + "/v1", api_key="placeholder", http_client=client,
                                 max_retries=0)
        async with client:
            await asyncio.gather(*(oai.chat.completions.create(model=f"m{i}", messages=MSG)
                                   for i in range(8)))

    asyncio.run(run())
    assert len(shop.accepted) == 8
