"""The CSV layout of a spend report (see docs/spend-report.md), both ways.

One header line, then one ``group`` line per row and a final ``total`` line.
Columns: ``row``, the group-by dimensions in the order given, then for each of
``COLUMNS_OF`` a ``_count``, an ``_amount`` (atomic units) and a ``_usdc``
(exact 6-decimal string), then ``authorized_amount`` and ``authorized_usdc``
(what the payments signed for: an upto payment's maximum), and last ``audit``
(``ok``, ``unchecked`` or
``FAILED: <first broken link>``, repeated on every line so no consumer can
read figures without seeing it).
"""

from __future__ import annotations

import csv
import io

from walletd.domain.audit import AuditResult
from walletd.domain.money import format_usd
from walletd.domain.report import (
    BUCKETS,
    CONFIRMED,
    DIMENSIONS,
    UNCONFIRMED,
    ReportRow,
    SpendReport,
    Tally,
)
from walletd.report import audit_status

COLUMNS_OF: tuple[str, ...] = (*BUCKETS, CONFIRMED, UNCONFIRMED, "payments")
"""Tallies per line, in column order."""


def header(dims: tuple[str, ...]) -> list[str]:
    """The header line for a report grouped by ``dims``."""
    cols = ["row", *dims]
    for name in COLUMNS_OF:
        cols += [f"{name}_count", f"{name}_amount", f"{name}_usdc"]
    return [*cols, "authorized_amount", "authorized_usdc", "audit"]


def _tally(row: ReportRow, name: str) -> Tally:
    return row.payments if name == "payments" else row.tally(name)


def _cells(kind: str, key: list[str], row: ReportRow, audit: str) -> list[str]:
    cells = [kind, *key]
    for name in COLUMNS_OF:
        t = _tally(row, name)
        cells += [str(t.count), str(t.amount), format_usd(t.amount)]
    return [*cells, str(row.authorized), format_usd(row.authorized), audit]


def render_csv(report: SpendReport, result: AuditResult | None) -> str:
    """The report as CSV (RFC 4180, CRLF line ends as the csv module writes them)."""
    dims = report.query.group_by
    status = audit_status(result)
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(header(dims))
    for row in report.rows:
        writer.writerow(_cells("group", list(row.key), row, status))
    writer.writerow(_cells("total", [""] * len(dims), report.totals, status))
    return out.getvalue()


def read_csv(text: str) -> tuple[tuple[ReportRow, ...], ReportRow, str]:
    """Rows, the total line and the audit cell back from ``render_csv`` output."""
    reader = csv.DictReader(io.StringIO(text))
    fields = reader.fieldnames or []
    dims = tuple(f for f in fields[1:] if f in DIMENSIONS)
    rows: list[ReportRow] = []
    total: ReportRow | None = None
    audit = ""
    for line in reader:
        tallies = {
            name: Tally(int(line[f"{name}_count"]), int(line[f"{name}_amount"]))
            for name in COLUMNS_OF
        }
        total_line = line["row"] == "total"
        row = ReportRow(
            () if total_line else tuple(line[d] for d in dims),
            {b: tallies[b] for b in BUCKETS},
            tallies[CONFIRMED],
            tallies[UNCONFIRMED],
            int(line.get("authorized_amount") or 0),
        )
        audit = line["audit"]
        if total_line:
            total = row
        else:
            rows.append(row)
    if total is None:
        raise ValueError("no total line")
    return tuple(rows), total, audit
