"""httpx2 shells: transports wrapping any inner transport, and clients the openai SDK accepts.

``openai.OpenAI(http_client=MppClient(wallet, rpc_url=..., allowed_origins=[...]))`` pays
402 challenges on every request that client sends, and nothing else in the process changes
(no monkey-patching).  The legacy ``httpx`` twins live in :mod:`mpp_claude.httpx`.
"""

from __future__ import annotations

from collections.abc import Iterable
from decimal import Decimal
from typing import Any

import httpx2

from ..tempo.rpc import AsyncRpcClient, RpcClient
from ._awire import default_async_transport
from ._engine import EXT_FIRST_ORIGIN, Approve, AsyncEngine, SyncEngine
from ._session_reclaim import ReclaimStatus
from ._session_shell import attach_session
from ._setup import LedgerArg, PaymentsMixin, first_origin, make_engine, reconcile_async, reconcile_sync
from ._shell import handle_async, handle_sync
from ._wire import default_transport
from .hooks import Hooks
from .payer import AsyncPayer, Payer
from .policy import Policy
from .session import SessionPolicy, SessionReceipt
from .wallet import Wallet

_TRANSPORT_KW = ("verify", "cert", "trust_env", "http1", "http2", "limits")
DEFAULT_TIMEOUT = httpx2.Timeout(timeout=600, connect=5.0)  # the openai SDK's defaults
DEFAULT_LIMITS = httpx2.Limits(max_connections=1000, max_keepalive_connections=100)


def _sync_engine(wallet: Wallet | None, engine: SyncEngine | None, options: dict[str, Any]) -> SyncEngine:
    if engine is not None:
        return engine
    built = make_engine(True, wallet, **options)  # type: ignore[arg-type]
    assert isinstance(built, SyncEngine)
    return built


def _async_engine(wallet: Wallet | None, engine: AsyncEngine | None, options: dict[str, Any]) -> AsyncEngine:
    if engine is not None:
        return engine
    built = make_engine(False, wallet, **options)  # type: ignore[arg-type]
    assert isinstance(built, AsyncEngine)
    return built


class MppTransport(httpx2.BaseTransport):
    """A sync transport that pays MPP 402 challenges, wrapping ``inner``.

    Args:
        wallet: the paying wallet (or pass a prepared ``engine``).
        inner: the transport that does the I/O (default: the lean HTTP/1.1 ``WireTransport``).
        **options: ``rpc_url``, ``rpc``, ``policy``, ``allowed_origins``, ``ledger``, ``approve``,
            ``approve_above``, ``hooks``, ``dry_run`` (see :class:`MppClient`).

    A bare transport cannot see redirects its client follows; use :class:`MppClient`, or
    ``follow_redirects=False``, to keep the cross-origin-redirect guard.
    """

    def __init__(self, wallet: Wallet | None = None, *, inner: httpx2.BaseTransport | None = None,
                 engine: SyncEngine | None = None, **options: Any) -> None:
        self.engine = _sync_engine(wallet, engine, options)
        self.inner = inner if inner is not None else default_transport()

    def handle_request(self, request: httpx2.Request) -> httpx2.Response:
        response: httpx2.Response = handle_sync(self.engine, self.inner, request, httpx2)
        return response

    def close(self) -> None:
        """Close ``inner``; the ledger's deferred outcome writes are applied (visible to other processes)."""
        self.engine.ledger.flush()
        self.inner.close()


class AsyncMppTransport(httpx2.AsyncBaseTransport):
    """The async twin of :class:`MppTransport`."""

    def __init__(self, wallet: Wallet | None = None, *, inner: httpx2.AsyncBaseTransport | None = None,
                 engine: AsyncEngine | None = None, **options: Any) -> None:
        self.engine = _async_engine(wallet, engine, options)
        self.inner = inner if inner is not None else default_async_transport()

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        response: httpx2.Response = await handle_async(self.engine, self.inner, request, httpx2)
        return response

    async def aclose(self) -> None:
        """See :meth:`MppTransport.close`."""
        self.engine.ledger.flush()
        await self.inner.aclose()


