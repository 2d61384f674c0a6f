"""Retired keystores, and the lock that keeps two key operations off one data dir.

After ``walletd key rotate`` the old key may still have authorizations out:
the reconciler only needs its address (every payment row records its payer),
but ``walletd payment cancel`` must sign ``cancelAuthorization`` with it. So a
rotation keeps the old keystore file, still encrypted, as
``DIR/retired-keys/<address>.json`` (0600 in a 0700 directory), and a
passphrase change re-encrypts those files too, so one passphrase opens every
key walletd holds.

Two key operations at once could lose a key (a rotation's new key overwritten
by a passphrase change that read the old one), so each holds an exclusive
``flock`` on ``DIR/key.lock`` and a second one is refused at once.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from walletd.errors import KeyStoreError, WrongPassphraseError
from walletd.keys import keystore

RETIRED_DIR = "retired-keys"
LOCK_FILE = "key.lock"


@contextlib.contextmanager
def key_lock(data_dir: Path) -> Iterator[None]:
    """Hold the data dir's key-operation lock; KeyStoreError if another process holds it."""
    path = Path(data_dir) / LOCK_FILE
    try:
        fd = os.open(path, os.O_CREAT | os.O_RDWR | getattr(os, "O_CLOEXEC", 0), 0o600)
    except OSError as exc:
        raise KeyStoreError(f"cannot open {path}: {exc.strerror}") from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise KeyStoreError(
                f"another key operation is running on {data_dir}; try again when it ends"
            ) from None
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the lock


def retired_dir(data_dir: Path) -> Path:
    """Where retired keystores are kept."""
    return Path(data_dir) / RETIRED_DIR


def retired_path(data_dir: Path, address: str) -> Path:
    """The retired keystore file of ``address`` (checksummed, as the keystore binds it)."""
    return retired_dir(data_dir) / f"{address}.json"


def retire(current: Path, data_dir: Path, address: str) -> Path:
    """Copy the current keystore file, as it is (encrypted), to ``retired-keys/ADDRESS.json``.

    A file already there for the same address is replaced: it holds the same
    key (the address is bound into the ciphertext), and the copy is atomic.
    """
    directory = retired_dir(data_dir)
    directory.mkdir(mode=0o700, exist_ok=True)
    target = retired_path(data_dir, address)
    try:
        data = Path(current).read_bytes()
    except OSError as exc:
        raise KeyStoreError(f"cannot read keystore {current}: {exc.strerror}") from None
    keystore.write_file_atomically(target, data, overwrite=True)
    if keystore.read_address(target) != address:
        raise KeyStoreError(f"keystore {current} changed while it was being retired")
    return target


def retired_keystores(data_dir: Path) -> list[Path]:
    """Every retired keystore file, by name."""
    directory = retired_dir(data_dir)
    return sorted(directory.glob("*.json")) if directory.is_dir() else []


def keystore_for(data_dir: Path, current: Path, address: str) -> Path:
    """The keystore file holding ``address``: the current one, else a retired one.

    Raises:
        KeyStoreError: walletd holds no key for this address.
    """
    if keystore.read_address(current).lower() == address.lower():
        return Path(current)
    for path in retired_keystores(data_dir):
        if keystore.read_address(path).lower() == address.lower():
            return path
    raise KeyStoreError(f"no keystore in {data_dir} holds the key of {address}")


@dataclass(frozen=True)
class Rewrapped:
    """What a passphrase change did to the retired keystores."""

    changed: tuple[Path, ...] = ()
    already: tuple[Path, ...] = ()
    """Files that already opened with the new passphrase (an earlier, interrupted run)."""
    left: tuple[Path, ...] = ()
    """Files that open with neither passphrase; left as they are."""


def rewrap_retired(
    data_dir: Path, old: bytes, new: bytes, kdf: keystore.KdfParams = keystore.KdfParams.DEFAULT
) -> Rewrapped:
    """Re-encrypt every retired keystore from ``old`` to ``new`` (each file atomically).

    Done before the current keystore, so an interrupted change can be run again
    with the old passphrase: files already under the new one are skipped.
    """
    changed: list[Path] = []
    already: list[Path] = []
    left: list[Path] = []
    for path in retired_keystores(data_dir):
        try:
            keystore.change_passphrase(path, old, new, kdf)
            changed.append(path)
        except WrongPassphraseError:
            (already if _opens(path, new) else left).append(path)
    return Rewrapped(tuple(changed), tuple(already), tuple(left))


def _opens(path: Path, passphrase: bytes) -> bool:
    try:
        keystore.unlock(path, passphrase)
    except WrongPassphraseError:
        return False
    return True
