"""The walletd keystore: encryption at rest, file format, atomic writes, refusals."""

from __future__ import annotations

import base64
import json
import os
import stat
from pathlib import Path
from typing import Any

import pytest

from walletd.errors import InvalidRequestError, KeyStoreError, WrongPassphraseError
from walletd.keys import keystore
from walletd.keys.keystore import (
    KdfParams,
    change_passphrase,
    create_keystore,
    generate_private_key,
    read_address,
    unlock,
)
from walletd.keys.signer import SECP256K1_N, address_from_private_key

from .conftest import FAST, PASSPHRASE, TEST_ADDRESS, TEST_KEY


@pytest.fixture
def ks(tmp_path: Path) -> Path:
    path = tmp_path / "key.json"
    create_keystore(path, TEST_KEY, PASSPHRASE, FAST)
    return path


def _load(path: Path) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(path.read_text())
    return doc


def _dump(path: Path, doc: dict[str, Any]) -> None:
    path.write_text(json.dumps(doc))
    path.chmod(0o600)


def _assert_leaks_nothing(exc: BaseException) -> None:
    """One line, and neither the message nor a chained exception carries key material."""
    text = str(exc) + repr(exc)
    assert "\n" not in str(exc)
    assert TEST_KEY.hex() not in text.lower()
    assert PASSPHRASE.decode() not in text
    assert exc.__cause__ is None
    assert exc.__context__ is None


def test_round_trip_returns_the_key_and_address(tmp_path: Path) -> None:
    path = tmp_path / "key.json"
    assert create_keystore(path, TEST_KEY, PASSPHRASE, FAST) == TEST_ADDRESS
    assert read_address(path) == TEST_ADDRESS
    assert unlock(path, PASSPHRASE) == TEST_KEY


def test_file_format_is_versioned_and_names_its_algorithms(ks: Path) -> None:
    doc = _load(ks)
    assert doc["walletd_keystore"] == 1
    assert doc["address"] == TEST_ADDRESS
    assert doc["kdf"]["name"] == "scrypt"
    assert (doc["kdf"]["log2_n"], doc["kdf"]["r"], doc["kdf"]["p"]) == (10, 8, 1)
    assert doc["cipher"]["name"] == "aes-256-gcm"
    assert len(bytes.fromhex(doc["ciphertext"])) == 48


def test_each_write_uses_a_fresh_salt_and_nonce(tmp_path: Path) -> None:
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    create_keystore(a, TEST_KEY, PASSPHRASE, FAST)
    create_keystore(b, TEST_KEY, PASSPHRASE, FAST)
    da, db = _load(a), _load(b)
    assert da["kdf"]["salt"] != db["kdf"]["salt"]
    assert da["cipher"]["nonce"] != db["cipher"]["nonce"]
    assert da["ciphertext"] != db["ciphertext"]


def test_wrong_passphrase_gives_one_line_wrong_passphrase_error(ks: Path) -> None:
    with pytest.raises(WrongPassphraseError) as info:
        unlock(ks, b"not the passphrase")
    assert str(info.value) == f"wrong passphrase for {ks}"
    assert info.value.reason == "WRONG_PASSPHRASE"
    _assert_leaks_nothing(info.value)


def test_file_is_mode_0600(ks: Path) -> None:
    assert stat.S_IMODE(ks.stat().st_mode) == 0o600


