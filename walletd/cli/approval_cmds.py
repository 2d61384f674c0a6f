"""``walletd approvals list|watch``, ``approve ID``, ``deny ID``: the approver's side.

Payments above an approval threshold (``walletd budget set NAME --approve-above
USD``) wait for a human. These commands ask the running daemon over its socket
with the token of a client that has the ``approve`` scope
(``walletd client add alice --scopes approve``); a client can never decide its
own payments.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from walletd.cli._common import SOCKET_HELP, TOKEN_FILE_HELP
from walletd.cli._output import emit, json_option
from walletd.domain.approval import ApprovalStatus
from walletd.domain.money import format_usd
from walletd.domain.report import iso_ms

if TYPE_CHECKING:
    from walletd.domain.approval import Approval


def _connection(func: click.decorators.FC) -> click.decorators.FC:
    func = click.option(
        "--token-file",
        envvar="WALLETD_TOKEN_FILE",
        type=click.Path(path_type=Path, exists=True, dir_okay=False),
        required=True,
        help=TOKEN_FILE_HELP + " Its client needs the approve scope.",
    )(func)
    return click.option("--socket", envvar="WALLETD_SOCKET", default=None, help=SOCKET_HELP)(func)


def _doc(held: Approval) -> dict[str, Any]:
    return {
        "approval_id": held.approval_id,
        "payment_id": held.payment_id,
        "client": held.client,
        "status": held.status,
        "amount": str(held.amount),
        "amount_usd": format_usd(held.amount),
        "payee": held.payee,
        "url": held.url,
        "network": held.network,
        "created_at": iso_ms(held.created_at_ms),
        "expires_at": iso_ms(held.expires_at_ms),
        "threshold_usd": format_usd(held.threshold),
        "threshold_scope": held.threshold_scope,
        "decided_at": None if held.decided_at_ms is None else iso_ms(held.decided_at_ms),
        "decided_by": held.decided_by,
        "note": held.note,
        "labels": dict(held.labels),
    }


def _line(held: Approval) -> str:
    decided = f"  by {held.decided_by}" if held.decided_by else ""
    note = f"  note: {held.note}" if held.note else ""
    return (
        f"{held.approval_id}  {held.status:<8}  {format_usd(held.amount)} USD  {held.client}"
        f"  -> {held.payee}  {held.url}  expires {iso_ms(held.expires_at_ms)}{decided}{note}"
    )


@click.group()
def approvals() -> None:
    """Payments held above an approval threshold (`budget set --approve-above`)."""


@approvals.command("list")
@click.option(
    "--status",
    type=click.Choice([s.value for s in ApprovalStatus]),
    default=None,
    help="Only approvals in this status (default: all).",
)
@click.option(
    "--limit",
    type=click.IntRange(1, 1000),
    default=100,
    show_default=True,
    help="Print at most this many (the newest).",
)
@_connection
@json_option
def approvals_list(
    status: str | None, limit: int, socket: str | None, token_file: Path, as_json: bool
) -> None:
    """List held payments, every client's, newest first."""
    from walletd.client import WalletClient

    with WalletClient(socket=socket, token_file=token_file) as wallet:
        found = wallet.list_approvals(status, limit)
    lines = [_line(a) for a in found] or ["no approvals"]
    emit(as_json, {"approvals": [_doc(a) for a in found]}, lines)


@approvals.command("watch")
@click.option(
    "--for",
    "seconds",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    help="Stop after this many seconds (default: until Ctrl-C).",
)
@_connection
@json_option
def approvals_watch(
    seconds: float | None, socket: str | None, token_file: Path, as_json: bool
) -> None:
    """Print every payment waiting for approval now, then each new one and each decision.

    One line per event, as it happens ("pending" or "decided"); with --json one JSON
    object per line. Runs until Ctrl-C, or for --for seconds.
    """
    from walletd.client import WalletClient

    with WalletClient(socket=socket, token_file=token_file) as wallet:
        try:
            for event in wallet.watch_approvals(seconds):
                if as_json:
                    doc = {"kind": event.kind, "approval": _doc(event.approval)}
                    click.echo(json.dumps(doc, sort_keys=True))
                else:
                    click.echo(f"{event.kind:<8}  {_line(event.approval)}")
        except KeyboardInterrupt:
            return


def _decide_command(approve: bool) -> click.Command:
    verb = "approve" if approve else "deny"

    @click.command(verb)
    @click.argument("approval_id")
    @click.option(
        "--note", default="", help="One line kept with the decision in the audited ledger."
    )
    @_connection
    @json_option
    def command(
        approval_id: str, note: str, socket: str | None, token_file: Path, as_json: bool
    ) -> None:
        from walletd.client import WalletClient

        with WalletClient(socket=socket, token_file=token_file) as wallet:
            decide = wallet.approve if approve else wallet.deny
            held = decide(approval_id, note)
        emit(as_json, {"approval": _doc(held)}, [_line(held)])

    command.help = (
        "Approve a held payment: the caller's retry under the same key gets the signature."
        if approve
        else "Deny a held payment: nothing is signed and its budget reservation is released."
    )
    return command


COMMANDS = (approvals, _decide_command(True), _decide_command(False))
