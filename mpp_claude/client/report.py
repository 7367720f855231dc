"""The spend report behind ``mpp-claude spend``: the ledger as a table, JSON or CSV, and its
totals per day (UTC), model and origin."""

from __future__ import annotations

import csv
import io
import json
import os
from datetime import datetime, timezone
from typing import Literal

from ..tempo import tip20
from .ledger import COUNTED, Ledger, Row, default_path
from .receipts import display

Format = Literal["table", "json", "csv"]
GroupBy = Literal["day", "model", "origin"]
GROUPS: tuple[GroupBy, ...] = ("day", "model", "origin")
_COLUMNS = ("id", "created", "status", "amount", "token", "payee", "origin", "path", "model", "tx_hash")


def _when(ts: float) -> str:
    return datetime.fromtimestamp(ts, timezone.utc).strftime("%Y-%m-%d %H:%M:%SZ")


def _cells(row: Row) -> list[str]:
    return [str(row.id), _when(row.created_at), row.status, display(row.amount),
            tip20.token_symbol(row.chain_id or 0, row.currency), row.payee, row.origin, row.path,
            row.model or "", row.tx_hash or ""]


def _group_key(row: Row, by: GroupBy) -> str:
    if by == "day":
        return _when(row.created_at)[:10]
    if by == "model":
        return row.model or "(none)"
    return row.origin


def totals(rows: list[Row], by: GroupBy) -> list[dict[str, str | int]]:
    """Payments that count against budgets, summed per ``by`` (``day`` in UTC, ``model``, ``origin``).

    Released rows (provably no payment) are left out.  Returns one dict per group, sorted by key:
    ``{by: key, "payments": n, "amount": base units, "currency": symbol or address}``; a group
    paid in several tokens gets one dict per token.
    """
    sums: dict[tuple[str, str], list[int]] = {}
    for row in rows:
        if row.status not in COUNTED:
            continue
        cur = tip20.token_symbol(row.chain_id or 0, row.currency)
        acc = sums.setdefault((_group_key(row, by), cur), [0, 0])
        acc[0] += 1
        acc[1] += row.amount
    return [{by: key, "payments": n, "amount": amount, "currency": cur}
            for (key, cur), (n, amount) in sorted(sums.items())]


def render_totals(rows: list[Row], by: GroupBy, fmt: Format = "table") -> str:
    """:func:`totals` as text: ``json`` (amounts in base units), ``csv`` with a header, or a table."""
    groups = totals(rows, by)
    if fmt == "json":
        return json.dumps(groups, indent=2)
    if fmt == "csv":
        out = io.StringIO()
        writer = csv.DictWriter(out, fieldnames=[by, "payments", "amount", "currency"], lineterminator="\n")
        writer.writeheader()
        writer.writerows(groups)
        return out.getvalue()
    table = [[by, "payments", "amount", "token"],
             *([str(g[by]), str(g["payments"]), display(int(g["amount"])), str(g["currency"])]
               for g in groups)]
    widths = [max(len(line[i]) for line in table) for i in range(4)]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip()
                     for line in table)


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
    for by in GROUPS:
        if counted:
            lines += ["", f"totals per {by}" + (" (UTC)" if by == "day" else ""), render_totals(rows, by)]
    return "\n".join(lines)


def spend_report(path: str | os.PathLike[str] | None = None, *, fmt: Format = "table",
                 wallet: str | None = None, since: float | None = None, by: GroupBy | None = None) -> str:
    """The ledger at ``path`` (default: the user data dir's) rendered as ``fmt``.

    Args:
        path: the ledger file; ``None`` = ``ledger.default_path()``.
        fmt: ``"table"``, ``"json"`` or ``"csv"``.
        wallet: only this wallet's rows (checksummed address as recorded).
        since: only rows created at or after this Unix time.
        by: only the totals per ``"day"``, ``"model"`` or ``"origin"`` (see :func:`totals`).
    Raises:
        ConfigError: never for a missing file (an empty report is returned instead).
    """
    p = default_path() if path is None else path
    if not os.path.exists(p):
        return render([], fmt) if by is None else render_totals([], by, fmt)
    ledger = Ledger(p)
    try:
        rows = ledger.rows(wallet=wallet, since=since)
        return render(rows, fmt) if by is None else render_totals(rows, by, fmt)
    finally:
        ledger.close()
