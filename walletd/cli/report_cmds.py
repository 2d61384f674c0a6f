"""``walletd spend-report`` and ``walletd audit``: read the ledger, never write it.

Both open the database read-only (``walletd.db.queries.read_only``), so they
work with the daemon running or stopped and never take the write lock. Every
spend report first recomputes the hash chain: figures from an edited ledger are
still shown, under a warning on stderr and inside the output itself, and the
command exits with ``EXIT_AUDIT_FAILED``.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from walletd.cli._common import ledger_options, settings_from
from walletd.cli._output import EXIT_ERROR, emit, json_option
from walletd.domain.report import DIMENSIONS, ReportQuery, check_group_by, parse_time
from walletd.errors import InvalidRequestError

if TYPE_CHECKING:
    from walletd.domain.audit import Anchor, AuditResult

EXIT_AUDIT_FAILED = 4
"""spend-report wrote its output, but the ledger does not verify (``walletd audit verify``)."""

FORMATS = ("table", "csv", "json", "html")


def _url(data_dir: Path | None, config_path: Path | None, db_url: str) -> str:
    return settings_from(data_dir, config_path, db_url=db_url).ledger_url


def _time(text: str | None, now: int, option: str) -> int | None:
    """``--since``/``--until`` as Unix ms; a bad or out-of-range time is a usage error."""
    if text is None:
        return None
    try:
        return parse_time(text, now)
    except InvalidRequestError as exc:
        raise click.BadParameter(exc.message, param_hint=option) from None


def _query(
    since: str | None, until: str | None, client: str | None, group_by: tuple[str, ...], now: int
) -> ReportQuery:
    since_ms, until_ms = _time(since, now, "--since"), _time(until, now, "--until")
    if since_ms is not None and until_ms is not None and since_ms > until_ms:
        raise click.UsageError(f"--since {since} is after --until {until}")
    return ReportQuery(
        since_ms=since_ms, until_ms=until_ms, client=client, group_by=check_group_by(group_by)
    )


def _write(text: str, out: Path | None) -> None:
    if out is None:
        click.echo(text, nl=False)
        return
    out.write_text(text, encoding="utf-8")


def _warn(result: AuditResult) -> None:
    from walletd.report import audit_warning

    warning = audit_warning(result)
    if warning:
        bar = "!" * 78
        click.secho(f"{bar}\n{warning}\n{bar}", fg="red", bold=True, err=True)


@click.command("spend-report")
@ledger_options
@click.option("--since", default=None, help="Start: 24h, 7d, 30m, 2w ago, or an ISO date/time.")
@click.option("--until", default=None, help="End (exclusive), same forms as --since.")
@click.option("--client", default=None, help="Only this client.")
@click.option(
    "--group-by",
    multiple=True,
    type=click.Choice(DIMENSIONS),
    help="Group rows by this (repeat for several).",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(FORMATS),
    default=None,
    help="Output format (default: table; json with --json).",
)
@click.option(
    "--out",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="Write here instead of stdout.",
)
@json_option
def spend_report(
    data_dir: Path | None,
    config_path: Path | None,
    db_url: str,
    since: str | None,
    until: str | None,
    client: str | None,
    group_by: tuple[str, ...],
    fmt: str | None,
    out: Path | None,
    as_json: bool,
) -> None:
    """Who spent what, where, and how it ended: from the ledger, read-only.

    `--json` is `--format json`. The table fits the terminal ($COLUMNS); piped,
    it is wide enough not to wrap.
    """
    import shutil

    from walletd.db import queries
    from walletd.report import render
    from walletd.report.table import WIDTH, render_table
    from walletd.service.clock import now_ms

    if as_json and fmt not in (None, "json"):
        raise click.UsageError(f"--json is --format json; it cannot go with --format {fmt}")
    fmt = "json" if as_json else fmt or "table"
    now = now_ms()
    query = _query(since, until, client, group_by, now)
    with queries.read_only(_url(data_dir, config_path, db_url)) as conn:
        result = queries.verify_chain(conn)
        report = queries.spend_report(conn, query, now)
        overview = queries.overview(conn, query) if fmt == "html" else None
    if fmt == "table" and out is None:
        width = shutil.get_terminal_size((WIDTH, 24)).columns
        text = render_table(report, result, color=sys.stdout.isatty(), width=width)
    else:
        text = render(report, result, fmt, overview)
    _write(text, out)
    if not result.ok:
        _warn(result)
        sys.exit(EXIT_AUDIT_FAILED)


@click.group()
def audit() -> None:
    """The tamper-evident ledger: verify the hash chains, print their heads to anchor."""


def _anchor(_ctx: click.Context, _param: click.Parameter, values: tuple[str, ...]) -> list[Any]:
    from walletd.domain.audit import parse_anchors

    anchors = []
    for value in values:
        text = value
        if value.startswith("@"):
            source = value[1:]
            try:
                text = sys.stdin.read() if source == "-" else Path(source).read_text("utf-8")
            except OSError as exc:
                raise click.BadParameter(f"cannot read {source}: {exc.strerror}") from exc
        try:
            anchors += parse_anchors(text)
        except ValueError as exc:
            raise click.BadParameter(f"{exc} (give what `walletd audit head` printed)") from exc
    return anchors


@audit.command("verify")
@ledger_options
@click.option(
    "--anchor",
    multiple=True,
    callback=_anchor,
    help="What `audit head` printed earlier (text or --json; @FILE reads a file, @- stdin), "
    "or one CHAIN ID:HASH; a bare ID:HASH is a payment_events head. Each anchored row "
    "must still be in its chain with that hash. Repeatable.",
)
@json_option
def audit_verify(
    data_dir: Path | None,
    config_path: Path | None,
    db_url: str,
    anchor: list[Anchor],
    as_json: bool,
) -> None:
    """Recompute the chains, the client and budget state and the running totals.

    Every problem is named; the exit status is 1 if there is any.
    """
    from walletd.db import queries
    from walletd.domain.audit import anchor_holds
    from walletd.report.json_format import audit_doc

    with queries.read_only(_url(data_dir, config_path, db_url)) as conn:
        result = queries.verify_chain(conn)
        checked = [(a, anchor_holds(a, queries.row_hash(conn, a.chain, a.row_id))) for a in anchor]
    doc = audit_doc(result)
    doc["breaks"] = [
        {
            "table": b.table,
            "id": b.row_id,
            "payment_id": b.payment_id,
            "subject": b.subject,
            "problem": b.problem,
        }
        for b in result.breaks
    ]
    doc["anchors"] = [
        {
            "chain": a.chain,
            "id": a.row_id,
            "hash": a.hash,
            "ok": problem is None,
            "problem": problem,
        }
        for a, problem in checked
    ]
    doc.update(key_events=result.key_events, key_events_head=result.key_events_head)
    doc.update(admin_events=result.admin_events, admin_events_head=result.admin_events_head)
    doc.update(clients=result.clients, buckets=result.buckets)
    ok = result.ok and all(problem is None for _, problem in checked)
    doc["ok"] = ok
    emit(as_json, doc, _verify_lines(result, checked))
    if not ok:
        sys.exit(EXIT_ERROR)


def _verify_lines(result: AuditResult, checked: list[tuple[Anchor, str | None]]) -> list[str]:
    lines = []
    if result.ok:
        lines.append(
            f"ok: {result.events} events, {result.decisions} decisions, "
            f"{result.key_events} key events, {result.admin_events} admin events, "
            f"{result.payments} payments, {result.clients} clients, "
            f"{result.buckets} spend buckets verified"
        )
    else:
        first = result.first_break
        lines.append(
            f"FAILED: {result.break_count} problem(s); first broken link: "
            f"{first.describe() if first else '?'}"
        )
        lines += [f"  {b.describe()}" for b in result.breaks[1:10]]
    for a, problem in checked:
        if problem is None:
            lines.append(f"anchor ok: {a.describe()}")
        else:
            lines.append(f"FAILED: anchor {a.chain}: {problem}")
    lines += [f"head {chain} {digest}" for chain, digest in result.heads.items()]
    return lines


@audit.command("head")
@ledger_options
@json_option
def audit_head(data_dir: Path | None, config_path: Path | None, db_url: str, as_json: bool) -> None:
    """Print the newest id and hash of each chain, to keep somewhere walletd cannot write."""
    from walletd.db import queries

    with queries.read_only(_url(data_dir, config_path, db_url)) as conn:
        heads = queries.chain_heads(conn)
    doc = {table: {"id": ident, "hash": digest} for table, (ident, digest) in heads.items()}
    lines = [f"{table} {ident}:{digest}" for table, (ident, digest) in heads.items()]
    emit(as_json, doc, lines)


COMMANDS = (spend_report, audit)