def _split(kwargs: dict[str, Any]) -> dict[str, Any]:
    kwargs.setdefault("timeout", DEFAULT_TIMEOUT)
    kwargs.setdefault("follow_redirects", True)
    tkw = {k: kwargs.pop(k) for k in _TRANSPORT_KW if k in kwargs}
    tkw.setdefault("limits", DEFAULT_LIMITS)
    return tkw


class MppClient(PaymentsMixin, httpx2.Client):
    """An ``httpx2.Client`` that pays MPP 402 challenges; pass it as ``OpenAI(http_client=...)``.

    Args:
        wallet: the paying :class:`~mpp_claude.client.Wallet`.
        rpc_url: JSON-RPC endpoint of the Tempo chain to pay on (or env ``MPP_RPC_URL``); its
            chain id pins the chain unless ``policy.chain_id`` is set.
        rpc: an existing ``RpcClient`` instead of ``rpc_url``.
        policy: the :class:`Policy` (default limits: $1 per payment, $10 per client, $25 per
            24 h, 30 per minute).
        allowed_origins: origins added to the policy's allowlist (none: pay nobody).
        ledger: ``"default"`` (SQLite in the user data dir), a path, a ``Ledger``, or ``None``
            (in memory: the 24 h limit then only covers this process).
        approve: ``approve(quote) -> bool`` called before signing; ``False`` vetoes.
        approve_above: only payments above this amount go to ``approve``.
        hooks: :class:`Hooks` observers (challenge, payment, receipt).
        dry_run: never pay; a 402 raises ``PaymentQuoted`` carrying the quote.
        session: a ``SessionPolicy`` to pay with payment channels where offered (off by default).
        transport: the inner transport doing the I/O (default: the lean HTTP/1.1 ``WireTransport``,
            or ``httpx2.HTTPTransport`` when ``http2=True`` or an option it lacks is given).
        **kwargs: everything ``httpx2.Client`` takes (defaults as the openai SDK's client).
    Raises:
        ConfigError: missing RPC endpoint, invalid policy values.
    """

    def __init__(self, wallet: Wallet, *, rpc_url: str | None = None, rpc: RpcClient | None = None,
                 policy: Policy | None = None, allowed_origins: Iterable[str] = (),
                 ledger: LedgerArg = "default",
                 approve: Approve | None = None, approve_above: int | str | Decimal | None = None,
                 hooks: Hooks | None = None, dry_run: bool = False, payer: Payer | None = None,
                 session: SessionPolicy | None = None,
                 transport: httpx2.BaseTransport | None = None, **kwargs: Any) -> None:
        options = {"rpc_url": rpc_url, "rpc": rpc, "policy": policy, "allowed_origins": allowed_origins,
                   "ledger": ledger, "approve": approve, "approve_above": approve_above, "hooks": hooks,
                   "dry_run": dry_run, "payer": payer}
        self._engine = engine = _sync_engine(wallet, None, options)
        tkw = _split(kwargs)
        inner = transport if transport is not None else default_transport(**tkw)
        super().__init__(transport=MppTransport(engine=engine, inner=inner), **kwargs)
        self._mounts = {p: (None if t is None else MppTransport(engine=engine, inner=t))
                        for p, t in self._mounts.items()}
        if session is not None:
            attach_session(self, session)

    def send(self, request: httpx2.Request, **kwargs: Any) -> httpx2.Response:
        request.extensions.setdefault(EXT_FIRST_ORIGIN, first_origin(request.url))
        return super().send(request, **kwargs)

    def close_sessions(self) -> list[SessionReceipt]:
        """Close this client's open payment channels (``session=``): the server is paid what it reported
        spent and the rest of each deposit returns to the wallet.  Returns the close receipts."""
        shell = getattr(self, "session_transport", None)
        return [] if shell is None else list(shell.close_sessions())

    def request_close(self, channel_id: str) -> ReclaimStatus:
        """Forced close, step 1 (the server is gone or will not close): stop paying from the channel
        and send ``requestClose``; ``withdrawable_at`` says when step 2 is possible."""
        return self._session_shell().request_close(channel_id)  # type: ignore[no-any-return]

    def withdraw(self, channel_id: str) -> ReclaimStatus:
        """Forced close, step 2: reclaim the deposit minus what the payee settled (raises
        ``GracePeriodNotOver`` with ``ends_at`` when too early, ``ChannelAlreadyFinalized``)."""
        return self._session_shell().withdraw(channel_id)  # type: ignore[no-any-return]

    def reclaim(self, channel_id: str | None = None) -> list[ReclaimStatus]:
        """Whichever forced-close step is due, for one channel or every one this wallet is closing."""
        return self._session_shell().reclaim(channel_id)  # type: ignore[no-any-return]

    def reconcile(self) -> int:
        """Resolve ledger rows with an unknown outcome from the chain; returns how many changed."""
        assert isinstance(self._engine, SyncEngine)
        return reconcile_sync(self._engine)

    def close(self) -> None:
        super().close()
        if self._engine.owns_rpc:
            self._engine.payer.rpc.close()  # type: ignore[attr-defined]


