"""The JSON layout of a spend report (version 1, see docs/spend-report.md), both ways.

Amounts are integers of USDC atomic units next to an exact ``usdc`` string, so
a consumer never has to parse a float; the layout only ever grows new keys.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from walletd.domain.audit import AuditResult, Break
from walletd.domain.money import format_usd
from walletd.domain.report import (
    BUCKETS,
    CONFIRMED,
    UNCONFIRMED,
    RefusalCount,
    ReportQuery,
    ReportRow,
    SpendReport,
    Tally,
    iso_ms,
    parse_time,
)
from walletd.report import audit_warning

FORMAT = "walletd-spend-report"
VERSION = 1


def tally_doc(tally: Tally) -> dict[str, Any]:
    """``{"count", "amount" (atomic int), "usdc" (exact string)}``."""
    return {"count": tally.count, "amount": tally.amount, "usdc": format_usd(tally.amount)}


def row_doc(row: ReportRow, dims: tuple[str, ...]) -> dict[str, Any]:
    """One row: its key by dimension, statuses, chain check and all payments."""
    return {
        "key": dict(zip(dims, row.key, strict=True)),
        "statuses": {b: tally_doc(row.tally(b)) for b in BUCKETS},
        "chain": {c: tally_doc(row.tally(c)) for c in (CONFIRMED, UNCONFIRMED)},
        "payments": tally_doc(row.payments),
        "authorized": {"amount": row.authorized, "usdc": format_usd(row.authorized)},
    }


def _break_doc(brk: Break | None) -> dict[str, Any] | None:
    if brk is None:
        return None
    return {
        "table": brk.table,
        "id": brk.row_id,
        "payment_id": brk.payment_id,
        "problem": brk.problem,
        "subject": brk.subject,
    }


def audit_doc(result: AuditResult | None) -> dict[str, Any]:
    """The audit block: checked, ok, counts, heads, the first break and the warning."""
    if result is None:
        return {"checked": False, "ok": None, "warning": None}
    return {
        "checked": True,
        "ok": result.ok,
        "events": result.events,
        "decisions": result.decisions,
        "payments": result.payments,
        "events_head": result.events_head,
        "decisions_head": result.decisions_head,
        "break_count": result.break_count,
        "first_break": _break_doc(result.first_break),
        "warning": audit_warning(result),
    }


def report_doc(report: SpendReport, result: AuditResult | None) -> dict[str, Any]:
    """The whole report as a JSON-ready dict."""
    q = report.query
    dims = q.group_by
    return {
        "format": FORMAT,
        "version": VERSION,
        "generated_at": iso_ms(report.generated_at_ms),
        "query": {
            "since": None if q.since_ms is None else iso_ms(q.since_ms),
            "until": None if q.until_ms is None else iso_ms(q.until_ms),
            "client": q.client,
            "group_by": list(dims),
        },
        "audit": audit_doc(result),
        "rows": [row_doc(r, dims) for r in report.rows],
        "totals": {k: v for k, v in row_doc(report.totals, ()).items() if k != "key"},
        "refusals": [
            {"reason": r.reason, "rule": r.rule, **tally_doc(Tally(r.count, r.amount))}
            for r in report.refusals
        ],
    }


def render_json(report: SpendReport, result: AuditResult | None) -> str:
    """The report as indented JSON with sorted keys."""
    return json.dumps(report_doc(report, result), indent=2, sort_keys=True) + "\n"


# ------------------------------------------------------------------------- reading


def _tally(doc: Mapping[str, Any]) -> Tally:
    return Tally(int(doc["count"]), int(doc["amount"]))


def _row(doc: Mapping[str, Any], dims: tuple[str, ...]) -> ReportRow:
    key = tuple(str(doc["key"][d]) for d in dims) if "key" in doc else ()
    return ReportRow(
        key,
        {b: _tally(doc["statuses"][b]) for b in BUCKETS},
        _tally(doc["chain"][CONFIRMED]),
        _tally(doc["chain"][UNCONFIRMED]),
        int(doc.get("authorized", {}).get("amount", 0)),
    )


def read_json(text: str) -> SpendReport:
    """A report back from ``render_json`` output (amounts from the integer fields)."""
    doc = json.loads(text)
    if doc.get("format") != FORMAT or doc.get("version") != VERSION:
        raise ValueError(f"not a {FORMAT} v{VERSION} document")
    q = doc["query"]
    dims = tuple(q["group_by"])
    query = ReportQuery(
        since_ms=None if q["since"] is None else parse_time(q["since"], 0),
        until_ms=None if q["until"] is None else parse_time(q["until"], 0),
        client=q["client"],
        group_by=dims,
    )
    return SpendReport(
        query=query,
        generated_at_ms=parse_time(doc["generated_at"], 0),
        rows=tuple(_row(r, dims) for r in doc["rows"]),
        totals=_row(doc["totals"], ()),
        refusals=tuple(
            RefusalCount(r["reason"], r["rule"], int(r["count"]), int(r["amount"]))
            for r in doc["refusals"]
        ),
    )
