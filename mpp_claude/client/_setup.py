"""Build an engine from the keyword arguments every client and transport accepts, and the
public methods every client shares (receipts, spend, scoped budgets, dry run, reconcile)."""

from __future__ import annotations

import os
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator
from contextlib import contextmanager
from decimal import Decimal
from typing import Any, Literal, TypeVar

from ..errors import ConfigError, PaymentQuoted
from ..tempo.rpc import AsyncRpcClient, RpcClient
from ._engine import Approve, AsyncEngine, Engine, SyncEngine, reset_dry_run, set_dry_run
from .budget import BudgetScope
from .hooks import Hooks
from .ledger import AnyLedger, Ledger, MemoryLedger, Row
from .payer import AsyncPayer, Payer
from .policy import Policy, normalize_origin, origin_of, usd
from .receipts import PaymentReceipt, Quote
from .wallet import Wallet

T = TypeVar("T")
LedgerArg = str | os.PathLike[str] | Ledger | MemoryLedger | Literal["default"] | None

ENV_RPC_URL = "MPP_RPC_URL"


def open_ledger(ledger: LedgerArg) -> AnyLedger:
    """``"default"``: the SQLite ledger in the user data dir; a path: SQLite there; ``None``: in memory."""
    if ledger is None:
        return MemoryLedger()
    if isinstance(ledger, (Ledger, MemoryLedger)):
        return ledger
    return Ledger(None if ledger == "default" else ledger)


def make_engine(sync: bool, wallet: Wallet, *, rpc_url: str | None = None,
                rpc: RpcClient | AsyncRpcClient | None = None, policy: Policy | None = None,
                allowed_origins: Iterable[str] = (), ledger: LedgerArg = "default",
                approve: Approve | None = None, approve_above: int | str | Decimal | None = None,
                hooks: Hooks | None = None, dry_run: bool = False,
                payer: Payer | AsyncPayer | None = None) -> SyncEngine | AsyncEngine:
    """The engine behind one client.  ``payer`` replaces the RPC-backed default (a remote or
    hardware signer, or a test double).

    Raises:
        ConfigError: no wallet, no RPC endpoint, or an RPC client of the wrong kind.
    """
    if not isinstance(wallet, Wallet):
        raise ConfigError(f"wallet must be a mpp_claude Wallet, got {type(wallet).__name__}")
    pol = (policy or Policy()).with_origins(allowed_origins)
    owns_rpc = rpc is None and payer is None
    if payer is not None:
        kw0: dict[str, Any] = {"approve": approve, "hooks": hooks, "dry_run": dry_run,
                               "approve_above": None if approve_above is None else usd(approve_above)}
        cls = SyncEngine if sync else AsyncEngine
        return cls(wallet, pol, open_ledger(ledger), payer, **kw0)  # type: ignore[arg-type]
    if rpc is None:
        url = rpc_url or os.environ.get(ENV_RPC_URL)
        if not url:
            raise ConfigError(f"an RPC endpoint is required to pay: pass rpc_url= or set {ENV_RPC_URL}")
        rpc = RpcClient(url) if sync else AsyncRpcClient(url)
    kw: dict[str, Any] = {"approve": approve, "hooks": hooks, "dry_run": dry_run,
                          "approve_above": None if approve_above is None else usd(approve_above)}
    if sync:
        if not isinstance(rpc, RpcClient):
            raise ConfigError("a sync client needs a sync RpcClient")
        engine: SyncEngine | AsyncEngine = SyncEngine(wallet, pol, open_ledger(ledger), Payer(wallet, rpc),
                                                      **kw)
    else:
        if not isinstance(rpc, AsyncRpcClient):
            raise ConfigError("an async client needs an AsyncRpcClient")
        engine = AsyncEngine(wallet, pol, open_ledger(ledger), AsyncPayer(wallet, rpc), **kw)
    engine.owns_rpc = owns_rpc
    return engine


def first_origin(url: Any) -> str:
    """The origin of an ``httpx``/``httpx2`` URL (stamped on requests before redirects)."""
    return origin_of(url.scheme, url.host, url.port)


