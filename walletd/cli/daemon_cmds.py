"""``walletd init``, ``serve``, ``health``, ``db`` and ``key``: the daemon's own life."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click

from walletd.cli._common import http_url_check, ledger_options, open_store, settings_from
from walletd.cli._output import emit, json_option

if TYPE_CHECKING:
    from walletd.config import Settings
    from walletd.keys import keystore as keystore_mod
    from walletd.service.keys import KeyFiles

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


def _key_source_options(command: click.decorators.FC) -> click.decorators.FC:
    """Where a new key comes from (`init` and `key rotate`): generated, or imported."""
    for option in reversed(
        (
            click.option(
                "--import-keystore",
                type=click.Path(path_type=Path, exists=True),
                default=None,
                help="Import the key from this Ethereum V3 keystore (JSON) instead of "
                "generating one.",
            ),
            click.option(
                "--keystore-passphrase-file",
                type=click.Path(path_type=Path, exists=True),
                default=None,
                help="File holding the passphrase of --import-keystore (else a TTY prompt); "
                "walletd then encrypts the key under its own passphrase.",
            ),
            click.option(
                "--import-key-file",
                type=click.Path(path_type=Path, exists=True),
                default=None,
                help="Import the key from this file: a private key as 64 hex digits "
                "(0x optional) instead of generating one.",
            ),
            click.option("--kdf-log-n", type=click.IntRange(10, 22), default=None, hidden=True),
        )
    ):
        command = option(command)
    return command


@click.command()
@ledger_options
@_passphrase_option
@_key_source_options
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


@click.command()
@click.option(
    "--socket",
    # readable=False: a socket we may not connect to is "not serving" (exit 1), not a usage error
    type=click.Path(path_type=Path, dir_okay=False, readable=False),
    default=None,
    help="Daemon socket (default $WALLETD_SOCKET, else ~/.local/share/walletd/walletd.sock).",
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


@db.command("backup")
@click.argument("dest", type=click.Path(path_type=Path, dir_okay=False))
@ledger_options
@json_option
def db_backup(
    dest: Path, data_dir: Path | None, config_path: Path | None, db_url: str, as_json: bool
) -> None:
    """Snapshot the SQLite ledger into the new file DEST (0600), while the daemon runs.

    Restore: stop the daemon, copy DEST to DIR/walletd.db (mode 0600, owned by
    the daemon's user, with no walletd.db-wal/-shm left beside it), start it.
    PostgreSQL ledgers are backed up with pg_dump instead.
    """
    from walletd.db.backup import backup_sqlite, sqlite_path

    settings = settings_from(data_dir, config_path, db_url=db_url)
    result = backup_sqlite(sqlite_path(settings.ledger_url), dest)
    emit(
        as_json,
        {"backup": str(result.path), "bytes": result.size, "payments": result.payments},
        [f"backup: {result.path} ({result.size} bytes, {result.payments} payments)"],
    )


@click.group()
def key() -> None:
    """The wallet key file."""


def _kdf(kdf_log_n: int | None) -> keystore_mod.KdfParams:
    """The scrypt cost: the default, or the hidden test-only ``--kdf-log-n``."""
    from dataclasses import replace

    from walletd.keys import keystore

    return (
        keystore.KdfParams.DEFAULT
        if kdf_log_n is None
        else replace(keystore.KdfParams.DEFAULT, log2_n=kdf_log_n)
    )


def _key_files(settings: Settings) -> KeyFiles:
    from walletd.service.keys import KeyFiles

    return KeyFiles(settings.data_dir, settings.keystore_path)


@key.command("change-passphrase")
@ledger_options
@_passphrase_option
@click.option(
    "--new-passphrase-file",
    type=click.Path(path_type=Path, dir_okay=False, exists=True),
    default=None,
    help="File holding the new passphrase (else a TTY prompt, asked twice).",
)
@click.option("--kdf-log-n", type=click.IntRange(10, 22), default=None, hidden=True)
@json_option
def key_change_passphrase(
    data_dir: Path | None,
    config_path: Path | None,
    db_url: str,
    passphrase_file: Path | None,
    new_passphrase_file: Path | None,
    kdf_log_n: int | None,
    as_json: bool,
) -> None:
    """Re-encrypt the key (and retired keys) under a new passphrase; recorded in the ledger.

    Each file is replaced atomically: the old file or the new, never neither. A
    running daemon keeps its unlocked key; update the passphrase it is started
    with (e.g. the systemd credential) before its next start.
    """
    from walletd.keys.passphrase import read_passphrase
    from walletd.service import keys

    settings = settings_from(data_dir, config_path, db_url=db_url)
    store = open_store(settings)
    try:
        old = read_passphrase(passphrase_file, prompt_text="current passphrase: ")
        new = read_passphrase(
            new_passphrase_file, environ={}, confirm=True, prompt_text="new passphrase: "
        )
        done = keys.change_passphrase(store, _key_files(settings), old, new, kdf=_kdf(kdf_log_n))
    finally:
        store.engines.dispose()
    left = [str(path) for path in done.retired.left]
    lines = [f"passphrase changed for {done.address} ({settings.keystore_path})"]
    lines += [f"warning: {path} opens with neither passphrase; left as it is" for path in left]
    doc: dict[str, object] = {"address": done.address, "keystore": str(settings.keystore_path)}
    doc.update(retired_rewrapped=len(done.retired.changed), retired_left=left)
    emit(as_json, doc, lines)


def _key_source(import_keystore: Path | None, import_key_file: Path | None) -> str:
    """How a rotation's new key was made, for the ledger record (never the file's content)."""
    if import_keystore:
        return "imported-v3-keystore"
    return "imported-key-file" if import_key_file else "generated"


@key.command("rotate")
@ledger_options
@_passphrase_option
@_key_source_options
@json_option
def key_rotate(
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
    """Switch to a new key (generated, or imported as with `init`); keep the old one retired.

    The new key is encrypted under the same passphrase. The daemon signs with
    it from its next start (restart it; copy key.json to every replica). The
    old key's outstanding authorizations are still reconciled, and
    `walletd payment cancel` opens its retired keystore. Fund the new address.
    """
    from walletd.keys.passphrase import read_passphrase
    from walletd.service import keys

    settings = settings_from(data_dir, config_path, db_url=db_url)
    store = open_store(settings)
    try:
        new_key = _new_key(import_keystore, keystore_passphrase_file, import_key_file)
        passphrase = read_passphrase(passphrase_file)
        done = keys.rotate(
            store, _key_files(settings), passphrase, new_key,
            source=_key_source(import_keystore, import_key_file), kdf=_kdf(kdf_log_n),
        )  # fmt: skip
    finally:
        store.engines.dispose()
    emit(
        as_json,
        {"old_address": done.old_address, "new_address": done.new_address,
         "retired_keystore": str(done.retired), "keystore": str(settings.keystore_path)},
        [f"old address: {done.old_address} (retired keystore: {done.retired})",
         f"new address: {done.new_address}",
         "fund the new address; restart the daemon (and every replica) to sign with it"],
    )  # fmt: skip


@key.command("history")
@ledger_options
@json_option
def key_history(
    data_dir: Path | None, config_path: Path | None, db_url: str, as_json: bool
) -> None:
    """Every key operation the ledger recorded (passphrase changes, rotations), oldest first."""
    from walletd.domain.report import iso_ms
    from walletd.service import keys

    store = open_store(settings_from(data_dir, config_path, db_url=db_url))
    try:
        events = keys.history(store)
    finally:
        store.engines.dispose()
    docs = [
        {"id": e.id, "at": iso_ms(e.at_ms), "operation": e.operation,
         "old_address": e.old_address, "new_address": e.new_address, "data": dict(e.data)}
        for e in events
    ]  # fmt: skip
    lines = [f"{d['at']}  {d['operation']:<17}  {d['old_address']} -> {d['new_address']}"
             for d in docs]  # fmt: skip
    emit(as_json, {"events": docs}, lines or ["no key operations recorded"])


COMMANDS = (init, serve, health, db, key)
