"""``walletd pay``: one Pay call from any program, even a shell script."""

from __future__ import annotations

import uuid
from pathlib import Path

import click

from walletd.cli._common import SOCKET_HELP, TOKEN_FILE_HELP, http_url_check
from walletd.cli._output import emit, json_option


@click.command()
@click.option("--socket", envvar="WALLETD_SOCKET", default=None, help=SOCKET_HELP)
@click.option(
    "--token-file",
    envvar="WALLETD_TOKEN_FILE",
    type=click.Path(path_type=Path, exists=True, dir_okay=False),
    required=True,
    help=TOKEN_FILE_HELP,
)
@click.option("--payment-required", default=None, help="The PAYMENT-REQUIRED header (x402 v2).")
@click.option(
    "--body-file",
    type=click.Path(path_type=Path, exists=True, dir_okay=False),
    default=None,
    help="The 402 JSON body (x402 v1).",
)
@click.option(
    "--url",
    required=True,
    callback=http_url_check("http", "https"),
    help="The URL that answered 402.",
)
@click.option(
    "--method",
    default="GET",
    show_default=True,
    help="HTTP method of the request that answered 402 (part of what is paid for).",
)
@click.option("--idempotency-key", default=None, help="Reuse on retries (default: a new one).")
@click.option("--label", multiple=True, help="KEY=VALUE stored on the ledger row (repeat).")
@click.option(
    "--wait-for-approval",
    type=click.FloatRange(0, 86_400),
    default=0.0,
    show_default=True,
    help="Seconds to wait for an approver when the payment is held for approval "
    "(APPROVAL_REQUIRED); approved in time, the header is printed.",
)
@json_option
def pay(
    socket: str | None,
    token_file: Path,
    payment_required: str | None,
    body_file: Path | None,
    url: str,
    method: str,
    idempotency_key: str | None,
    label: tuple[str, ...],
    wait_for_approval: float,
    as_json: bool,
) -> None:
    """Ask the daemon to pay one 402 demand; print `HEADER-NAME: value`."""
    from walletd.client import WalletClient

    if bool(payment_required) == bool(body_file):
        raise click.UsageError("give exactly one of --payment-required or --body-file")
    labels = dict(item.split("=", 1) for item in label if "=" in item)
    key = idempotency_key or "req_" + uuid.uuid4().hex
    with WalletClient(socket=socket, token_file=token_file) as wallet:
        receipt = wallet.pay(
            key,
            method,
            url,
            payment_required=payment_required or "",
            body=body_file.read_bytes() if body_file else b"",
            labels=labels,
            wait_for_approval=wait_for_approval,
        )
    emit(
        as_json,
        {
            "payment_id": receipt.payment_id,
            "header_name": receipt.header_name,
            "header_value": receipt.header_value,
            "amount": str(receipt.amount),
            "payee": receipt.payee,
            "network": receipt.network,
            "valid_before": receipt.valid_before,
            "reused": receipt.reused,
            "idempotency_key": key,
        },
        [f"{receipt.header_name}: {receipt.header_value}"],
    )


COMMANDS = (pay,)
