"""``MemoryLedger``: the :class:`~.ledger.Ledger` interface in memory (``ledger=None``)."""

from __future__ import annotations

import threading
from dataclasses import asdict
from typing import Any

from ..errors import BudgetExceeded
from ._ledger_rows import (
    COUNTED,
    DAY,
    MINUTE,
    Entry,
    Reference,
    Row,
    exceeded,
    initial_status,
    known_fields,
    resolved,
)


class MemoryLedger:
    """The :class:`Ledger` interface in memory (one process; lost at exit)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._rows: list[dict[str, Any]] = []
        self._pins: dict[tuple[str, str], str] = {}
        self._refunded: set[tuple[str, str]] = set()
        self.path = None

    def close(self) -> None:
        pass

    def flush(self, *, wait: bool = True) -> None:
        """Nothing is ever deferred in memory."""

    def _counted(self, wallet: str, since: float) -> list[dict[str, Any]]:
        return [r for r in self._rows
                if r["wallet"] == wallet and r["created_at"] > since and r["status"] in COUNTED]

    def reserve(self, entry: Entry, *, now: float, max_per_day: int | None,
                max_per_minute: int | None, status: str = "reserved", reference: str | None = None) -> int:
        return self.reserve_counted(entry, now=now, max_per_day=max_per_day, max_per_minute=max_per_minute,
                                    status=status, reference=reference)[0]

    def reserve_counted(self, entry: Entry, *, now: float, max_per_day: int | None,
                        max_per_minute: int | None, status: str = "reserved",
                        reference: str | None = None) -> tuple[int, int | None]:
        """See :meth:`Ledger.reserve_counted`."""
        day = 0
        with self._lock:
            if max_per_day is not None:
                day = sum(r["amount"] for r in self._counted(entry.wallet, now - DAY))
                if day + entry.amount > max_per_day:
                    raise exceeded("max_per_day", max_per_day, entry.amount, day, "in the last 24 h")
            if max_per_minute is not None:
                count = len(self._counted(entry.wallet, now - MINUTE))
                if count + 1 > max_per_minute:
                    raise BudgetExceeded(f"payment would exceed max_per_minute {max_per_minute} ({count} in "
                                         "the last 60 s)", limit="max_per_minute",
                                         limit_value=max_per_minute, requested=entry.amount, used=count)
            row = {"id": len(self._rows) + 1, "status": initial_status(status), **asdict(entry),
                   "tx_hash": None, "reference": reference, "valid_before": None, "created_at": now,
                   "updated_at": now, "error": None}
            self._rows.append(row)
            self._pins.setdefault((entry.wallet, entry.origin), entry.payee.lower())
            return int(row["id"]), None if max_per_day is None else day + entry.amount

    def _update(self, row_id: int, now: float, **fields: Any) -> None:
        with self._lock:
            self._rows[row_id - 1].update(fields, updated_at=now)

    def mark_signed(self, row_id: int, *, tx_hash: str | None, valid_before: int | None, now: float) -> None:
        self._update(row_id, now, status="signed", tx_hash=tx_hash, valid_before=valid_before)

    def settle(self, row_id: int, *, reference: Reference, now: float, tx_hash: str | None = None,
               valid_before: int | None = None, defer: bool = False) -> None:
        """Written at once (``defer`` changes nothing in memory)."""
        self._update(row_id, now, status="settled", reference=resolved(reference),
                     **known_fields(tx_hash, valid_before))

    def mark_unknown(self, row_id: int, *, error: str, now: float, tx_hash: str | None = None,
                     valid_before: int | None = None) -> None:
        self._update(row_id, now, status="unknown", error=error[:500], **known_fields(tx_hash, valid_before))

    def release(self, row_id: int, *, error: str, now: float) -> None:
        self._update(row_id, now, status="released", error=error[:500])

    def refund(self, wallet: str, reference: str, amount: int, *, error: str, now: float) -> int:
        left = amount
        with self._lock:
            if (wallet, reference) in self._refunded:
                return 0
            self._refunded.add((wallet, reference))
            for r in reversed(self._rows):
                if left <= 0:
                    break
                if r["wallet"] == wallet and r["reference"] == reference and r["status"] in COUNTED:
                    part = min(left, r["amount"])
                    left -= part
                    if part == r["amount"]:
                        r.update(status="released", error=error[:500], updated_at=now)
                    else:
                        r.update(amount=r["amount"] - part, updated_at=now)
        return amount - left

    def pinned_payee(self, wallet: str, origin: str) -> str | None:
        with self._lock:
            return self._pins.get((wallet, origin))

    def rows(self, *, wallet: str | None = None, since: float | None = None,
             status: tuple[str, ...] | None = None) -> list[Row]:
        with self._lock:
            got = [r for r in self._rows
                   if (wallet is None or r["wallet"] == wallet)
                   and (since is None or r["created_at"] >= since)
                   and (status is None or r["status"] in status)]
        fields = Row.__dataclass_fields__
        return [Row(**{k: r[k] for k in fields}) for r in got]

    def spent(self, wallet: str, *, since: float) -> int:
        with self._lock:
            return sum(r["amount"] for r in self._counted(wallet, since))

    def day_spent(self, wallet: str, *, now: float) -> int:
        return self.spent(wallet, since=now - DAY)
