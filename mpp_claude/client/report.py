"""The spend report behind ``mpp-claude spend``: the ledger as a table, JSON or CSV."""

from __future__ import annotations

import csv
import io
import json
import os
from datetime import datetime, timezone
from typing import Literal

from ..tempo import tip20
from .ledger import Ledger, Row, default_path
from .receipts import display

Format = Literal["table", "json", "csv"]
_COLUMNS = ("id", "created", "status", "amount", "token", "payee", "origin", "path", "model", "tx_hash")


def _when(ts: float) -> str:
    return datetime.fromtimestamp(ts, timezone.utc).strftime("%Y-%m-%d %H:%M:%SZ")


def _cells(row: Row) -> list[str]:
    return [str(row.id), _when(row.created_at), row.status, display(row.amount),
            tip20.token_symbol(row.chain_id or 0, row.currency), row.payee, row.origin, row.path,
            row.model or "", row.tx_hash or ""]


def render(rows: list[Row], fmt: Format = "table") -> str:
    """Rows as text.  ``json``: a list of objects with every ledger field (amounts in base units);
    ``csv``: the same fields with a header line; ``table``: aligned columns plus a total line."""
    if fmt == "json":
        return json.dumps([r.to_dict() for r in rows], indent=2)
    if fmt == "csv":
        out = io.StringIO()
        fields = list(Row.__dataclass_fields__)
        writer = csv.DictWriter(out, fieldnames=fields, lineterminator="\n")
        writer.writeheader()
        for r in rows:
            writer.writerow(r.to_dict())
        return out.getvalue()
    table = [list(_COLUMNS), *(_cells(r) for r in rows)]
    widths = [max(len(line[i]) for line in table) for i in range(len(_COLUMNS))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip() for line in table]
    counted = [r for r in rows if r.status in ("settled", "unknown", "signed", "reserved")]
    total = display(sum(r.amount for r in counted))
    lines.append(f"{len(rows)} row(s); {len(counted)} counted against budgets, total {total}")
    return "\n".join(lines)


def spend_report(path: str | os.PathLike[str] | None = None, *, fmt: Format = "table",
                 wallet: str | None = None, since: float | None = None) -> str:
    """The ledger at ``path`` (default: the user data dir's) rendered as ``fmt``.

    Args:
        path: the ledger file; ``None`` = ``ledger.default_path()``.
        fmt: ``"table"``, ``"json"`` or ``"csv"``.
        wallet: only this wallet's rows (checksummed address as recorded).
        since: only rows created at or after this Unix time.
    Raises:
        ConfigError: never for a missing file (an empty report is returned instead).
    """
    p = default_path() if path is None else path
    if not os.path.exists(p):
        return render([], fmt)
    ledger = Ledger(p)
    try:
        return render(ledger.rows(wallet=wallet, since=since), fmt)
    finally:
        ledger.close()
