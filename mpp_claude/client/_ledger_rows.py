"""What a spend ledger records, shared by the SQLite :class:`~.ledger.Ledger` and the in-memory
:class:`~._memledger.MemoryLedger`: the rows, their counted statuses, the rolling windows and the
refusal a full budget raises.  No I/O and no clock (``default_path`` only names a path).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ..errors import BudgetExceeded

DAY = 86_400.0
MINUTE = 60.0
COUNTED = ("reserved", "signed", "settled", "unknown")

Reference = str | None | Callable[[], str | None]
"""A settled payment's reference, or (deferred writes) the function that gives it."""


def resolved(reference: Reference) -> str | None:
    """The reference itself, or what a deferred write's function gives."""
    return reference() if callable(reference) else reference


def minute_of(ts: float) -> int:
    """The spend bucket (``spend_minutes.minute``) of Unix time ``ts``."""
    return int(ts // 60)


def default_path() -> Path:
    """``<user data dir>/mpp-claude/ledger.sqlite3`` (platformdirs)."""
    import platformdirs

    return Path(platformdirs.user_data_dir("mpp-claude", appauthor=False)) / "ledger.sqlite3"


@dataclass(frozen=True, slots=True)
class Entry:
    """What is known about a payment before it is signed."""

    wallet: str
    amount: int
    currency: str
    chain_id: int | None
    payee: str
    origin: str
    path: str
    model: str | None = None
    request_id: str | None = None
    challenge_id: str | None = None


@dataclass(frozen=True, slots=True)
class Row:
    """One ledger row as reported by :meth:`Ledger.rows`."""

    id: int
    wallet: str
    status: str
    amount: int
    currency: str
    chain_id: int | None
    payee: str
    origin: str
    path: str
    model: str | None
    request_id: str | None
    challenge_id: str | None
    tx_hash: str | None
    reference: str | None
    valid_before: int | None
    created_at: float
    updated_at: float
    error: str | None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def exceeded(limit: str, value: int, amount: int, used: int, what: str) -> BudgetExceeded:
    """The refusal of a payment of ``amount`` that would take ``limit`` (``value``) past its cap."""
    return BudgetExceeded(f"payment of {amount} base units would exceed {limit} {value} "
                          f"({used} {what})", limit=limit, limit_value=value, requested=amount, used=used)


def known_fields(tx_hash: str | None, valid_before: int | None) -> dict[str, Any]:
    """The transaction fields to write: those given (``None`` keeps the stored value)."""
    out: dict[str, Any] = {}
    if tx_hash is not None:
        out["tx_hash"] = tx_hash
    if valid_before is not None:
        out["valid_before"] = valid_before
    return out


def initial_status(status: str) -> str:
    """``status`` if a row may start in it (``reserved``, or ``settled`` for a session voucher)."""
    if status not in ("reserved", "settled"):
        raise ValueError(f"a row starts reserved or settled, not {status!r}")
    return status
