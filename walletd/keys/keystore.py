"""The encrypted key file (keystore): create, read, unlock, re-wrap, import.

Format (JSON, version 1)::

    {"walletd_keystore": 1,
     "address": "0x<checksummed>",
     "kdf": {"name": "scrypt", "log2_n": 17, "r": 8, "p": 1, "salt": "<hex, 16 bytes>"},
     "cipher": {"name": "aes-256-gcm", "nonce": "<hex, 12 bytes>"},
     "ciphertext": "<hex, 32-byte key + 16-byte tag>"}

scrypt is memory-hard, so a stolen file is expensive to brute-force; AES-256-GCM
authenticates the ciphertext and, as associated data, the format version and the
address, so an edited address or version cannot pass for the real one. The KDF
parameters and nonce are not in the AAD because changing either already yields a
different key or keystream and fails the tag.

Plaintext key material never touches the disk: the file is written to a 0600
temp file with O_EXCL, fsynced, then linked or renamed into place, and the
directory fsynced. Error messages name paths and never quote file content.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import secrets
import stat
import string
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt
from eth_utils.address import is_checksum_address

from walletd.errors import InvalidRequestError, KeyStoreError, WrongPassphraseError
from walletd.keys.memory import SecretBuffer, wipe_bytearray
from walletd.keys.signer import (
    PRIVATE_KEY_LEN,
    address_from_private_key,
    address_of_secret,
    is_valid_private_key,
    require_valid_private_key,
    secret_is_valid,
)

FORMAT_VERSION = 1
_VERSION_FIELD = "walletd_keystore"
_KDF_NAME = "scrypt"
_CIPHER_NAME = "aes-256-gcm"
_SALT_LEN = 16
_NONCE_LEN = 12
_TAG_LEN = 16
_AES_KEY_LEN = 32
_MAX_FILE_BYTES = 64 * 1024  # a keystore is ~400 bytes; anything larger is not one
_MAX_SCRYPT_MEMORY = 1 << 30  # refuse files that would make us allocate more than 1 GiB
_INSECURE_MODE_BITS = 0o077
_HEX_DIGITS = frozenset(string.hexdigits)
# Link-based no-clobber publishing is not supported everywhere; these mean "fall back".
_NO_LINK_ERRNOS = frozenset({errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EMLINK})


def kdf_params_problem(log2_n: int, r: int, p: int) -> str | None:
    """Why these scrypt parameters are unusable, or None.

    Bounds matter when reading a file: a corrupt or hostile ``log2_n`` must not
    make the daemon allocate gigabytes before the tag check can fail.
    """
    if not all(type(v) is int for v in (log2_n, r, p)):  # bool and float are not costs
        return "log2_n, r and p must be integers"
    if not 10 <= log2_n <= 24:
        return "log2_n must be in [10, 24]"
    if not 1 <= r <= 32 or not 1 <= p <= 16:
        return "r must be in [1, 32] and p in [1, 16]"
    if 128 * r * (1 << log2_n) > _MAX_SCRYPT_MEMORY:
        return "memory cost 128*r*2**log2_n exceeds 1 GiB"
    return None


@dataclass(frozen=True)
class KdfParams:
    """scrypt cost: N = 2**log2_n, block size r, parallelism p (memory ≈ 128·r·N bytes).

    ``DEFAULT`` (N=2**17, r=8, p=1: 128 MiB) measured a 450 ms median on an idle
    reference machine (0.56-1.3 s under load; bench/kdf_cost.py), over 4x the
    100 ms floor, for one unlock per daemon start. N=2**15 was only ~100 ms, too
    close to the floor. ``FAST`` (1 MiB, a few ms) is for tests only.
    """

    log2_n: int
    r: int = 8
    p: int = 1

    DEFAULT: ClassVar[KdfParams]
    FAST: ClassVar[KdfParams]

    def __post_init__(self) -> None:
        problem = kdf_params_problem(self.log2_n, self.r, self.p)
        if problem is not None:
            raise InvalidRequestError(f"bad scrypt parameters: {problem}")

    def derive(self, passphrase: bytes, salt: bytes) -> bytes:
        """The 32-byte AES key for this passphrase and salt."""
        kdf = Scrypt(salt=salt, length=_AES_KEY_LEN, n=1 << self.log2_n, r=self.r, p=self.p)
        return kdf.derive(passphrase)

    def derive_into(self, passphrase: bytes | bytearray | memoryview, salt: bytes) -> bytearray:
        """``derive`` into a new bytearray the caller zeroes (no ``bytes`` copy is made)."""
        out = bytearray(_AES_KEY_LEN)
        kdf = Scrypt(salt=salt, length=_AES_KEY_LEN, n=1 << self.log2_n, r=self.r, p=self.p)
        kdf.derive_into(passphrase, out)
        return out

    def as_json(self, salt: bytes) -> dict[str, Any]:
        """The ``kdf`` object of the file."""
        return {
            "name": _KDF_NAME,
            "log2_n": self.log2_n,
            "r": self.r,
            "p": self.p,
            "salt": salt.hex(),
        }


KdfParams.DEFAULT = KdfParams(log2_n=17, r=8, p=1)
KdfParams.FAST = KdfParams(log2_n=10, r=8, p=1)


@dataclass(frozen=True)
class _Sealed:
    """A parsed keystore file: everything needed to try a passphrase."""

    address: str
    kdf: KdfParams
    salt: bytes
    nonce: bytes
    ciphertext: bytes


def _aad(address: str) -> bytes:
    """Associated data: the format version and the address the key must belong to."""
    return f"{_VERSION_FIELD}/{FORMAT_VERSION}/{address}".encode("ascii")


# ---------------------------------------------------------------------------
# Writing


def _seal(private_key: bytes, passphrase: bytes, kdf: KdfParams, address: str) -> dict[str, Any]:
    """Encrypt the key under the passphrase; the JSON document to write."""
    salt = secrets.token_bytes(_SALT_LEN)
    nonce = secrets.token_bytes(_NONCE_LEN)
    aead_key = kdf.derive(passphrase, salt)
    ciphertext = AESGCM(aead_key).encrypt(nonce, bytes(private_key), _aad(address))
    return {
        _VERSION_FIELD: FORMAT_VERSION,
        "address": address,
        "kdf": kdf.as_json(salt),
        "cipher": {"name": _CIPHER_NAME, "nonce": nonce.hex()},
        "ciphertext": ciphertext.hex(),
    }


def create_keystore(
    path: Path,
    private_key: bytes,
    passphrase: bytes,
    kdf: KdfParams = KdfParams.DEFAULT,
    *,
    overwrite: bool = False,
) -> str:
    """Encrypt ``private_key`` into a new keystore at ``path``; return its checksummed address.

    Refuses to replace an existing file unless ``overwrite`` (key rotation,
    passphrase change), so a typo cannot destroy the only copy of a funded key.
    """
    require_valid_private_key(private_key)
    _require_passphrase(passphrase)
    address = address_from_private_key(private_key)
    document = _seal(private_key, passphrase, kdf, address)
    data = (json.dumps(document, indent=2) + "\n").encode("ascii")
    write_file_atomically(Path(path), data, overwrite=overwrite)
    return address


def _require_passphrase(passphrase: bytes) -> None:
    """An empty passphrase would make the encryption decorative."""
    if not isinstance(passphrase, bytes) or not passphrase:
        raise InvalidRequestError("the passphrase must be non-empty bytes")


def write_file_atomically(path: Path, data: bytes, *, overwrite: bool) -> None:
    """Write ``data`` to ``path`` with mode 0600 so a crash leaves the old file or the new one.

    The temp file is created with O_EXCL (never follows or reuses an existing
    name) in the same directory, fsynced, published, and the directory fsynced so
    the rename itself survives a power cut.
    """
    directory = path.parent
    if not directory.is_dir():
        raise KeyStoreError(f"cannot write keystore {path}: directory {directory} does not exist")
    if not overwrite and path.exists():
        raise KeyStoreError(f"keystore {path} already exists; refusing to overwrite it")
    tmp = directory / f".{path.name}.{secrets.token_hex(8)}.tmp"
    try:
        _write_new_file(tmp, data)
        _publish(tmp, path, overwrite=overwrite)
        _fsync_directory(directory)
    except OSError as exc:
        raise KeyStoreError(f"cannot write keystore {path}: {exc.strerror}") from None
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


def _write_new_file(tmp: Path, data: bytes) -> None:
    """Create ``tmp`` 0600 (exclusively), write all of ``data`` and fsync it."""
    fd = os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY | getattr(os, "O_CLOEXEC", 0), 0o600)
    try:
        os.fchmod(fd, 0o600)  # the umask can only remove bits, but be explicit
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    finally:
        os.close(fd)


def _publish(tmp: Path, path: Path, *, overwrite: bool) -> None:
    """Move ``tmp`` to ``path``; without ``overwrite``, fail if ``path`` appeared meanwhile."""
    if overwrite:
        os.replace(tmp, path)
        return
    try:
        os.link(tmp, path)  # atomic no-clobber: fails with EEXIST if path exists
    except FileExistsError:
        raise KeyStoreError(f"keystore {path} already exists; refusing to overwrite it") from None
    except OSError as exc:
        if exc.errno not in _NO_LINK_ERRNOS:
            raise
        if path.exists():
            raise KeyStoreError(
                f"keystore {path} already exists; refusing to overwrite it"
            ) from None
        os.replace(tmp, path)


def _fsync_directory(directory: Path) -> None:
    """Make the directory entry (the rename/link) durable."""
    fd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# ---------------------------------------------------------------------------
# Reading


def _read_keystore_bytes(path: Path, *, check_mode: bool) -> bytes:
    """Read the file, refusing group/world-accessible modes when ``check_mode``.

    The mode is checked on the open descriptor (fstat), so it is the mode of the
    file actually read. Like ssh with private keys, a keystore others can read
    (offline brute force) or write (swap in another key) is refused.
    """
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        raise KeyStoreError(f"no keystore at {path}") from None
    except OSError as exc:
        raise KeyStoreError(f"cannot open keystore {path}: {exc.strerror}") from None
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise KeyStoreError(f"keystore {path} is not a regular file")
        if check_mode and mode & _INSECURE_MODE_BITS:
            raise KeyStoreError(
                f"keystore {path} is accessible by group/others (mode {stat.S_IMODE(mode):04o}); "
                f"run: chmod 600 {path}"
            )
        with os.fdopen(os.dup(fd), "rb") as f:
            data = f.read(_MAX_FILE_BYTES + 1)
    except OSError as exc:
        raise KeyStoreError(f"cannot read keystore {path}: {exc.strerror}") from None
    finally:
        os.close(fd)
    if len(data) > _MAX_FILE_BYTES:
        raise KeyStoreError(f"keystore {path} is too large to be a keystore")
    return data


def _parse_json_object(path: Path, data: bytes) -> dict[str, Any]:
    """The top-level JSON object, or KeyStoreError (no content quoted)."""
    try:
        document = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        document = None
    if not isinstance(document, dict):
        raise KeyStoreError(f"keystore {path} is malformed: not a JSON object")
    return document


def _check_version(path: Path, document: dict[str, Any]) -> None:
    """Only version 1 is known; anything else is refused, never guessed at."""
    version = document.get(_VERSION_FIELD)
    if type(version) is not int:
        raise KeyStoreError(f"{path} is not a walletd keystore (no {_VERSION_FIELD} version)")
    if version != FORMAT_VERSION:
        raise KeyStoreError(f"keystore {path} has unsupported version {version}")


def _hex_field(path: Path, obj: dict[str, Any], name: str, length: int | None) -> bytes:
    """A hex-encoded bytes field of the expected length."""
    value = obj.get(name)
    raw: bytes | None = None
    if isinstance(value, str):
        with contextlib.suppress(ValueError):
            raw = bytes.fromhex(value)
    if raw is None or (length is not None and len(raw) != length):
        raise KeyStoreError(f"keystore {path} is malformed: bad {name}")
    return raw


def _int_field(path: Path, obj: dict[str, Any], name: str) -> int:
    """An integer field (JSON true/false and floats are refused)."""
    value = obj.get(name)
    if type(value) is not int:
        raise KeyStoreError(f"keystore {path} is malformed: bad {name}")
    return value


def _sub_object(path: Path, document: dict[str, Any], name: str, kind: str) -> dict[str, Any]:
    """The ``kdf`` or ``cipher`` object, checking its algorithm name."""
    obj = document.get(name)
    if not isinstance(obj, dict) or obj.get("name") != kind:
        raise KeyStoreError(f"keystore {path} is malformed: {name} must be {kind}")
    return obj


def _parse_address(path: Path, document: dict[str, Any]) -> str:
    """The bound address; must already be in checksummed form."""
    address = document.get("address")
    if not isinstance(address, str) or not is_checksum_address(address):
        raise KeyStoreError(f"keystore {path} is malformed: bad address")
    return address


def _parse(path: Path, data: bytes) -> _Sealed:
    """Validate every field strictly before any expensive work."""
    document = _parse_json_object(path, data)
    _check_version(path, document)
    address = _parse_address(path, document)
    kdf_obj = _sub_object(path, document, "kdf", _KDF_NAME)
    log2_n, r, p = (_int_field(path, kdf_obj, name) for name in ("log2_n", "r", "p"))
    problem = kdf_params_problem(log2_n, r, p)
    if problem is not None:
        raise KeyStoreError(f"keystore {path} is malformed: {problem}")
    cipher_obj = _sub_object(path, document, "cipher", _CIPHER_NAME)
    return _Sealed(
        address=address,
        kdf=KdfParams(log2_n=log2_n, r=r, p=p),
        salt=_hex_field(path, kdf_obj, "salt", _SALT_LEN),
        nonce=_hex_field(path, cipher_obj, "nonce", _NONCE_LEN),
        ciphertext=_hex_field(path, document, "ciphertext", PRIVATE_KEY_LEN + _TAG_LEN),
    )


def read_address(path: Path) -> str:
    """The address a keystore holds, without the passphrase (it is stored in clear)."""
    path = Path(path)
    document = _parse_json_object(path, _read_keystore_bytes(path, check_mode=False))
    _check_version(path, document)
    return _parse_address(path, document)


def unlock(path: Path, passphrase: bytes) -> bytes:
    """Decrypt the keystore; return the 32-byte private key.

    WrongPassphraseError when the tag does not verify (a wrong passphrase, or an
    edited address/ciphertext/KDF field: the two cannot be told apart); KeyStoreError
    for a missing, unreadable, too-open, malformed or unknown-version file, or one
    whose key does not belong to its bound address.
    """
    path = Path(path)
    sealed = _parse(path, _read_keystore_bytes(path, check_mode=True))
    aead_key = sealed.kdf.derive(passphrase, sealed.salt)
    try:
        private_key: bytes | None = AESGCM(aead_key).decrypt(
            sealed.nonce, sealed.ciphertext, _aad(sealed.address)
        )
    except InvalidTag:  # raised below, outside the handler, so no exception context
        private_key = None
    if private_key is None:
        raise WrongPassphraseError(f"wrong passphrase for {path}")
    if not is_valid_private_key(private_key) or (
        address_from_private_key(private_key) != sealed.address
    ):
        raise KeyStoreError(f"keystore {path} is corrupt: its key does not match its address")
    return private_key


def unlock_secret(path: Path, passphrase: bytes | bytearray | memoryview) -> SecretBuffer:
    """Like ``unlock``, but decrypt straight into a new SecretBuffer (the daemon's one copy).

    The AES key derived from the passphrase is written into a bytearray that is
    zeroed before returning; the plaintext is written by OpenSSL into the
    (mlocked) buffer and nowhere else that Python allocates.
    """
    path = Path(path)
    sealed = _parse(path, _read_keystore_bytes(path, check_mode=True))
    aead_key = sealed.kdf.derive_into(passphrase, sealed.salt)
    # The SecretBuffer is larger than the key: update_into wants block_size - 1 spare bytes.
    secret = SecretBuffer(PRIVATE_KEY_LEN + 16)
    ok = False
    try:
        body, tag = sealed.ciphertext[:-_TAG_LEN], sealed.ciphertext[-_TAG_LEN:]
        decryptor = Cipher(algorithms.AES(aead_key), modes.GCM(sealed.nonce, tag)).decryptor()
        decryptor.authenticate_additional_data(_aad(sealed.address))
        decryptor.update_into(body, secret.view())
        try:
            decryptor.finalize()
        except InvalidTag:
            raise WrongPassphraseError(f"wrong passphrase for {path}") from None
        if not secret_is_valid(secret) or address_of_secret(secret) != sealed.address:
            raise KeyStoreError(f"keystore {path} is corrupt: its key does not match its address")
        ok = True
        return secret
    finally:
        wipe_bytearray(aead_key)
        if not ok:
            secret.wipe()


def change_passphrase(
    path: Path, old: bytes, new: bytes, kdf: KdfParams = KdfParams.DEFAULT
) -> str:
    """Re-encrypt the key under a new passphrase (fresh salt and nonce); return the address.

    The replacement is atomic, so a crash leaves either the old or the new file.
    """
    path = Path(path)
    _require_passphrase(new)
    private_key = unlock(path, old)
    return create_keystore(path, private_key, new, kdf, overwrite=True)


# ---------------------------------------------------------------------------
# Import and generation


def _read_small_file(path: Path, what: str, limit: int) -> bytes:
    """Read a small input file; KeyStoreError names the path, never the content."""
    try:
        with Path(path).open("rb") as f:
            data = f.read(limit + 1)
    except FileNotFoundError:
        raise KeyStoreError(f"no {what} at {path}") from None
    except OSError as exc:
        raise KeyStoreError(f"cannot read {what} {path}: {exc.strerror}") from None
    if len(data) > limit:
        raise InvalidRequestError(f"{what} {path} is too large")
    return data


def import_v3_keystore(v3_json_path: Path, v3_passphrase: bytes) -> bytes:
    """The private key of an Ethereum V3 keystore (geth, MetaMask, eth-account export).

    The file's own MAC check tells a wrong passphrase (WrongPassphraseError) from
    a file that is not a V3 keystore (InvalidRequestError).
    """
    from eth_account import Account  # imported here: heavy, and only import needs it

    path = Path(v3_json_path)
    document = _v3_document(path)
    try:
        # eth-account annotates the password as str but encodes only str input;
        # bytes pass through unchanged, which keeps non-UTF-8 passphrases usable.
        key: bytes | None = bytes(Account.decrypt(document, v3_passphrase))  # type: ignore[arg-type]
        failure = ""
    except ValueError as exc:  # eth_keyfile raises ValueError subclasses
        key, failure = None, "mac" if "mismatch" in str(exc).lower() else "format"
    except (KeyError, TypeError, NotImplementedError):
        key, failure = None, "format"
    if failure == "mac":
        raise WrongPassphraseError(f"wrong passphrase for V3 keystore {path}")
    if key is None or not is_valid_private_key(key):
        raise InvalidRequestError(f"{path} is not a usable V3 keystore")
    _check_v3_address(path, document, key)
    return key


def _v3_document(path: Path) -> dict[str, Any]:
    """The V3 JSON object (version 3 only; eth-account's V4 is not a wallet format)."""
    data = _read_small_file(path, "V3 keystore", _MAX_FILE_BYTES)
    try:
        document = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        document = None
    if not isinstance(document, dict) or document.get("version") != 3:
        raise InvalidRequestError(f"{path} is not a V3 keystore JSON")
    return document


def _check_v3_address(path: Path, document: dict[str, Any], key: bytes) -> None:
    """If the V3 file names an address, the key must belong to it (catches swapped files)."""
    stated = document.get("address")
    if stated is None:
        return
    actual = address_from_private_key(key)
    if not isinstance(stated, str) or stated.lower().removeprefix("0x") != actual[2:].lower():
        raise InvalidRequestError(f"V3 keystore {path}: key does not match its address field")


def read_hex_key_file(path: Path) -> bytes:
    """A private key written as 64 hex digits (optional 0x, surrounding whitespace).

    Errors never quote the content: it is, or is close to, a private key.
    """
    path = Path(path)
    data = _read_small_file(path, "key file", 1024)
    text: str | None = None
    with contextlib.suppress(UnicodeDecodeError):
        text = data.decode("ascii").strip()
    if text is not None and text[:2].lower() == "0x":
        text = text[2:]
    key: bytes | None = None
    if text is not None and len(text) == 2 * PRIVATE_KEY_LEN and set(text) <= _HEX_DIGITS:
        key = bytes.fromhex(text)
    if key is None:
        raise InvalidRequestError(f"key file {path} does not hold 64 hex digits (0x optional)")
    if not is_valid_private_key(key):
        raise InvalidRequestError(f"key file {path} does not hold a valid secp256k1 private key")
    return key


def generate_private_key() -> bytes:
    """A fresh key from the OS CSPRNG, redrawn in the (2**-128) case it is out of range."""
    while True:
        candidate = secrets.token_bytes(PRIVATE_KEY_LEN)
        if is_valid_private_key(candidate):
            return candidate
