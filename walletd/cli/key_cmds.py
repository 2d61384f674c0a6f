"""``walletd init`` and ``key``: making the wallet key, its passphrase and rotations."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click

from walletd.cli._common import (
    ledger_options,
    open_store,
    passphrase_option,
    settings_from,
)
from walletd.cli._output import emit, json_option

if TYPE_CHECKING:
    from walletd.config import Settings
    from walletd.keys import keystore as keystore_mod
    from walletd.service.keys import KeyFiles


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
@passphrase_option
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
@passphrase_option
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
@passphrase_option
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


COMMANDS = (init, key)
