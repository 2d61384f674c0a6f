"""``walletd init``, ``walletd serve`` and ``walletd db``: the daemon's own life."""

from __future__ import annotations

import logging
from pathlib import Path

import click

from walletd.cli._common import ledger_options, open_store, settings_from
from walletd.cli._output import emit, json_option

_HELP_PASSFILE = (
    "File holding the passphrase "
    "(else $CREDENTIALS_DIRECTORY/walletd-passphrase, else a TTY prompt)."
)


def _passphrase_option(func: click.decorators.FC) -> click.decorators.FC:
    return click.option(
        "--passphrase-file",
        type=click.Path(path_type=Path, dir_okay=False, exists=True),
        default=None,
        help=_HELP_PASSFILE,
    )(func)


def _new_key(
    import_keystore: Path | None, keystore_pass_file: Path | None, import_key_file: Path | None
) -> bytes:
    from walletd.errors import InvalidRequestError
    from walletd.keys import keystore
    from walletd.keys.passphrase import read_passphrase

    if import_keystore and import_key_file:
        raise InvalidRequestError("give --import-keystore or --import-key-file, not both")
    if import_keystore:
        secret = read_passphrase(keystore_pass_file, environ={}, confirm=False)
        return keystore.import_v3_keystore(import_keystore, secret)
    if import_key_file:
        return keystore.read_hex_key_file(import_key_file)
    return keystore.generate_private_key()


@click.command()
@ledger_options
@_passphrase_option
@click.option("--import-keystore", type=click.Path(path_type=Path, exists=True), default=None)
@click.option(
    "--keystore-passphrase-file", type=click.Path(path_type=Path, exists=True), default=None
)
@click.option("--import-key-file", type=click.Path(path_type=Path, exists=True), default=None)
@click.option("--kdf-log-n", type=click.IntRange(10, 22), default=None, hidden=True)
@json_option
def init(
    data_dir: Path | None,
    config_path: Path | None,
    db_url: str,
    passphrase_file: Path | None,
    import_keystore: Path | None,
    keystore_passphrase_file: Path | None,
    import_key_file: Path | None,
    kdf_log_n: int | None,
    as_json: bool,
) -> None:
    """Make (or import) the wallet key, encrypt it, and create the ledger."""
    from dataclasses import replace

    from walletd.db import migrate
    from walletd.keys import keystore
    from walletd.keys.passphrase import read_passphrase

    settings = settings_from(data_dir, config_path, db_url=db_url)
    settings.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    key = _new_key(import_keystore, keystore_passphrase_file, import_key_file)
    passphrase = read_passphrase(passphrase_file, confirm=True)
    kdf = keystore.KdfParams.DEFAULT
    if kdf_log_n is not None:
        kdf = replace(kdf, log2_n=kdf_log_n)
    address = keystore.create_keystore(settings.keystore_path, key, passphrase, kdf)
    store = open_store(settings, check_schema=False)
    migrate.upgrade(store.engines.write)
    store.engines.dispose()
    emit(
        as_json,
        {"address": address, "data_dir": str(settings.data_dir)},
        [f"data dir: {settings.data_dir}", f"keystore: {settings.keystore_path}", address],
    )


@click.command()
@ledger_options
@_passphrase_option
@click.option("--socket", default="", help="Unix socket path (default DIR/walletd.sock).")
@click.option("--listen", default="", help="TCP HOST:PORT; requires --tls-cert/--tls-key.")
@click.option("--tls-cert", default="")
@click.option("--tls-key", default="")
@click.option("--tls-client-ca", default="", help="Require client certificates from this CA.")
@click.option("--rpc-url", default="", help="Chain JSON-RPC URL for on-chain checks.")
@click.option(
    "--auto-migrate", is_flag=True, help="Upgrade an out-of-date ledger instead of refusing."
)
@click.option("--log-json", is_flag=True, help="Log as JSON lines.")
@json_option
def serve(
    data_dir: Path | None,
    config_path: Path | None,
    db_url: str,
    passphrase_file: Path | None,
    socket: str,
    listen: str,
    tls_cert: str,
    tls_key: str,
    tls_client_ca: str,
    rpc_url: str,
    auto_migrate: bool,
    log_json: bool,
    as_json: bool,
) -> None:
    """Run the daemon until SIGTERM."""
    from walletd import daemon
    from walletd.keys.passphrase import read_passphrase
    from walletd.logs import setup_logging

    settings = settings_from(
        data_dir, config_path, db_url=db_url, socket=socket, listen=listen,
        tls_cert=tls_cert, tls_key=tls_key, tls_client_ca=tls_client_ca,
        rpc_url=rpc_url, log_json=log_json,
    )  # fmt: skip
    setup_logging(json_lines=settings.log_json or as_json)
    passphrase = read_passphrase(passphrase_file)
    daemon.run(settings, passphrase, auto_migrate=auto_migrate)


@click.group()
def db() -> None:
    """Ledger schema: upgrade it, or show where it is."""


@db.command("upgrade")
@ledger_options
@json_option
def db_upgrade(data_dir: Path | None, config_path: Path | None, db_url: str, as_json: bool) -> None:
    """Apply every migration up to the newest (safe while the daemon runs)."""
    from walletd.db import migrate

    store = open_store(settings_from(data_dir, config_path, db_url=db_url), check_schema=False)
    migrate.upgrade(store.engines.write)
    revision = migrate.current_revision(store.engines.read)
    store.engines.dispose()
    emit(as_json, {"revision": revision}, [f"database at revision {revision}"])


@db.command("current")
@ledger_options
@json_option
def db_current(data_dir: Path | None, config_path: Path | None, db_url: str, as_json: bool) -> None:
    """Show the ledger's schema revision and the code's."""
    from walletd.db import migrate

    store = open_store(settings_from(data_dir, config_path, db_url=db_url), check_schema=False)
    current, head = migrate.current_revision(store.engines.read), migrate.head_revision()
    store.engines.dispose()
    emit(
        as_json,
        {"current": current, "head": head, "up_to_date": current == head},
        [f"current: {current or 'none'}", f"head: {head}"],
    )


COMMANDS = (init, serve, db)
logging.getLogger("alembic").setLevel(logging.WARNING)