class AsyncMppClient(PaymentsMixin, httpx2.AsyncClient):
    """An ``httpx2.AsyncClient`` that pays MPP 402 challenges; for ``AsyncOpenAI(http_client=...)``.

    Takes the same arguments as :class:`MppClient` (``rpc`` is an ``AsyncRpcClient``); the
    ``approve`` callback may be async.  The default ``transport`` is the lean asyncio HTTP/1.1
    ``AsyncWireTransport`` (``httpx2.AsyncHTTPTransport`` under another async library such as
    trio, or when ``http2=True`` or an option it lacks is given).
    """

    def __init__(self, wallet: Wallet, *, rpc_url: str | None = None, rpc: AsyncRpcClient | None = None,
                 policy: Policy | None = None, allowed_origins: Iterable[str] = (),
                 ledger: LedgerArg = "default",
                 approve: Approve | None = None, approve_above: int | str | Decimal | None = None,
                 hooks: Hooks | None = None, dry_run: bool = False, payer: AsyncPayer | None = None,
                 session: SessionPolicy | None = None,
                 transport: httpx2.AsyncBaseTransport | None = None, **kwargs: Any) -> None:
        options = {"rpc_url": rpc_url, "rpc": rpc, "policy": policy, "allowed_origins": allowed_origins,
                   "ledger": ledger, "approve": approve, "approve_above": approve_above, "hooks": hooks,
                   "dry_run": dry_run, "payer": payer}
        self._engine = engine = _async_engine(wallet, None, options)
        tkw = _split(kwargs)
        inner = transport if transport is not None else default_async_transport(**tkw)
        super().__init__(transport=AsyncMppTransport(engine=engine, inner=inner), **kwargs)
        self._mounts = {p: (None if t is None else AsyncMppTransport(engine=engine, inner=t))
                        for p, t in self._mounts.items()}
        if session is not None:
            attach_session(self, session)

    async def send(self, request: httpx2.Request, **kwargs: Any) -> httpx2.Response:
        request.extensions.setdefault(EXT_FIRST_ORIGIN, first_origin(request.url))
        return await super().send(request, **kwargs)

    async def close_sessions(self) -> list[SessionReceipt]:
        """See :meth:`MppClient.close_sessions`."""
        shell = getattr(self, "session_transport", None)
        return [] if shell is None else list(await shell.close_sessions())

    async def request_close(self, channel_id: str) -> ReclaimStatus:
        """See :meth:`MppClient.request_close`."""
        return await self._session_shell().request_close(channel_id)  # type: ignore[no-any-return]

    async def withdraw(self, channel_id: str) -> ReclaimStatus:
        """See :meth:`MppClient.withdraw`."""
        return await self._session_shell().withdraw(channel_id)  # type: ignore[no-any-return]

    async def reclaim(self, channel_id: str | None = None) -> list[ReclaimStatus]:
        """See :meth:`MppClient.reclaim`."""
        return await self._session_shell().reclaim(channel_id)  # type: ignore[no-any-return]

    async def reconcile(self) -> int:
        """Resolve ledger rows with an unknown outcome from the chain; returns how many changed."""
        assert isinstance(self._engine, AsyncEngine)
        return await reconcile_async(self._engine)

    async def aclose(self) -> None:
        await super().aclose()
        if self._engine.owns_rpc:
            await self._engine.payer.rpc.aclose()  # type: ignore[attr-defined]
