"""Key operations the ledger witnesses: passphrase change, rotation, and the check at start.

Each operation is written to the hash-chained ``key_events`` table (what, when,
the old and new address; never a secret) *before* the key files change, so no
change of key goes unrecorded. A crash after the record and before the files
change leaves a record of an operation that did not finish; running it again
finishes it (and records it again).

Rotation (``rotate``): the current keystore is kept as a retired keystore
(``walletd.keys.rotation``), the new key replaces ``key.json`` atomically,
encrypted under the same passphrase, so the daemon's start-up credential does
not change. A running daemon keeps signing with the key it unlocked at start
(its payments record that payer, so they are reconciled like any other); it
signs with the new key from its next start. From then on the daemon refuses to
start with any keystore but the ledger's current key (``require_current_key``):
a replica still holding the old ``key.json``, a restored backup, or a rotation
interrupted before ``key.json`` was replaced.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from walletd.db.ledger import KeyEventRecord, Store
from walletd.errors import InvalidRequestError, KeyStoreError
from walletd.keys import keystore, rotation
from walletd.keys.signer import address_from_private_key
from walletd.service.clock import now_ms

OP_CHANGE_PASSPHRASE = "change-passphrase"  # noqa: S105 (an operation name, not a secret)
OP_ROTATE = "rotate"


@dataclass(frozen=True)
class KeyFiles:
    """Where one data dir keeps its keys."""

    data_dir: Path
    keystore: Path
    """The current keystore (``DIR/key.json``)."""


@dataclass(frozen=True)
class Rotation:
    """The outcome of a rotation: the operator must fund ``new_address``."""

    old_address: str
    new_address: str
    retired: Path
    """The old key's keystore, kept encrypted for cancelling its authorizations."""


@dataclass(frozen=True)
class PassphraseChange:
    """The outcome of a passphrase change."""

    address: str
    retired: rotation.Rewrapped


def _record(
    store: Store,
    operation: str,
    addresses: tuple[str, str],
    data: Mapping[str, object],
    clock: Callable[[], int],
) -> None:
    with store.write() as tx:
        tx.add_key_event(clock(), operation, addresses, data)


def rotate(
    store: Store,
    files: KeyFiles,
    passphrase: bytes,
    new_key: bytes,
    *,
    source: str,
    kdf: keystore.KdfParams = keystore.KdfParams.DEFAULT,
    clock: Callable[[], int] = now_ms,
) -> Rotation:
    """Replace the signing key with ``new_key``; keep the old one retired, encrypted.

    ``passphrase`` must open the current keystore (checked first, so a wrong
    one changes nothing) and encrypts the new one. ``source`` (how the new key
    was made: generated or imported) goes into the ledger record.

    Raises:
        WrongPassphraseError, KeyStoreError: the current keystore does not open.
        InvalidRequestError: ``new_key`` is the current key.
        StorageError: the ledger cannot record it (nothing changed).
    """
    new_address = address_from_private_key(new_key)
    with rotation.key_lock(files.data_dir):
        keystore.unlock(files.keystore, passphrase)
        old_address = keystore.read_address(files.keystore)
        if new_address == old_address:
            raise InvalidRequestError(f"{new_address} is already the current key")
        retired = rotation.retire(files.keystore, files.data_dir, old_address)
        data = {"source": source, "retired_keystore": str(retired.relative_to(files.data_dir))}
        _record(store, OP_ROTATE, (old_address, new_address), data, clock)
        keystore.create_keystore(files.keystore, new_key, passphrase, kdf, overwrite=True)
    return Rotation(old_address, new_address, retired)


def change_passphrase(
    store: Store,
    files: KeyFiles,
    old: bytes,
    new: bytes,
    *,
    kdf: keystore.KdfParams = keystore.KdfParams.DEFAULT,
    clock: Callable[[], int] = now_ms,
) -> PassphraseChange:
    """Re-encrypt the current and every retired keystore under ``new`` (each file atomically).

    Raises:
        WrongPassphraseError, KeyStoreError: ``old`` does not open the current keystore.
        InvalidRequestError: ``new`` is the same as ``old``.
        StorageError: the ledger cannot record it (nothing changed).
    """
    if new == old:
        raise InvalidRequestError("the new passphrase is the same as the current one")
    with rotation.key_lock(files.data_dir):
        keystore.unlock(files.keystore, old)
        address = keystore.read_address(files.keystore)
        retired = rotation.retired_keystores(files.data_dir)
        data = {"retired_keystores": len(retired)}
        _record(store, OP_CHANGE_PASSPHRASE, (address, address), data, clock)
        rewrapped = rotation.rewrap_retired(files.data_dir, old, new, kdf)
        keystore.change_passphrase(files.keystore, old, new, kdf)
    return PassphraseChange(address, rewrapped)


def history(store: Store) -> list[KeyEventRecord]:
    """Every recorded key operation, oldest first."""
    with store.read() as tx:
        return tx.key_events()


def require_current_key(store: Store, address: str) -> None:
    """Refuse a keystore that is not the key the ledger last recorded as current.

    Without any key event (a ledger from before rotation was recorded, or never
    rotated) there is nothing to compare with, and every key is accepted.

    Raises:
        KeyStoreError: naming both addresses and the way out.
    """
    with store.read() as tx:
        expected = tx.current_key()
    if expected is None or expected.lower() == address.lower():
        return
    raise KeyStoreError(
        f"the keystore holds {address}, but the ledger's current key is {expected} "
        "(`walletd key history`): install the current key.json, or finish an interrupted "
        "rotation with `walletd key rotate`"
    )
