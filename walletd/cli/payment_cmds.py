"""``walletd payment list`` and ``walletd payment show``: the ledger's payments, read-only.

Like ``spend-report`` they open the ledger read-only (``walletd.db.queries.read_only``)
from the data dir or ``--db-url``, so they work with the daemon running or
stopped and never take the write lock. The signed header a payment handed out
is never printed: it is money the payee can still collect.
"""

from __future__ import annotations

import io
import shutil
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from walletd.cli._common import ledger_options, settings_from
from walletd.cli._output import emit, json_option
from walletd.cli.chain_cmds import payment
from walletd.domain.money import format_usd
from walletd.domain.payment import PaymentStatus
from walletd.domain.report import iso_ms, parse_time
from walletd.errors import InvalidRequestError

if TYPE_CHECKING:
    from rich.table import Table

    from walletd.db.queries import LedgerEvent, LedgerPayment

_TIMES = ("created_at_ms", "released_at_ms")
_NO_WRAP = ("created (UTC)", "status", "USDC")


def _url(data_dir: Path | None, config_path: Path | None, db_url: str) -> str:
    return settings_from(data_dir, config_path, db_url=db_url).ledger_url


def _since(_ctx: click.Context, _param: click.Parameter, value: str | None) -> int | None:
    from walletd.service.clock import now_ms

    if value is None:
        return None
    try:
        return parse_time(value, now_ms())
    except InvalidRequestError as exc:
        raise click.BadParameter(exc.message) from None


def _payment_doc(found: LedgerPayment) -> dict[str, Any]:
    """A payment for ``--json``: amounts as atomic-unit strings, times as ISO and ms."""
    doc: dict[str, Any] = {"client": found.client, "labels": dict(found.labels)}
    for name, value in found.fields.items():
        if name in _TIMES:
            key = name.removesuffix("_ms")
            doc[key] = None if value is None else iso_ms(int(value))
            doc[name] = value
        elif name == "amount":
            doc[name] = str(value)
        else:
            doc[name] = value
    doc["amount_usd"] = format_usd(int(found.fields["amount"]))
    return doc


def _event_doc(event: LedgerEvent) -> dict[str, Any]:
    return {
        "id": event.id,
        "at": iso_ms(event.at_ms),
        "at_ms": event.at_ms,
        "status": event.status,
        "cause": event.cause,
        "data": dict(event.data),
    }


def _render(*tables: Table) -> list[str]:
    """Rich tables as plain lines, as wide as the terminal (or 220 columns piped)."""
    from rich.console import Console

    width = shutil.get_terminal_size((220, 24)).columns
    out = io.StringIO()
    color = sys.stdout.isatty()
    console = Console(
        file=out, width=width, force_terminal=color, no_color=not color, highlight=False
    )
    for table in tables:
        console.print(table)
    return [line.rstrip() for line in out.getvalue().splitlines()]


def _list_table(rows: list[LedgerPayment]) -> Table:
    from rich import box
    from rich.table import Table

    table = Table(
        title=f"{len(rows)} payment(s), newest first",
        title_justify="left",
        box=box.SIMPLE_HEAD,
        show_edge=False,
        pad_edge=False,
    )
    for name, justify in (
        ("created (UTC)", "left"),
        ("id", "left"),
        ("USDC", "right"),
        ("status", "left"),
        ("client", "left"),
        ("host", "left"),
        ("model", "left"),
    ):
        table.add_column(
            name,
            justify=justify,  # type: ignore[arg-type]
            no_wrap=name in _NO_WRAP,
            overflow="fold",
            min_width=None if name in _NO_WRAP else 12 if name == "id" else 4,
        )
    for p in rows:
        f = p.fields
        table.add_row(
            iso_ms(int(f["created_at_ms"]))[:16].replace("T", " "), str(f["id"]),
            format_usd(int(f["amount"])), str(f["status"]), p.client, str(f["host"]),
            p.labels.get("model", ""),
        )  # fmt: skip
    return table


