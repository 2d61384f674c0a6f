"""SecretBuffer and the signer built on it: one locked copy of the key, wiped on close."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from walletd.errors import InvalidRequestError, WrongPassphraseError
from walletd.keys import keystore
from walletd.keys.memory import SecretBuffer, wipe_bytearray
from walletd.keys.signer import LocalSigner


def test_a_secret_buffer_is_locked_where_the_os_allows_and_wipes_to_zero() -> None:
    secret = SecretBuffer(32)
    secret.view()[:] = b"\x07" * 32
    assert secret.locked  # RLIMIT_MEMLOCK allows a page on every CI host we run
    secret.wipe()
    assert bytes(secret.view()) == bytes(32)
    assert not secret.locked


def test_the_daemon_unlock_decrypts_into_one_buffer_the_signer_signs_from(tmp_path: Path) -> None:
    key = os.urandom(32)
    path = tmp_path / "key.json"
    address = keystore.create_keystore(path, key, b"pw", keystore.KdfParams.FAST)
    secret = keystore.unlock_secret(path, bytearray(b"pw"))
    signer = LocalSigner.from_secret(secret)
    assert signer.address == address and signer.memory_locked
    digest = b"\x01" * 32
    assert signer.sign_hash(digest) == LocalSigner(key).sign_hash(digest)
    signer.close()
    assert bytes(secret.view()) == bytes(secret.size)
    with pytest.raises(InvalidRequestError):
        signer.sign_hash(digest)
    with pytest.raises(WrongPassphraseError):
        keystore.unlock_secret(path, bytearray(b"wrong"))


def test_wipe_bytearray_zeroes_in_place() -> None:
    buf = bytearray(b"passphrase")
    view = memoryview(buf)
    wipe_bytearray(buf)
    assert bytes(view) == bytes(10)
