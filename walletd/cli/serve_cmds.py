"""``walletd serve`` and ``health``: running the daemon, and asking whether it serves."""

from __future__ import annotations

from pathlib import Path

import click

from walletd.cli._common import (
    SOCKET_HELP,
    http_url_check,
    ledger_options,
    passphrase_option,
    settings_from,
)
from walletd.cli._output import emit, json_option


@click.command()
@ledger_options
@passphrase_option
@click.option("--socket", default="", help="Unix socket path (default DIR/walletd.sock).")
@click.option(
    "--socket-group",
    default=None,
    help="Give the socket to this group (the daemon's user must be a member; "
    "default [rpc] socket_group).",
)
@click.option(
    "--socket-mode",
    type=click.Choice(["0600", "0660"]),
    default=None,
    help="0660 lets --socket-group connect; others never can (default [rpc] socket_mode, 0600).",
)
@click.option("--listen", default="", help="TCP HOST:PORT; requires --tls-cert/--tls-key.")
@click.option("--tls-cert", default="", help="PEM certificate (chain) the TCP listener presents.")
@click.option("--tls-key", default="", help="PEM private key of --tls-cert (keep it 0600).")
@click.option("--tls-client-ca", default="", help="Require client certificates from this CA.")
@click.option(
    "--rpc-url",
    default="",
    callback=http_url_check("http", "https"),
    help="Chain JSON-RPC URL for on-chain checks (default: [chain] rpc_url).",
)
@click.option(
    "--auto-migrate", is_flag=True, help="Upgrade an out-of-date ledger instead of refusing."
)
@click.option("--log-json", is_flag=True, help="Log as JSON lines.")
@click.option(
    "--metrics",
    default="",
    metavar="[HOST:]PORT",
    help="Serve Prometheus metrics at http://HOST:PORT/metrics, unauthenticated; a bare "
    "PORT binds 127.0.0.1, another host logs a warning (default [metrics] listen).",
)
@json_option
def serve(
    data_dir: Path | None,
    config_path: Path | None,
    db_url: str,
    passphrase_file: Path | None,
    socket: str,
    socket_group: str | None,
    socket_mode: str | None,
    listen: str,
    tls_cert: str,
    tls_key: str,
    tls_client_ca: str,
    rpc_url: str,
    auto_migrate: bool,
    log_json: bool,
    metrics: str,
    as_json: bool,
) -> None:
    """Run the daemon until SIGTERM."""
    from walletd import daemon
    from walletd.keys.passphrase import read_passphrase_buffer
    from walletd.logs import setup_logging
    from walletd.rpc.server import SocketAccess, set_socket_access

    daemon.harden()  # before anything secret is read
    settings = settings_from(
        data_dir, config_path, db_url=db_url, socket=socket, listen=listen,
        tls_cert=tls_cert, tls_key=tls_key, tls_client_ca=tls_client_ca,
        rpc_url=rpc_url, log_json=log_json, socket_group=socket_group, socket_mode=socket_mode,
        metrics_listen=metrics,
    )  # fmt: skip
    setup_logging(json_lines=settings.log_json or as_json)
    set_socket_access(SocketAccess(int(settings.socket_mode, 8), settings.socket_group or None))
    # run() zeroes the buffer right after the unlock: no copy outlives it.
    daemon.run(
        settings, read_passphrase_buffer(passphrase_file), auto_migrate=auto_migrate,
        metrics=settings.metrics_listen,
    )  # fmt: skip


@click.command()
@click.option(
    "--socket",
    # readable=False: a socket we may not connect to is "not serving" (exit 1), not a usage error
    type=click.Path(path_type=Path, dir_okay=False, readable=False),
    default=None,
    help=SOCKET_HELP,
)
@click.option(
    "--timeout",
    type=click.FloatRange(0.1, 300),
    default=5.0,
    show_default=True,
    help="Seconds to wait for the daemon's answer.",
)
@json_option
def health(socket: Path | None, timeout: float, as_json: bool) -> None:
    """Exit 0 when the daemon's wallet service is SERVING (gRPC health), else 1.

    Needs no token: it is meant for container and load-balancer health checks.
    """
    from walletd.client import WalletClient
    from walletd.errors import DaemonUnavailableError

    try:
        client = WalletClient(socket=socket, timeout=timeout)
    except DaemonUnavailableError as exc:  # no socket, or nobody accepting on it
        raise DaemonUnavailableError(f"walletd is not serving: {exc}", exc.details) from None
    with client:
        serving = client.health()
        target = client.target
    if not serving:
        raise DaemonUnavailableError(f"walletd is not serving on {target}", {"target": target})
    emit(as_json, {"serving": True, "target": target}, [f"SERVING on {target}"])


COMMANDS = (serve, health)