def test_file_is_0600_even_with_a_permissive_umask(tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        path = tmp_path / "key.json"
        create_keystore(path, TEST_KEY, PASSPHRASE, FAST)
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_file_contains_no_key_bytes_and_no_passphrase(ks: Path) -> None:
    raw = ks.read_bytes()
    forms = [
        TEST_KEY,
        TEST_KEY.hex().encode(),
        TEST_KEY.hex().upper().encode(),
        base64.b64encode(TEST_KEY),
        base64.urlsafe_b64encode(TEST_KEY),
        base64.b64encode(TEST_KEY).rstrip(b"="),
        PASSPHRASE,
        PASSPHRASE.hex().encode(),
        base64.b64encode(PASSPHRASE),
    ]
    for form in forms:
        assert form not in raw
    # No 8-byte window of the key, in any of those encodings, either.
    for i in range(len(TEST_KEY) - 8):
        assert TEST_KEY[i : i + 8].hex().encode() not in raw.lower()


def test_tampered_address_fails(ks: Path) -> None:
    other = address_from_private_key(generate_private_key())
    doc = _load(ks)
    doc["address"] = other
    _dump(ks, doc)
    with pytest.raises(WrongPassphraseError) as info:
        unlock(ks, PASSPHRASE)
    _assert_leaks_nothing(info.value)


def test_address_not_in_checksum_form_is_malformed(ks: Path) -> None:
    doc = _load(ks)
    doc["address"] = TEST_ADDRESS.lower()
    _dump(ks, doc)
    with pytest.raises(KeyStoreError, match="bad address") as info:
        unlock(ks, PASSPHRASE)
    assert not isinstance(info.value, WrongPassphraseError)


@pytest.mark.parametrize("position", [0, 31, 32, 47])
def test_tampered_ciphertext_fails(ks: Path, position: int) -> None:
    doc = _load(ks)
    ct = bytearray(bytes.fromhex(doc["ciphertext"]))
    ct[position] ^= 0x01
    doc["ciphertext"] = ct.hex()
    _dump(ks, doc)
    with pytest.raises(WrongPassphraseError) as info:
        unlock(ks, PASSPHRASE)
    _assert_leaks_nothing(info.value)


@pytest.mark.parametrize(("field", "value"), [("salt", "00" * 16), ("nonce", "00" * 12)])
def test_tampered_salt_or_nonce_fails(ks: Path, field: str, value: str) -> None:
    doc = _load(ks)
    target = doc["kdf"] if field == "salt" else doc["cipher"]
    target[field] = value
    _dump(ks, doc)
    with pytest.raises(WrongPassphraseError):
        unlock(ks, PASSPHRASE)


def test_tampered_kdf_cost_fails(ks: Path) -> None:
    doc = _load(ks)
    doc["kdf"]["log2_n"] = 11
    _dump(ks, doc)
    with pytest.raises(WrongPassphraseError):
        unlock(ks, PASSPHRASE)


@pytest.mark.parametrize("version", [0, 2, 99])
def test_unknown_version_is_refused(ks: Path, version: int) -> None:
    doc = _load(ks)
    doc["walletd_keystore"] = version
    _dump(ks, doc)
    with pytest.raises(KeyStoreError, match=f"unsupported version {version}") as info:
        unlock(ks, PASSPHRASE)
    assert not isinstance(info.value, WrongPassphraseError)
    with pytest.raises(KeyStoreError):
        read_address(ks)


@pytest.mark.parametrize("version", [None, "1", True, 1.0])
def test_missing_or_non_integer_version_is_not_a_keystore(ks: Path, version: object) -> None:
    doc = _load(ks)
    doc["walletd_keystore"] = version
    _dump(ks, doc)
    with pytest.raises(KeyStoreError, match="not a walletd keystore"):
        unlock(ks, PASSPHRASE)


def test_version_is_bound_in_the_associated_data() -> None:
    assert keystore._aad(TEST_ADDRESS) == f"walletd_keystore/1/{TEST_ADDRESS}".encode()


def test_key_that_does_not_match_the_bound_address_is_refused(tmp_path: Path) -> None:
    other = address_from_private_key(generate_private_key())
    doc = keystore._seal(TEST_KEY, PASSPHRASE, FAST, other)
    path = tmp_path / "key.json"
    _dump(path, doc)
    with pytest.raises(KeyStoreError, match="does not match its address") as info:
        unlock(path, PASSPHRASE)
    assert not isinstance(info.value, WrongPassphraseError)
    _assert_leaks_nothing(info.value)


@pytest.mark.parametrize(
    "content",
    [b"", b"not json", b"[1, 2]", b"\xff\xfe", b'{"walletd_keystore": 1}'],
)
def test_malformed_file_is_a_keystore_error(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "key.json"
    path.write_bytes(content)
    path.chmod(0o600)
    with pytest.raises(KeyStoreError) as info:
        unlock(path, PASSPHRASE)
    assert not isinstance(info.value, WrongPassphraseError)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    ("section", "field", "value"),
    [
        ("kdf", "name", "pbkdf2"),
        ("cipher", "name", "aes-128-ctr"),
        ("kdf", "log2_n", 40),  # would need terabytes: refused before deriving
        ("kdf", "r", 0),
        ("kdf", "p", True),
        ("kdf", "salt", "zz"),
        ("cipher", "nonce", "00" * 11),
        (None, "ciphertext", "00" * 47),
    ],
)
def test_bad_fields_are_refused_before_decryption(
    ks: Path, section: str | None, field: str, value: object
) -> None:
    doc = _load(ks)
    (doc[section] if section else doc)[field] = value
    _dump(ks, doc)
    with pytest.raises(KeyStoreError, match="malformed") as info:
        unlock(ks, PASSPHRASE)
    assert not isinstance(info.value, WrongPassphraseError)


def test_missing_file_is_a_keystore_error(tmp_path: Path) -> None:
    with pytest.raises(KeyStoreError, match="no keystore at"):
        unlock(tmp_path / "absent.json", PASSPHRASE)
    with pytest.raises(KeyStoreError, match="no keystore at"):
        read_address(tmp_path / "absent.json")


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o620, 0o644])
def test_group_or_world_accessible_file_is_refused_on_unlock(ks: Path, mode: int) -> None:
    ks.chmod(mode)
    with pytest.raises(KeyStoreError, match="chmod 600"):
        unlock(ks, PASSPHRASE)
    # The address is public: reading it does not need a private file.
    assert read_address(ks) == TEST_ADDRESS