@payment.command("list")
@ledger_options
@click.option("--client", default=None, help="Only this client's payments.")
@click.option(
    "--status",
    type=click.Choice([s.value for s in PaymentStatus]),
    default=None,
    help="Only payments in this status.",
)
@click.option(
    "--since",
    callback=_since,
    default=None,
    help="Only payments signed since: 24h, 7d, 30m, 2w ago, or an ISO date/time.",
)
@click.option(
    "--limit",
    type=click.IntRange(1, 10_000),
    default=50,
    show_default=True,
    help="Print at most this many (the newest).",
)
@json_option
def payment_list(
    data_dir: Path | None, config_path: Path | None, db_url: str, client: str | None,
    status: str | None, since: int | None, limit: int, as_json: bool,
) -> None:  # fmt: skip
    """List payments from the ledger, newest first (read-only; the daemon may run)."""
    from walletd.db import queries

    with queries.read_only(_url(data_dir, config_path, db_url)) as conn:
        rows = queries.payments(conn, client=client, status=status, since_ms=since, limit=limit)
    emit(as_json, {"payments": [_payment_doc(p) for p in rows]}, _render(_list_table(rows)))


def _approval(events: list[LedgerEvent]) -> dict[str, Any] | None:
    """The payment's approval as its newest approval event recorded it (None: never held)."""
    for event in reversed(events):
        if "approval_status" in event.data:
            return dict(event.data)
    return None


def _approval_line(held: dict[str, Any]) -> str:
    """``apr_... approved by alice at ...: note``, or pending until ..."""
    text = f"{held['approval_id']} {held['approval_status']}"
    if held.get("decided_by"):
        text += f" by {held['decided_by']} at {iso_ms(int(held['decided_at_ms']))}"
    else:
        text += f" (expires {iso_ms(int(held['expires_at_ms']))})"
    return text + (f": {held['note']}" if held.get("note") else "")


def _show_lines(found: LedgerPayment, events: list[LedgerEvent]) -> list[str]:
    from rich.table import Table

    f = found.fields
    facts = Table(title=f"payment {f['id']}", title_justify="left", show_header=False)
    facts.add_column("field")
    facts.add_column("value", overflow="fold")
    facts.add_row("client", found.client)
    facts.add_row("status", str(f["status"]))
    facts.add_row("amount", f"{format_usd(int(f['amount']))} USDC ({f['amount']} atomic)")
    for name in ("kind", "method", "url", "payee", "payer", "network", "asset", "nonce"):
        facts.add_row(name, str(f[name]))
    facts.add_row("idempotency key", str(f["idempotency_key"]))
    facts.add_row("created", iso_ms(int(f["created_at_ms"])))
    after, before = int(f["valid_after"]) * 1000, int(f["valid_before"]) * 1000  # seconds
    facts.add_row("valid", f"{iso_ms(after)} .. {iso_ms(before)}")
    released = f["released_at_ms"]
    facts.add_row("released", "-" if released is None else iso_ms(int(released)))
    facts.add_row("reported tx", str(f["reported_tx"] or "-"))
    facts.add_row("settled tx", str(f["settled_tx"] or "-"))
    labels = ", ".join(f"{k}={v}" for k, v in sorted(found.labels.items()))
    facts.add_row("labels", labels or "-")
    held = _approval(events)
    if held is not None:
        facts.add_row("approval", _approval_line(held))
    trail = Table(title="events, oldest first", title_justify="left")
    for name in ("id", "at (UTC)", "status", "cause", "data"):
        trail.add_column(name, overflow="fold")
    for e in events:
        data = ", ".join(f"{k}={v}" for k, v in sorted(e.data.items()))
        trail.add_row(str(e.id), iso_ms(e.at_ms), e.status, e.cause, data or "-")
    return _render(facts, trail)


@payment.command("show")
@click.argument("payment_id")
@ledger_options
@json_option
def payment_show(
    payment_id: str, data_dir: Path | None, config_path: Path | None, db_url: str,
    as_json: bool,
) -> None:  # fmt: skip
    """Show one payment and every event of its life (read-only; the daemon may run)."""
    from walletd.db import queries

    with queries.read_only(_url(data_dir, config_path, db_url)) as conn:
        found, events = queries.payment_with_events(conn, payment_id)
    doc = _payment_doc(found)
    doc["events"] = [_event_doc(e) for e in events]
    doc["approval"] = _approval(events)
    emit(as_json, {"payment": doc}, _show_lines(found, events))


COMMANDS: tuple[click.Command, ...] = ()
"""None of its own: ``list`` and ``show`` join the ``payment`` group of chain_cmds."""