class PaymentsMixin:
    """What ``MppClient`` and ``AsyncMppClient`` (httpx and httpx2) add to an HTTP client."""

    _engine: Engine

    @property
    def wallet(self) -> Wallet:
        return self._engine.wallet

    @property
    def policy(self) -> Policy:
        return self._engine.policy

    @property
    def ledger(self) -> AnyLedger:
        return self._engine.ledger

    @property
    def receipts(self) -> list[PaymentReceipt]:
        """Receipts of the payments this client made, oldest first (the last 10 000)."""
        return list(self._engine.receipts)

    @property
    def last_receipt(self) -> PaymentReceipt | None:
        return self._engine.receipts[-1] if self._engine.receipts else None

    @property
    def spent(self) -> int:
        """Base units this client has reserved or paid (its ``max_per_client`` usage)."""
        return self._engine.lifetime.spent

    def allow_origin(self, origin: str) -> None:
        """Add ``origin`` (``scheme://host[:port]``) to the allowlist of this client."""
        self._engine.policy = self._engine.policy.with_origins([normalize_origin(origin)])

    def budget(self, limit: int | str | Decimal, *, name: str = "scope") -> BudgetScope:
        """A scoped sub-budget: ``with client.budget("0.20"): ...`` caps the payments made inside
        the block at $0.20, on top of every other limit.  The scope lives in a context variable,
        so it covers asyncio tasks started inside the block and every paying client used there
        (it is :func:`~mpp_claude.client.spending_limit` under another name)."""
        return BudgetScope(limit, name=name)

    @contextmanager
    def dry_run(self) -> Iterator[None]:
        """Inside the block, a 402 raises ``PaymentQuoted`` (``.quote``) instead of paying."""
        token = set_dry_run(True)
        try:
            yield
        finally:
            reset_dry_run(token)

    def quote(self, call: Callable[[], Any]) -> Quote | None:
        """Run ``call`` in dry-run mode and return the price it would pay (``None``: it was free).

        Example: ``client.quote(lambda: oai.chat.completions.create(...))``.
        """
        with self.dry_run():
            try:
                call()
            except PaymentQuoted as exc:
                quote: Quote = exc.quote
                return quote
        return None

    async def aquote(self, call: Callable[[], Awaitable[Any]]) -> Quote | None:
        """The async twin of :meth:`quote`."""
        with self.dry_run():
            try:
                await call()
            except PaymentQuoted as exc:
                quote: Quote = exc.quote
                return quote
        return None

    def _session_shell(self) -> Any:
        """The session transport (``session=`` given), for the channel methods.

        Raises:
            ConfigError: the client was built without ``session=``.
        """
        shell = getattr(self, "session_transport", None)
        if shell is None:
            raise ConfigError("this client pays no sessions: pass session=SessionPolicy(...) to use channels")
        return shell

    def unresolved(self) -> list[Row]:
        """Ledger rows of this wallet whose outcome is unknown (budget held): ``unknown``, and
        ``reserved``/``signed`` rows of payments in flight or of a process that died mid-payment."""
        return self._engine.ledger.rows(wallet=self._engine.wallet.address,
                                        status=("unknown", "signed", "reserved"))


def resolve_rows(ledger: AnyLedger, rows: list[Row], statuses: dict[str, bool | None], now: float) -> int:
    """Settle or release unknown rows from what the chain says; returns how many changed.

    A row is released only when its transaction is not mined and ``valid_before`` has passed
    (an expiring-nonce transaction can never be mined after that, TIP-1009).
    """
    changed = 0
    for row in rows:
        mined = statuses.get(row.tx_hash or "")
        if mined:
            ledger.settle(row.id, reference=row.tx_hash, now=now)
            changed += 1
        elif (mined is False or (row.valid_before is not None and row.valid_before < now)):
            ledger.release(row.id, error="not settled on chain before valid_before", now=now)
            changed += 1
    return changed


def reconcile_sync(engine: SyncEngine) -> int:
    """Resolve this wallet's unknown ledger rows from the chain (sync)."""
    rows = [r for r in engine.ledger.rows(wallet=engine.wallet.address, status=("unknown",)) if r.tx_hash]
    statuses = {r.tx_hash or "": engine.payer.tx_status(r.tx_hash or "") for r in rows}
    return resolve_rows(engine.ledger, rows, statuses, time.time())


async def reconcile_async(engine: AsyncEngine) -> int:
    """Resolve this wallet's unknown ledger rows from the chain (async)."""
    rows = [r for r in engine.ledger.rows(wallet=engine.wallet.address, status=("unknown",)) if r.tx_hash]
    statuses = {r.tx_hash or "": await engine.payer.tx_status(r.tx_hash or "") for r in rows}
    return resolve_rows(engine.ledger, rows, statuses, time.time())
