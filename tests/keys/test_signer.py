"""LocalSigner: correct Ethereum signatures, and it never shows or exports the key."""

from __future__ import annotations

import copy
import pickle

import pytest
from coincurve import PublicKey
from eth_account import Account
from hypothesis import given, settings, strategies as st

from walletd.errors import InvalidRequestError
from walletd.keys.keystore import generate_private_key
from walletd.keys.signer import SECP256K1_N, LocalSigner, address_from_private_key

from .conftest import TEST_ADDRESS, TEST_KEY

SIGNER = LocalSigner(TEST_KEY)
DIGEST = bytes(range(32))


def _recover_with_coincurve(digest: bytes, signature: bytes) -> str:
    recoverable = signature[:64] + bytes((signature[64] - 27,))
    public = PublicKey.from_signature_and_message(recoverable, digest, hasher=None)
    from eth_hash.auto import keccak
    from eth_utils.address import to_checksum_address

    return str(to_checksum_address(keccak(public.format(compressed=False)[1:])[-20:]))


def test_address_is_checksummed_and_matches_eth_account() -> None:
    assert SIGNER.address == TEST_ADDRESS
    assert SIGNER.address == Account.from_key(TEST_KEY).address


def test_signature_recovers_to_the_address() -> None:
    sig = SIGNER.sign_hash(DIGEST)
    assert Account._recover_hash(DIGEST, signature=sig) == TEST_ADDRESS
    assert _recover_with_coincurve(DIGEST, sig) == TEST_ADDRESS


def test_signature_equals_eth_account_unsafe_sign_hash() -> None:
    for key in (TEST_KEY, generate_private_key()):
        expected = Account.unsafe_sign_hash(DIGEST, key).signature
        assert LocalSigner(key).sign_hash(DIGEST) == bytes(expected)


def test_signature_is_65_bytes_low_s_with_legacy_v() -> None:
    sig = SIGNER.sign_hash(DIGEST)
    assert len(sig) == 65
    assert int.from_bytes(sig[32:64], "big") <= SECP256K1_N // 2
    assert sig[64] in (27, 28)


@settings(max_examples=200, deadline=None)
@given(digest=st.binary(min_size=32, max_size=32))
def test_random_digests_recover_to_the_address(digest: bytes) -> None:
    sig = SIGNER.sign_hash(digest)
    assert sig[64] in (27, 28)
    assert int.from_bytes(sig[32:64], "big") <= SECP256K1_N // 2
    assert _recover_with_coincurve(digest, sig) == TEST_ADDRESS


@settings(max_examples=25, deadline=None)
@given(
    key_int=st.integers(min_value=1, max_value=SECP256K1_N - 1),
    digest=st.binary(min_size=32, max_size=32),
)
def test_any_valid_key_signs_like_eth_account(key_int: int, digest: bytes) -> None:
    key = key_int.to_bytes(32, "big")
    signer = LocalSigner(key)
    assert signer.address == address_from_private_key(key)
    assert signer.sign_hash(digest) == bytes(Account.unsafe_sign_hash(digest, key).signature)


@pytest.mark.parametrize("digest", [b"", b"\x00" * 31, b"\x00" * 33])
def test_digest_must_be_32_bytes(digest: bytes) -> None:
    with pytest.raises(InvalidRequestError, match="32 bytes"):
        SIGNER.sign_hash(digest)


def test_repr_and_str_show_only_the_address() -> None:
    for text in (repr(SIGNER), str(SIGNER), f"{SIGNER}", f"{SIGNER!r}"):
        assert text == f"LocalSigner(address={TEST_ADDRESS})"
        assert TEST_KEY.hex() not in text.lower()


def test_signer_cannot_be_pickled_or_copied() -> None:
    for protocol in range(pickle.HIGHEST_PROTOCOL + 1):
        with pytest.raises(TypeError, match="cannot be pickled"):
            pickle.dumps(SIGNER, protocol=protocol)
    with pytest.raises(TypeError):
        copy.copy(SIGNER)
    with pytest.raises(TypeError):
        copy.deepcopy(SIGNER)


def test_signer_has_no_attribute_dict_holding_the_key() -> None:
    assert not hasattr(SIGNER, "__dict__")
    assert not any(isinstance(getattr(SIGNER, name, None), bytes) for name in LocalSigner.__slots__)


@pytest.mark.parametrize(
    "bad_key",
    [b"", b"\x00" * 32, SECP256K1_N.to_bytes(32, "big"), b"\xff" * 32, TEST_KEY[:31]],
)
def test_invalid_key_is_refused_without_echo(bad_key: bytes) -> None:
    with pytest.raises(InvalidRequestError) as info:
        LocalSigner(bad_key)
    if bad_key:
        assert bad_key.hex() not in str(info.value)
