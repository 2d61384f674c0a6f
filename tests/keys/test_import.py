"""Importing a key: an Ethereum V3 keystore, or a hex key in a file."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

import pytest
from eth_account import Account

from walletd.errors import InvalidRequestError, KeyStoreError, WrongPassphraseError
from walletd.keys.keystore import import_v3_keystore, read_hex_key_file
from walletd.keys.signer import SECP256K1_N

from .conftest import TEST_KEY

V3_PASSPHRASE = "v3 passphrase"


def _write_v3(
    tmp_path: Path, kdf: Literal["scrypt", "pbkdf2"] = "scrypt", **overrides: object
) -> Path:
    iterations = 1024 if kdf == "scrypt" else 1000
    doc = Account.encrypt(TEST_KEY, V3_PASSPHRASE, kdf=kdf, iterations=iterations)
    doc.update(overrides)
    path = tmp_path / "v3.json"
    path.write_text(json.dumps(doc))
    return path


def _no_echo(exc: BaseException, secret: str) -> None:
    assert secret.lower() not in str(exc).lower()
    assert secret.lower() not in repr(exc).lower()
    assert exc.__context__ is None
    assert exc.__cause__ is None
    assert "\n" not in str(exc)


@pytest.mark.parametrize("kdf", ["scrypt", "pbkdf2"])
def test_v3_import_returns_the_key(tmp_path: Path, kdf: Literal["scrypt", "pbkdf2"]) -> None:
    path = _write_v3(tmp_path, kdf)
    assert import_v3_keystore(path, V3_PASSPHRASE.encode()) == TEST_KEY


def test_v3_wrong_passphrase_is_a_wrong_passphrase_error(tmp_path: Path) -> None:
    path = _write_v3(tmp_path)
    with pytest.raises(WrongPassphraseError) as info:
        import_v3_keystore(path, b"wrong")
    assert str(info.value) == f"wrong passphrase for V3 keystore {path}"
    _no_echo(info.value, TEST_KEY.hex())


def test_v3_address_field_must_match_the_key(tmp_path: Path) -> None:
    path = _write_v3(tmp_path, address="00" * 20)
    with pytest.raises(InvalidRequestError, match="does not match its address"):
        import_v3_keystore(path, V3_PASSPHRASE.encode())


@pytest.mark.parametrize(
    "content",
    [b"not json", b"[]", b'{"version": 4}', b'{"version": 3}', b'{"version": 3, "crypto": {}}'],
)
def test_non_v3_content_is_an_invalid_request(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "v3.json"
    path.write_bytes(content)
    with pytest.raises(InvalidRequestError):
        import_v3_keystore(path, b"pw")


def test_missing_v3_file_is_a_keystore_error(tmp_path: Path) -> None:
    with pytest.raises(KeyStoreError, match="no V3 keystore at"):
        import_v3_keystore(tmp_path / "absent.json", b"pw")


@pytest.mark.parametrize(
    "content",
    [
        TEST_KEY.hex(),
        "0x" + TEST_KEY.hex(),
        "0X" + TEST_KEY.hex().upper(),
        "  0x" + TEST_KEY.hex() + "\n",
        "\t" + TEST_KEY.hex() + "\r\n\r\n",
    ],
)
def test_hex_key_file_import(tmp_path: Path, content: str) -> None:
    path = tmp_path / "key.hex"
    path.write_text(content)
    assert read_hex_key_file(path) == TEST_KEY


NEAR_MISSES = [
    TEST_KEY.hex()[:-1],  # 63 digits
    TEST_KEY.hex() + "0",  # 65 digits
    TEST_KEY.hex()[:-1] + "g",  # non-hex digit
    TEST_KEY.hex()[:32] + " " + TEST_KEY.hex()[32:],  # inner space
    "0x0x" + TEST_KEY.hex(),
    TEST_KEY.hex() + "\n" + TEST_KEY.hex(),
    "",
    "\n",
]


@pytest.mark.parametrize("content", NEAR_MISSES)
def test_malformed_hex_key_file_is_refused_without_echo(tmp_path: Path, content: str) -> None:
    path = tmp_path / "key.hex"
    path.write_text(content)
    with pytest.raises(InvalidRequestError, match="64 hex digits") as info:
        read_hex_key_file(path)
    _no_echo(info.value, TEST_KEY.hex()[:16])


@pytest.mark.parametrize("value", [0, SECP256K1_N, SECP256K1_N + 1, 2**256 - 1])
def test_out_of_range_hex_key_is_refused_without_echo(tmp_path: Path, value: int) -> None:
    text = value.to_bytes(32, "big").hex()
    path = tmp_path / "key.hex"
    path.write_text(text)
    with pytest.raises(InvalidRequestError, match="valid secp256k1") as info:
        read_hex_key_file(path)
    _no_echo(info.value, text)


def test_binary_hex_key_file_is_refused_without_echo(tmp_path: Path) -> None:
    path = tmp_path / "key.hex"
    path.write_bytes(b"\xff\xfe" + TEST_KEY)
    with pytest.raises(InvalidRequestError) as info:
        read_hex_key_file(path)
    _no_echo(info.value, "fffe")


def test_oversized_hex_key_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "key.hex"
    path.write_text(TEST_KEY.hex() + " " * 4096)
    with pytest.raises(InvalidRequestError, match="too large"):
        read_hex_key_file(path)


def test_missing_hex_key_file_is_a_keystore_error(tmp_path: Path) -> None:
    with pytest.raises(KeyStoreError, match="no key file at"):
        read_hex_key_file(tmp_path / "absent.hex")
