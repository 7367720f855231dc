"""Legacy ``httpx`` twins of the paying clients and transports (for the anthropic SDK, openai < 3,
or any code on ``httpx``).  Same arguments and behaviour as :mod:`mpp_claude.client`'s httpx2
classes; both share one engine implementation, only the I/O library differs.

Example::

    import anthropic
    from mpp_claude.httpx import MppClient

    client = anthropic.Anthropic(base_url="https://proxy.example", api_key="mpp-paid",
                                 http_client=MppClient(wallet, rpc_url=..., allowed_origins=[...]))
"""

from __future__ import annotations

from collections.abc import Iterable
from decimal import Decimal
from typing import Any

import httpx

from .client._engine import EXT_FIRST_ORIGIN, Approve, AsyncEngine, SyncEngine
from .client._httpx2 import _async_engine, _sync_engine
from .client._setup import LedgerArg, PaymentsMixin, first_origin, reconcile_async, reconcile_sync
from .client._shell import handle_async, handle_sync
from .client.hooks import Hooks
from .client.payer import AsyncPayer, Payer
from .client.policy import Policy
from .client.wallet import Wallet
from .tempo.rpc import AsyncRpcClient, RpcClient

__all__ = ["AsyncMppClient", "AsyncMppTransport", "MppClient", "MppTransport"]

_TRANSPORT_KW = ("verify", "cert", "trust_env", "http1", "http2", "limits")


def _split(kwargs: dict[str, Any]) -> dict[str, Any]:
    kwargs.setdefault("timeout", httpx.Timeout(timeout=600, connect=5.0))
    kwargs.setdefault("follow_redirects", True)
    tkw = {k: kwargs.pop(k) for k in _TRANSPORT_KW if k in kwargs}
    tkw.setdefault("limits", httpx.Limits(max_connections=1000, max_keepalive_connections=100))
    return tkw


class MppTransport(httpx.BaseTransport):
    """A sync ``httpx`` transport that pays MPP 402 challenges (see the httpx2 ``MppTransport``)."""

    def __init__(self, wallet: Wallet | None = None, *, inner: httpx.BaseTransport | None = None,
                 engine: SyncEngine | None = None, **options: Any) -> None:
        self.engine = _sync_engine(wallet, engine, options)
        self.inner = inner if inner is not None else httpx.HTTPTransport()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response: httpx.Response = handle_sync(self.engine, self.inner, request, httpx)
        return response

    def close(self) -> None:
        """Close ``inner``; the ledger's deferred outcome writes are applied (visible to other processes)."""
        self.engine.ledger.flush()
        self.inner.close()


class AsyncMppTransport(httpx.AsyncBaseTransport):
    """The async twin of :class:`MppTransport`."""

    def __init__(self, wallet: Wallet | None = None, *, inner: httpx.AsyncBaseTransport | None = None,
                 engine: AsyncEngine | None = None, **options: Any) -> None:
        self.engine = _async_engine(wallet, engine, options)
        self.inner = inner if inner is not None else httpx.AsyncHTTPTransport()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response: httpx.Response = await handle_async(self.engine, self.inner, request, httpx)
        return response

    async def aclose(self) -> None:
        """See :meth:`MppTransport.close`."""
        self.engine.ledger.flush()
        await self.inner.aclose()


class MppClient(PaymentsMixin, httpx.Client):
    """An ``httpx.Client`` that pays MPP 402 challenges (arguments as the httpx2 ``MppClient``)."""

    def __init__(self, wallet: Wallet, *, rpc_url: str | None = None, rpc: RpcClient | None = None,
                 policy: Policy | None = None, allowed_origins: Iterable[str] = (),
                 ledger: LedgerArg = "default",
                 approve: Approve | None = None, approve_above: int | str | Decimal | None = None,
                 hooks: Hooks | None = None, dry_run: bool = False, payer: Payer | None = None,
                 transport: httpx.BaseTransport | None = None, **kwargs: Any) -> None:
        options = {"rpc_url": rpc_url, "rpc": rpc, "policy": policy, "allowed_origins": allowed_origins,
                   "ledger": ledger, "approve": approve, "approve_above": approve_above, "hooks": hooks,
                   "dry_run": dry_run, "payer": payer}
        self._engine = engine = _sync_engine(wallet, None, options)
        tkw = _split(kwargs)
        inner = transport if transport is not None else httpx.HTTPTransport(**tkw)
        super().__init__(transport=MppTransport(engine=engine, inner=inner), **kwargs)
        self._mounts = {p: (None if t is None else MppTransport(engine=engine, inner=t))
                        for p, t in self._mounts.items()}

    def send(self, request: httpx.Request, **kwargs: Any) -> httpx.Response:
        request.extensions.setdefault(EXT_FIRST_ORIGIN, first_origin(request.url))
        return super().send(request, **kwargs)

    def reconcile(self) -> int:
        """Resolve ledger rows with an unknown outcome from the chain; returns how many changed."""
        assert isinstance(self._engine, SyncEngine)
        return reconcile_sync(self._engine)

    def close(self) -> None:
        super().close()
        if self._engine.owns_rpc:
            self._engine.payer.rpc.close()  # type: ignore[attr-defined]


class AsyncMppClient(PaymentsMixin, httpx.AsyncClient):
    """An ``httpx.AsyncClient`` that pays MPP 402 challenges (arguments as the httpx2 one)."""

    def __init__(self, wallet: Wallet, *, rpc_url: str | None = None, rpc: AsyncRpcClient | None = None,
                 policy: Policy | None = None, allowed_origins: Iterable[str] = (),
                 ledger: LedgerArg = "default",
                 approve: Approve | None = None, approve_above: int | str | Decimal | None = None,
                 hooks: Hooks | None = None, dry_run: bool = False, payer: AsyncPayer | None = None,
                 transport: httpx.AsyncBaseTransport | None = None, **kwargs: Any) -> None:
        options = {"rpc_url": rpc_url, "rpc": rpc, "policy": policy, "allowed_origins": allowed_origins,
                   "ledger": ledger, "approve": approve, "approve_above": approve_above, "hooks": hooks,
                   "dry_run": dry_run, "payer": payer}
        self._engine = engine = _async_engine(wallet, None, options)
        tkw = _split(kwargs)
        inner = transport if transport is not None else httpx.AsyncHTTPTransport(**tkw)
        super().__init__(transport=AsyncMppTransport(engine=engine, inner=inner), **kwargs)
        self._mounts = {p: (None if t is None else AsyncMppTransport(engine=engine, inner=t))
                        for p, t in self._mounts.items()}

    async def send(self, request: httpx.Request, **kwargs: Any) -> httpx.Response:
        request.extensions.setdefault(EXT_FIRST_ORIGIN, first_origin(request.url))
        return await super().send(request, **kwargs)

    async def reconcile(self) -> int:
        """Resolve ledger rows with an unknown outcome from the chain; returns how many changed."""
        assert isinstance(self._engine, AsyncEngine)
        return await reconcile_async(self._engine)

    async def aclose(self) -> None:
        await super().aclose()
        if self._engine.owns_rpc:
            await self._engine.payer.rpc.aclose()  # type: ignore[attr-defined]
