"""Where the keystore passphrase comes from: a file, systemd credentials, or a TTY.

Never argv (visible in ``ps`` and shell history) and never an environment value
(inherited by children, dumped by crash reporters, readable in /proc/<pid>/environ).
``$CREDENTIALS_DIRECTORY`` is read only as the *directory* systemd put the
credential in; the secret itself is in the file ``walletd-passphrase`` there.
"""

from __future__ import annotations

import getpass
import logging
import os
import stat
import sys
from collections.abc import Callable, Mapping
from pathlib import Path

from walletd.errors import KeyStoreError
from walletd.keys.memory import wipe_bytearray

CREDENTIAL_NAME = "walletd-passphrase"
_MAX_PASSPHRASE_FILE_BYTES = 4096
_NO_SOURCE = (
    "no passphrase: pass --passphrase-file, use systemd LoadCredential=walletd-passphrase, "
    "or run on a TTY"
)

log = logging.getLogger(__name__)


def read_passphrase(
    passphrase_file: Path | None,
    *,
    environ: Mapping[str, str] = os.environ,
    prompt: bool = True,
    confirm: bool = False,
    stdin_isatty: Callable[[], bool] | None = None,
    getpass_fn: Callable[[str], str] | None = None,
    prompt_text: str = "walletd key passphrase: ",
) -> bytes:
    """The passphrase, from the first source that exists, in this order.

    1. ``passphrase_file`` when given (an explicit choice: its errors are final);
    2. ``$CREDENTIALS_DIRECTORY/walletd-passphrase`` (systemd ``LoadCredential=``);
    3. a getpass prompt, only if ``prompt`` and stdin is a TTY (twice if ``confirm``).

    Otherwise KeyStoreError. An empty passphrase is refused from every source.
    """
    if passphrase_file is not None:
        return _from_file(Path(passphrase_file))
    credential = _credential_path(environ)
    if credential is not None:
        return _from_file(credential)
    isatty = stdin_isatty if stdin_isatty is not None else _stdin_isatty
    if prompt and isatty():
        ask = getpass_fn if getpass_fn is not None else getpass.getpass
        return _from_prompt(ask, prompt_text, confirm=confirm)
    raise KeyStoreError(_NO_SOURCE)


def read_passphrase_buffer(
    passphrase_file: Path | None, *, environ: Mapping[str, str] = os.environ
) -> bytearray:
    """``read_passphrase`` into a bytearray the caller zeroes after use (the daemon's unlock).

    From a file (or the systemd credential) the bytes are read straight into
    the bytearray, so no other copy is left in the process; from a TTY prompt
    Python's str and its encoding are unavoidable copies.
    """
    path = Path(passphrase_file) if passphrase_file is not None else _credential_path(environ)
    if path is not None:
        return _from_file_into(path)
    return bytearray(read_passphrase(None, environ=environ))


def _credential_path(environ: Mapping[str, str]) -> Path | None:
    """The systemd credential file, if the service was given one."""
    directory = environ.get("CREDENTIALS_DIRECTORY", "")
    if not directory:
        return None
    candidate = Path(directory) / CREDENTIAL_NAME
    return candidate if candidate.exists() else None


def _stdin_isatty() -> bool:
    """Whether a human can answer a prompt (stdin may be closed under a supervisor)."""
    return sys.stdin is not None and sys.stdin.isatty()


def _from_file(path: Path) -> bytes:
    """Read a passphrase file; warn (not refuse) if others can read it.

    Refusing would break common secret mounts (Docker secrets are 0444,
    Kubernetes defaults to 0644 inside a private volume), so this only warns.
    """
    buf = _from_file_into(path)
    try:
        return bytes(buf)
    finally:
        wipe_bytearray(buf)


def _from_file_into(path: Path) -> bytearray:
    """``_from_file`` into an exact-size bytearray; the read buffer is zeroed."""
    raw = bytearray(_MAX_PASSPHRASE_FILE_BYTES + 1)
    try:
        size = _read_into(path, raw)
        if size > _MAX_PASSPHRASE_FILE_BYTES:
            raise KeyStoreError(
                f"passphrase file {path} is larger than {_MAX_PASSPHRASE_FILE_BYTES} bytes"
            )
        # One line ending only: other whitespace may be part of the passphrase.
        if size >= 2 and raw[size - 2] == 0x0D and raw[size - 1] == 0x0A:
            size -= 2
        elif size >= 1 and raw[size - 1] == 0x0A:
            size -= 1
        if not size:
            raise KeyStoreError(f"passphrase file {path} is empty")
        passphrase = bytearray(size)
        passphrase[:] = memoryview(raw)[:size]
        return passphrase
    finally:
        wipe_bytearray(raw)


def _read_into(path: Path, raw: bytearray) -> int:
    """Read the file into ``raw`` without Python's buffered reader (no hidden copy)."""
    try:
        with path.open("rb", buffering=0) as f:
            mode = os.fstat(f.fileno()).st_mode
            size = 0
            view = memoryview(raw)
            while size < len(raw):
                got = f.readinto(view[size:])
                if not got:
                    break
                size += got
    except OSError as exc:
        raise KeyStoreError(f"cannot read passphrase file {path}: {exc.strerror}") from None
    if mode & 0o077 and stat.S_ISREG(mode):
        log.warning(
            "passphrase file %s is readable by group/others (mode %04o)", path, stat.S_IMODE(mode)
        )
    return size


def _from_prompt(ask: Callable[[str], str], prompt_text: str, *, confirm: bool) -> bytes:
    """Prompt without echo; with ``confirm``, ask again and require the same answer."""
    first = ask(prompt_text)
    if not first:
        raise KeyStoreError("empty passphrase refused")
    if confirm and ask("repeat " + prompt_text) != first:
        raise KeyStoreError("passphrases do not match")
    return first.encode("utf-8")
