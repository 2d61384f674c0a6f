"""The spend report as aligned text tables (rich), for a terminal or a plain file.

Each cell shows the USDC amount and, in parentheses, the count; the last row is
the total. Colour is used only on a terminal. The caller gives the width (the
terminal's; ``WIDTH`` for piped output). A report too wide for it is printed
stacked instead: one line per bucket, the figures never cut or wrapped.
"""

from __future__ import annotations

import io

from rich.console import Console
from rich.panel import Panel
from rich.table import Table

from walletd.domain.audit import AuditResult
from walletd.domain.money import format_usd
from walletd.domain.report import BUCKETS, CONFIRMED, UNCONFIRMED, ReportRow, SpendReport, iso_ms
from walletd.report import audit_warning

WIDTH = 220
"""Columns of plain (non-terminal) output: wide enough for every column unwrapped."""

TOTAL = "TOTAL"

_COLUMNS: tuple[str, ...] = (*BUCKETS, CONFIRMED, UNCONFIRMED)


def _cell(row: ReportRow, name: str) -> str:
    t = row.tally(name)
    return f"{format_usd(t.amount)} ({t.count})" if t.count else "-"


def _label(value: str) -> str:
    return value if value else "(none)"


def _period(report: SpendReport) -> str:
    q = report.query
    since = iso_ms(q.since_ms) if q.since_ms is not None else "the beginning"
    until = iso_ms(q.until_ms) if q.until_ms is not None else iso_ms(report.generated_at_ms)
    who = f" for client {q.client}" if q.client else ""
    return f"from {since} until {until}{who}"


def _main_table(report: SpendReport) -> Table:
    dims = report.query.group_by
    table = Table(title=f"walletd spend report {_period(report)}", title_justify="left")
    for dim in dims or ("",):
        table.add_column(dim, overflow="fold")
    for name in _COLUMNS:
        table.add_column(f"{name} USDC (n)", justify="right", no_wrap=True)
    if dims:  # ungrouped, the one body row would repeat the total
        for i, row in enumerate(report.rows):
            last = i == len(report.rows) - 1
            table.add_row(
                *(_label(v) for v in row.key), *(_cell(row, n) for n in _COLUMNS), end_section=last
            )
    first = [TOTAL, *([""] * (len(dims) - 1))]
    table.add_row(*first, *(_cell(report.totals, n) for n in _COLUMNS), style="bold")
    return table


def _stacked_table(report: SpendReport) -> Table:
    """The main table for a narrow terminal: one line per (row, bucket)."""
    dims = report.query.group_by
    table = Table(title=f"walletd spend report {_period(report)}", title_justify="left")
    for dim in dims:
        table.add_column(dim, overflow="fold")
    table.add_column("bucket", no_wrap=True)
    table.add_column("USDC (n)", justify="right", no_wrap=True)
    rows = [(tuple(_label(v) for v in row.key), row) for row in report.rows] if dims else []
    rows.append(((TOTAL, *([""] * (len(dims) - 1))) if dims else (), report.totals))
    for labels, row in rows:
        total = row is report.totals
        for i, name in enumerate(_COLUMNS):
            shown = labels if i == 0 else ("",) * len(labels)
            name_cell = f"{TOTAL} {name}" if total and not dims else name
            table.add_row(
                *shown,
                name_cell,
                _cell(row, name),
                end_section=i == len(_COLUMNS) - 1,
                style="bold" if total else None,
            )
    return table


def _fits(table: Table, width: int) -> bool:
    probe = Console(file=io.StringIO(), width=10_000, no_color=True)
    return probe.measure(table).maximum <= width


def _refusals(report: SpendReport) -> Table | None:
    if not report.refusals:
        return None
    table = Table(title="refusals by reason", title_justify="left")
    for name, justify in (
        ("reason", "left"),
        ("rule / window", "left"),
        ("count", "right"),
        ("USDC asked", "right"),
    ):
        table.add_column(name, justify=justify)  # type: ignore[arg-type]
    for r in report.refusals:
        table.add_row(r.reason, r.rule or "-", str(r.count), format_usd(r.amount))
    return table


def render_table(
    report: SpendReport,
    result: AuditResult | None,
    *,
    color: bool = False,
    width: int = WIDTH,
) -> str:
    """The report as text in ``width`` columns: audit status, main table, refusal reasons."""
    out = io.StringIO()
    console = Console(
        file=out, width=width, force_terminal=color, no_color=not color, highlight=False
    )
    warning = audit_warning(result)
    if warning:
        console.print(Panel(warning, title="LEDGER AUDIT FAILED", style="bold red"))
    main = _main_table(report)
    console.print(main if _fits(main, width) else _stacked_table(report))
    refusals = _refusals(report)
    if refusals is not None:
        console.print(refusals)
    authorized, charged = report.totals.authorized, report.totals.payments.amount
    if authorized > charged:  # upto payments charged less than they authorized
        console.print(
            f"authorized {format_usd(authorized)} USD, charged {format_usd(charged)} USD "
            f"(upto payments released {format_usd(authorized - charged)} USD)"
        )
    if result is None:
        console.print("audit: not checked")
    elif result.ok:
        console.print(
            f"audit: ok ({result.events} events, {result.decisions} decisions; "
            f"head {result.events_head[:16]}…)"
        )
    return "".join(line.rstrip() + "\n" for line in out.getvalue().splitlines())
