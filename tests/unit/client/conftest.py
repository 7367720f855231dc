"""Fixtures for client tests: the paying clients of both HTTP libraries over a MockTransport shop."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from _shop import KEY, LIBS, ORIGIN, AsyncFakePayer, FakePayer, Shop

from mpp_claude.client import Wallet


@pytest.fixture(params=["httpx2", "httpx"])
def lib(request: pytest.FixtureRequest) -> str:
    """Every client test runs on httpx2 (openai 3.x) and legacy httpx (anthropic, openai < 3)."""
    return str(request.param)


@pytest.fixture
def wallet() -> Wallet:
    return Wallet.from_private_key(KEY)


Factory = Callable[..., Any]


@pytest.fixture
def make_client(lib: str, wallet: Wallet) -> Callable[..., tuple[Any, Shop]]:
    """``make_client(shop_kwargs..., asynchronous=False, **client_options) -> (client, shop)``."""

    def make(*, asynchronous: bool = False, shop: Shop | None = None, payer: Any = None,
             **options: Any) -> tuple[Any, Shop]:
        mod, sync_cls, async_cls = LIBS[lib]
        shop = shop or Shop()
        shop.mod = mod
        options.setdefault("allowed_origins", [ORIGIN])
        options.setdefault("ledger", None)
        if asynchronous:
            client = async_cls(wallet, transport=mod.MockTransport(shop), payer=payer or AsyncFakePayer(),
                               **options)
        else:
            client = sync_cls(wallet, transport=mod.MockTransport(shop), payer=payer or FakePayer(),
                              **options)
        return client, shop

    return make
