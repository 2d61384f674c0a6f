"""Fixtures for key-custody tests: a fixed test key and a fast KDF."""

from __future__ import annotations

import pytest

from walletd.keys.keystore import KdfParams

# A well-known test key (anvil/hardhat account #0): never holds real funds.
TEST_KEY = bytes.fromhex("ac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80")
TEST_ADDRESS = "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266"
PASSPHRASE = b"correct horse battery staple"
FAST = KdfParams.FAST


@pytest.fixture
def key() -> bytes:
    return TEST_KEY
