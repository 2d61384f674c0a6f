"""``walletd chat``, ``walletd image``, ``walletd models``: the paid API from a shell.

They pay through the running daemon (``--socket``/``$WALLETD_SOCKET``,
``--token-file``/``$WALLETD_TOKEN_FILE``) or, with ``--api-key-file``, use an API
key and no payment. What was paid is summed up in one line on stderr
(``--quiet`` drops it; ``--json`` has it in its ``payment`` object instead).
Only the thin client is imported: these work with ``pip install walletd`` alone.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from walletd.cli._common import SOCKET_HELP, TOKEN_FILE_HELP, http_url_check
from walletd.cli._output import emit, json_option

if TYPE_CHECKING:
    from walletd.client import ClusterClient, PaymentAttempt

F = TypeVar("F", bound=Callable[..., Any])

PROVIDER_HELP = (
    "Inference provider the API routes the call to (the request's `provider` field); "
    "venice is the one the Cluster Protocol API serves."
)
DEFAULT_TIMEOUT_S = 120.0
CONNECT_TIMEOUT_S = 5.0


def api_options(func: F) -> F:
    """The options of every paid API command: where to send, how to pay, how long to wait."""
    for option in reversed(
        (
            click.option("--base-url", required=True, envvar="WALLETD_API_BASE_URL",
                         callback=http_url_check("http", "https"),
                         help="The API root, e.g. https://host/v1 "
                         "(default $WALLETD_API_BASE_URL)."),
            click.option("--socket", envvar="WALLETD_SOCKET", default=None, help=SOCKET_HELP),
            click.option("--token-file", envvar="WALLETD_TOKEN_FILE", default=None,
                         type=click.Path(path_type=Path, exists=True, dir_okay=False),
                         help=TOKEN_FILE_HELP),
            click.option("--api-key-file", default=None,
                         type=click.Path(path_type=Path, exists=True, dir_okay=False),
                         help="Use this API key instead of paying."),
            click.option("--timeout", type=click.FloatRange(min=0, min_open=True),
                         default=DEFAULT_TIMEOUT_S, show_default=True,
                         help="Seconds to wait for each answer of the API (a retry of "
                              "429/5xx or a broken connection waits again)."),
            click.option("--quiet", "-q", is_flag=True,
                         help="Do not print what was paid on stderr."),
        )
    ):  # fmt: skip
        func = option(func)
    return func


def _client(
    base_url: str,
    socket: str | None,
    token_file: Path | None,
    api_key_file: Path | None,
    timeout: float = DEFAULT_TIMEOUT_S,
) -> ClusterClient:
    """A ClusterClient in API-key mode or payment mode."""
    import httpx

    from walletd.client import ClusterClient, WalletdSettings

    limits = httpx.Timeout(timeout, connect=min(timeout, CONNECT_TIMEOUT_S))
    if api_key_file is not None:
        key = api_key_file.read_text().strip()
        if not key:
            raise click.UsageError(f"{api_key_file} is empty")
        return ClusterClient(base_url, api_key=key, timeout=limits)
    settings = WalletdSettings(socket=socket, token_file=token_file)
    return ClusterClient(base_url, walletd=settings, timeout=limits)


def _say_paid(payment: PaymentAttempt | None, quiet: bool) -> None:
    """One line on stderr: amount (USD), payee, payment id, and the settlement tx if known."""
    if payment is None or quiet:
        return
    from walletd.domain.money import format_usd

    receipt = payment.receipt
    line = (
        f"walletd: paid {format_usd(receipt.amount)} USD to {receipt.payee}, "
        f"payment {receipt.payment_id}"
    )
    tx = str(payment.settlement.get("transaction", ""))
    if tx:
        line += f", tx {tx}"
    if receipt.reused:
        line += " (reused: no new payment)"
    click.echo(line, err=True)


def _payment_data(payment: PaymentAttempt | None) -> dict[str, Any] | None:
    """The payment facts for ``--json`` (amount as an atomic-unit string)."""
    if payment is None:
        return None
    return {
        "payment_id": payment.receipt.payment_id,
        "amount": str(payment.receipt.amount),
        "payee": payment.receipt.payee,
        "network": payment.receipt.network,
        "transaction": str(payment.settlement.get("transaction", "")),
        "reused": payment.receipt.reused,
    }


@click.command()
@api_options
@click.option("--model", required=True, help="Model id (see `walletd models`).")
@click.option("--stream", is_flag=True, help="Print the answer as it arrives.")
@click.option(
    "--max-tokens", type=click.IntRange(min=1), default=None, help="Cap the answer's length."
)
@click.option("--temperature", type=float, default=None, help="Sampling temperature.")
@click.option("--provider", default="venice", show_default=True, help=PROVIDER_HELP)
@click.argument("prompt")
@json_option
def chat(
    base_url: str,
    socket: str | None,
    token_file: Path | None,
    api_key_file: Path | None,
    timeout: float,
    quiet: bool,
    model: str,
    stream: bool,
    max_tokens: int | None,
    temperature: float | None,
    provider: str,
    prompt: str,
    as_json: bool,
) -> None:
    """Ask MODEL one PROMPT and print the answer (walletd pays if asked to)."""
    args: dict[str, Any] = {
        "max_tokens": max_tokens,
        "temperature": temperature,
        "provider": provider,
    }
    with _client(base_url, socket, token_file, api_key_file, timeout) as api:
        if stream and not as_json:
            with api.chat_stream(model, prompt, **args) as deltas:
                for delta in deltas:
                    click.echo(delta, nl=False)
                    sys.stdout.flush()  # as it arrives, even into a pipe
            click.echo()
            _say_paid(deltas.payment, quiet)
            return
        result = api.chat(model, prompt, **args)
    data = {
        "text": result.text,
        "model": result.model,
        "finish_reason": result.finish_reason,
        "usage": dict(result.usage),
        "payment": _payment_data(result.payment),
    }
    emit(as_json, data, [result.text])
    _say_paid(result.payment, quiet or as_json)


def _image_paths(out: Path, n: int) -> list[Path]:
    """``out`` for one image; ``out-1.png``... for several."""
    if n == 1:
        return [out]
    return [out.with_name(f"{out.stem}-{i}{out.suffix or '.png'}") for i in range(1, n + 1)]


@click.command()
@api_options
@click.option("--model", required=True, help="Image model id (see `walletd models`).")
@click.option(
    "--n",
    "count",
    type=click.IntRange(1, 4),
    default=1,
    show_default=True,
    help="How many images.",
)
@click.option("--size", default="1024x1024", show_default=True, help="WxH")
@click.option("--provider", default="venice", show_default=True, help=PROVIDER_HELP)
@click.option("--out", required=True, type=click.Path(path_type=Path, dir_okay=False),
              help="Where to write the PNG (FILE-1.png... when --n > 1).")  # fmt: skip
@click.argument("prompt")
@json_option
def image(
    base_url: str,
    socket: str | None,
    token_file: Path | None,
    api_key_file: Path | None,
    timeout: float,
    quiet: bool,
    model: str,
    count: int,
    size: str,
    provider: str,
    out: Path,
    prompt: str,
    as_json: bool,
) -> None:
    """Generate images for PROMPT and write them as PNG files."""
    with _client(base_url, socket, token_file, api_key_file, timeout) as api:
        result = api.images_result(model, prompt, n=count, size=size, provider=provider)
    paths = _image_paths(out, len(result.images))
    for path, data in zip(paths, result.images, strict=True):
        path.write_bytes(data)
    emit(
        as_json,
        {"files": [str(p) for p in paths], "payment": _payment_data(result.payment)},
        [f"wrote {p} ({len(d)} bytes)" for p, d in zip(paths, result.images, strict=True)],
    )
    _say_paid(result.payment, quiet or as_json)


@click.command()
@api_options
@json_option
def models(
    base_url: str,
    socket: str | None,
    token_file: Path | None,
    api_key_file: Path | None,
    timeout: float,
    quiet: bool,
    as_json: bool,
) -> None:
    """List the API's models (free: nothing is paid)."""
    with _client(base_url, socket, token_file, api_key_file, timeout) as api:
        found = api.models()
    emit(
        as_json,
        {"models": [{"id": m.id, "type": m.type, "owned_by": m.owned_by} for m in found]},
        [f"{m.id}\t{m.type}" for m in found],
    )


COMMANDS = (chat, image, models)