def test_owner_read_only_mode_is_accepted(ks: Path) -> None:
    ks.chmod(0o400)
    assert unlock(ks, PASSPHRASE) == TEST_KEY


def test_existing_keystore_is_not_overwritten(ks: Path) -> None:
    before = ks.read_bytes()
    with pytest.raises(KeyStoreError, match="already exists"):
        create_keystore(ks, generate_private_key(), PASSPHRASE, FAST)
    assert ks.read_bytes() == before


def test_overwrite_true_replaces_the_key(ks: Path) -> None:
    new_key = generate_private_key()
    address = create_keystore(ks, new_key, b"new", FAST, overwrite=True)
    assert address == address_from_private_key(new_key)
    assert unlock(ks, b"new") == new_key
    assert stat.S_IMODE(ks.stat().st_mode) == 0o600


def test_no_clobber_holds_when_the_file_appears_during_the_write(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "key.json"
    real_write = keystore._write_new_file

    def write_then_race(tmp: Path, data: bytes) -> None:
        real_write(tmp, data)
        path.write_text("someone else's")

    monkeypatch.setattr(keystore, "_write_new_file", write_then_race)
    with pytest.raises(KeyStoreError, match="already exists"):
        create_keystore(path, TEST_KEY, PASSPHRASE, FAST)
    assert path.read_text() == "someone else's"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["key.json"]


def test_atomic_write_leaves_no_temp_files(tmp_path: Path) -> None:
    path = tmp_path / "key.json"
    create_keystore(path, TEST_KEY, PASSPHRASE, FAST)
    create_keystore(path, TEST_KEY, PASSPHRASE, FAST, overwrite=True)
    change_passphrase(path, PASSPHRASE, b"other", FAST)
    with pytest.raises(KeyStoreError):
        create_keystore(path, TEST_KEY, PASSPHRASE, FAST)
    assert [p.name for p in tmp_path.iterdir()] == ["key.json"]


def test_failed_write_keeps_the_old_file_and_leaves_no_temp_file(
    ks: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = ks.read_bytes()

    def broken_fsync(fd: int) -> None:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(os, "fsync", broken_fsync)
    with pytest.raises(KeyStoreError, match="cannot write keystore") as info:
        create_keystore(ks, generate_private_key(), PASSPHRASE, FAST, overwrite=True)
    assert "\n" not in str(info.value)
    assert ks.read_bytes() == before
    assert [p.name for p in ks.parent.iterdir()] == [ks.name]


def test_missing_directory_is_a_keystore_error(tmp_path: Path) -> None:
    with pytest.raises(KeyStoreError, match="does not exist"):
        create_keystore(tmp_path / "nope" / "key.json", TEST_KEY, PASSPHRASE, FAST)


@pytest.mark.parametrize(
    "bad_key", [b"", b"\x00" * 32, SECP256K1_N.to_bytes(32, "big"), TEST_KEY[:31], TEST_KEY + b"\0"]
)
def test_invalid_private_key_is_refused_without_echo(tmp_path: Path, bad_key: bytes) -> None:
    with pytest.raises(InvalidRequestError) as info:
        create_keystore(tmp_path / "key.json", bad_key, PASSPHRASE, FAST)
    assert bad_key.hex() not in str(info.value) or not bad_key
    assert not (tmp_path / "key.json").exists()


def test_empty_passphrase_is_refused(tmp_path: Path) -> None:
    with pytest.raises(InvalidRequestError, match="non-empty"):
        create_keystore(tmp_path / "key.json", TEST_KEY, b"", FAST)


def test_change_passphrase_rewraps_the_same_key(ks: Path) -> None:
    salt_before = _load(ks)["kdf"]["salt"]
    assert change_passphrase(ks, PASSPHRASE, b"new passphrase", FAST) == TEST_ADDRESS
    assert unlock(ks, b"new passphrase") == TEST_KEY
    with pytest.raises(WrongPassphraseError):
        unlock(ks, PASSPHRASE)
    assert _load(ks)["kdf"]["salt"] != salt_before
    assert stat.S_IMODE(ks.stat().st_mode) == 0o600


def test_change_passphrase_with_wrong_old_passphrase_changes_nothing(ks: Path) -> None:
    before = ks.read_bytes()
    with pytest.raises(WrongPassphraseError):
        change_passphrase(ks, b"wrong", b"new", FAST)
    assert ks.read_bytes() == before


def test_change_passphrase_can_raise_the_kdf_cost(ks: Path) -> None:
    change_passphrase(ks, PASSPHRASE, PASSPHRASE, KdfParams(log2_n=11))
    assert _load(ks)["kdf"]["log2_n"] == 11
    assert unlock(ks, PASSPHRASE) == TEST_KEY


def test_default_kdf_is_memory_hard_and_fast_is_cheap() -> None:
    assert KdfParams.DEFAULT.log2_n >= 15
    assert 128 * KdfParams.DEFAULT.r * (1 << KdfParams.DEFAULT.log2_n) >= 64 * 1024 * 1024
    assert KdfParams.FAST.log2_n == 10


@pytest.mark.parametrize(
    ("log2_n", "r", "p"),
    [(9, 8, 1), (25, 1, 1), (20, 16, 1), (10, 0, 1), (10, 8, 17), (True, 8, 1)],
)
def test_kdf_params_outside_bounds_are_refused(log2_n: int, r: int, p: int) -> None:
    with pytest.raises(InvalidRequestError):
        KdfParams(log2_n=log2_n, r=r, p=p)


def test_generated_keys_are_valid_and_distinct() -> None:
    keys = {generate_private_key() for _ in range(20)}
    assert len(keys) == 20
    for k in keys:
        assert len(k) == 32
        assert 0 < int.from_bytes(k, "big") < SECP256K1_N
