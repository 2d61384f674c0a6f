"""Rendering spend reports: table (rich), CSV, JSON and a self-contained HTML page.

Every format carries the audit status; when the ledger does not verify (a
broken hash chain, a client or budget row that disagrees with its chain, a
running total that disagrees with the payments), each says so where a reader
cannot miss it (see ``audit_warning``).
The JSON and CSV layouts are stable and documented in docs/spend-report.md.
"""

from __future__ import annotations

from walletd.domain.audit import AuditResult
from walletd.domain.report import Overview, SpendReport
from walletd.errors import InvalidRequestError

FORMATS: tuple[str, ...] = ("table", "csv", "json", "html")


def audit_warning(result: AuditResult | None) -> str | None:
    """The loud one-line warning for a ledger that does not verify, else None."""
    if result is None or result.ok:
        return None
    first = result.first_break
    where = first.describe() if first is not None else "unknown"
    return (
        f"WARNING: LEDGER AUDIT FAILED: the ledger does not verify ({result.break_count} "
        f"problem(s)); first: {where}. The figures come from a ledger that "
        "was changed outside walletd: run `walletd audit verify`."
    )


def audit_status(result: AuditResult | None) -> str:
    """A short status for one cell: ok, FAILED: <first break>, or unchecked."""
    if result is None:
        return "unchecked"
    if result.ok:
        return "ok"
    first = result.first_break
    return "FAILED: " + (first.describe() if first is not None else "unknown")


def render(
    report: SpendReport, result: AuditResult | None, fmt: str, overview: Overview | None = None
) -> str:
    """The report in one of ``FORMATS`` (``overview`` feeds the HTML charts)."""
    if fmt == "json":
        from walletd.report.json_format import render_json

        return render_json(report, result)
    if fmt == "csv":
        from walletd.report.csv_format import render_csv

        return render_csv(report, result)
    if fmt == "html":
        from walletd.report.html import render_html

        return render_html(report, result, overview)
    if fmt == "table":
        from walletd.report.table import render_table

        return render_table(report, result)
    raise InvalidRequestError(f"unknown format {fmt!r}: choose from {', '.join(FORMATS)}")
