"""The spend report as one self-contained HTML page: inline CSS and SVG, no script, no asset.

The page has, in order: the audit status (a red banner when the chain does not
verify), the totals, spend over time per client (stacked bars: settled,
pending, disputed), the top payees and models, the refusal reasons, and the
report's own rows. A Content-Security-Policy forbids every external load and
every script, and all text is escaped, so labels chosen by clients cannot
become markup.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta
from html import escape

from walletd.domain.audit import AuditResult
from walletd.domain.money import format_usd
from walletd.domain.report import (
    BUCKETS,
    CONFIRMED,
    DISPUTED,
    HOUR_MS,
    PENDING,
    SETTLED,
    UNCONFIRMED,
    Overview,
    ReportRow,
    SpendReport,
    iso_ms,
)
from walletd.report import audit_warning
from walletd.report.svg import Series, horizontal_bars, stacked_bars

COLORS = {SETTLED: "#2e8b57", PENDING: "#e0a030", DISPUTED: "#c0392b"}
TOP = 10
"""Payees and models shown."""
HOURLY_UP_TO_H = 72
MIN_SPAN_H = 24
"""A chart covers at least this many hours (ending at the report's end)."""
DAILY_UP_TO_D = 120

CSS = """
body{font-family:system-ui,sans-serif;margin:24px;color:#222;background:#fafafa}
h1{margin:0 0 4px}h2{margin:28px 0 8px;font-size:18px}
.sub{color:#666;margin:0 0 16px}
.audit{padding:12px 16px;border-radius:6px;font-weight:600;margin:12px 0}
.audit.ok{background:#e6f4ea;color:#1e6b36;border:1px solid #a8d5b5}
.audit.failed{background:#c0392b;color:#fff;font-size:18px;border:3px solid #7b1d13}
.cards{display:flex;flex-wrap:wrap;gap:10px}
.card{background:#fff;border:1px solid #ddd;border-radius:6px;padding:10px 14px;min-width:120px}
.card .n{font-size:20px;font-weight:700;font-variant-numeric:tabular-nums}
.card .l{color:#666;font-size:12px}
.charts{display:flex;flex-wrap:wrap;gap:16px}
svg.chart{background:#fff;border:1px solid #ddd;border-radius:6px;padding:6px}
table{border-collapse:collapse;background:#fff;font-size:13px}
th,td{border:1px solid #ddd;padding:4px 8px}td.num{text-align:right;
font-variant-numeric:tabular-nums;white-space:nowrap}tr.total td{font-weight:700}
"""

CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:"


def _period(report: SpendReport) -> str:
    q = report.query
    since = iso_ms(q.since_ms) if q.since_ms is not None else "the beginning"
    until = iso_ms(q.until_ms) if q.until_ms is not None else iso_ms(report.generated_at_ms)
    who = f" · client {q.client}" if q.client else ""
    return f"{since} → {until}{who}"


def _audit(result: AuditResult | None) -> str:
    warning = audit_warning(result)
    if warning:
        return f'<div id="audit" class="audit failed">⚠ {escape(warning)}</div>'
    if result is None:
        return '<div id="audit" class="audit">Audit: not checked</div>'
    return (
        f'<div id="audit" class="audit ok">✓ Ledger audit: hash chain verified — '
        f"{result.events} events, {result.decisions} decisions; head "
        f"<code>{escape(result.events_head[:16])}…</code></div>"
    )


def _card(label: str, amount: int, count: int, ident: str) -> str:
    return (
        f'<div class="card" id="total-{ident}"><div class="n">{format_usd(amount)}</div>'
        f'<div class="l">{escape(label)} · {count} payment{"s" if count != 1 else ""}</div></div>'
    )


def _totals(totals: ReportRow) -> str:
    cards = [
        _card(
            "committed USDC (settled + pending + disputed)",
            totals.committed.amount,
            totals.committed.count,
            "committed",
        )
    ]
    for bucket in BUCKETS:
        t = totals.tally(bucket)
        cards.append(_card(f"{bucket} USDC", t.amount, t.count, bucket))
    cards.append(
        _card(
            "confirmed on chain USDC", totals.confirmed.amount, totals.confirmed.count, "confirmed"
        )
    )
    return f'<div class="cards" id="totals">{"".join(cards)}</div>'


# ------------------------------------------------------------------------ time series


def _hour_index(label: str) -> int:
    moment = datetime.strptime(label, "%Y-%m-%dT%H:00Z").replace(tzinfo=UTC)
    return int(moment.timestamp()) // 3600


def _buckets(first_h: int, last_h: int) -> tuple[list[str], list[int]]:
    """Bucket labels covering the span, and each hour's bucket index (by hour offset)."""
    span = last_h - first_h + 1
    start = datetime.fromtimestamp(first_h * 3600, tz=UTC)
    if span <= HOURLY_UP_TO_H:
        return [(start + timedelta(hours=i)).strftime("%d %H:00") for i in range(span)], list(
            range(span)
        )
    labels: list[str] = []
    index: list[int] = []
    fmt = "%Y-%m-%d" if span <= DAILY_UP_TO_D * 24 else "%Y-%m"
    for i in range(span):
        label = (start + timedelta(hours=i)).strftime(fmt)
        if not labels or labels[-1] != label:
            labels.append(label)
        index.append(len(labels) - 1)
    return labels, index


def _span(report: SpendReport, hours: Iterable[int]) -> tuple[int, int] | None:
    """First and last hour to chart: the data's, within the query's bounds, >= MIN_SPAN_H."""
    seen = list(hours)
    if not seen:
        return None
    q = report.query
    end_ms = (
        report.generated_at_ms
        if q.until_ms is None
        else min(q.until_ms - 1, report.generated_at_ms)
    )
    last = max(max(seen), end_ms // HOUR_MS)
    first = min(seen)
    if q.since_ms is not None:
        first = min(first, max(q.since_ms // HOUR_MS, last - DAILY_UP_TO_D * 24))
    return min(first, last - MIN_SPAN_H + 1), last


def _time_charts(report: SpendReport, overview: Overview) -> str:
    points = [(row.key[0], _hour_index(row.key[1]), row) for row in overview.series]
    span = _span(report, (h for _, h, _ in points))
    if span is None:
        return '<p id="no-spend">No payments in this period.</p>'
    labels, index = _buckets(*span)
    charts = []
    for client in sorted({c for c, _, _ in points}):
        layers = {b: [0] * len(labels) for b in COLORS}
        for who, hour, row in points:
            if who != client or not span[0] <= hour <= span[1]:
                continue
            for bucket in COLORS:
                layers[bucket][index[hour - span[0]]] += row.tally(bucket).amount
        series = [Series(b, COLORS[b], layers[b]) for b in COLORS]
        charts.append(
            stacked_bars(
                f"{client}: USDC per period", labels, series, css_class="chart spend-over-time"
            )
        )
    return f'<div class="charts">{"".join(charts)}</div>'


# -------------------------------------------------------------------------- tables


def _top(title: str, rows: Sequence[ReportRow], css: str) -> str:
    items = [(row.key[0] or "(none)", row.committed.amount) for row in rows[:TOP]]
    notes = {row.key[0] or "(none)": f"({row.committed.count})" for row in rows[:TOP]}
    return horizontal_bars(title, items, css_class=f"chart {css}", suffix=notes)


def _refusals(report: SpendReport) -> str:
    if not report.refusals:
        return '<p id="no-refusals">No refusals in this period.</p>'
    items = [(f"{r.reason} {r.rule}".strip(), r.count) for r in report.refusals[:TOP]]
    chart = horizontal_bars(
        "refusals (count)", items, color="#c0392b", css_class="chart refusals", value_text=str
    )
    body = "".join(
        f"<tr><td>{escape(r.reason)}</td><td>{escape(r.rule or '-')}</td>"
        f'<td class="num">{r.count}</td><td class="num">{format_usd(r.amount)}</td></tr>'
        for r in report.refusals
    )
    table = (
        '<table id="refusal-table"><tr><th>reason</th><th>rule / window</th><th>count</th>'
        f"<th>USDC asked</th></tr>{body}</table>"
    )
    return f'<div class="charts">{chart}{table}</div>'


_ROW_COLUMNS = (*BUCKETS, CONFIRMED, UNCONFIRMED)


def _cells(row: ReportRow) -> str:
    return "".join(
        f'<td class="num">{format_usd(row.tally(c).amount)} ({row.tally(c).count})</td>'
        for c in _ROW_COLUMNS
    )


def _rows(report: SpendReport) -> str:
    dims = report.query.group_by
    head = "".join(f"<th>{escape(d)}</th>" for d in dims) + "".join(
        f"<th>{escape(c)} USDC (n)</th>" for c in _ROW_COLUMNS
    )
    body = "".join(
        "<tr>"
        + "".join(f"<td>{escape(v or '(none)')}</td>" for v in row.key)
        + _cells(row)
        + "</tr>"
        for row in report.rows
    )
    first = "<td>TOTAL</td>" + "<td></td>" * (len(dims) - 1) if dims else ""
    total = f'<tr class="total">{first}{_cells(report.totals)}</tr>'
    return f'<table id="report-rows"><tr>{head}</tr>{body}{total}</table>'


def render_html(
    report: SpendReport, result: AuditResult | None, overview: Overview | None = None
) -> str:
    """The whole page; without ``overview`` the time and top-N charts are left out."""
    sections = [
        "<h1>walletd spend report</h1>",
        f'<p class="sub">{escape(_period(report))} · generated '
        f"{iso_ms(report.generated_at_ms)}</p>",
        _audit(result),
        "<h2>Totals</h2>",
        _totals(report.totals),
    ]
    if overview is not None:
        sections += [
            "<h2>Spend over time per client</h2>",
            _time_charts(report, overview),
            "<h2>Top payees and models</h2>",
            '<div class="charts">'
            + _top("top payees (committed USDC)", overview.payees, "payees")
            + _top("top models (committed USDC)", overview.models, "models")
            + "</div>",
        ]
    sections += ["<h2>Refusal reasons</h2>", _refusals(report), "<h2>Rows</h2>", _rows(report)]
    return (
        '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
        f'<meta http-equiv="Content-Security-Policy" content="{CSP}">'
        "<title>walletd spend report</title>"
        f"<style>{CSS}</style></head><body>{''.join(sections)}</body></html>\n"
    )
