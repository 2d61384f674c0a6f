"""The in-memory signer: the only object that holds the unlocked private key.

The key lives inside a coincurve ``PrivateKey`` and nowhere else in this object,
so a repr, a log line, a pickle or a copy cannot carry it out: ``repr`` shows the
address only, and pickling/copying raise. ``sign_hash`` is the payment hot path,
so it does the least work possible around libsecp256k1.
"""

from __future__ import annotations

from typing import Any, NoReturn

from coincurve import PrivateKey
from eth_hash.auto import keccak
from eth_utils.address import to_checksum_address

from walletd.errors import InvalidRequestError

# The order of the secp256k1 group: a private key is a scalar in [1, N).
SECP256K1_N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
PRIVATE_KEY_LEN = 32
DIGEST_LEN = 32
_V_OFFSET = 27  # Ethereum's legacy v = recovery id + 27


def is_valid_private_key(private_key: bytes) -> bool:
    """Whether ``private_key`` is 32 bytes and a scalar in [1, N) (else it signs nothing)."""
    if not isinstance(private_key, bytes | bytearray) or len(private_key) != PRIVATE_KEY_LEN:
        return False
    return 0 < int.from_bytes(private_key, "big") < SECP256K1_N


def require_valid_private_key(private_key: bytes) -> None:
    """Raise InvalidRequestError (which never quotes the key) unless the key is usable."""
    if not is_valid_private_key(private_key):
        raise InvalidRequestError("private key is not a valid 32-byte secp256k1 scalar")


def _address_of(key: PrivateKey) -> str:
    """Ethereum address: the last 20 bytes of keccak256 of the uncompressed public key."""
    public = key.public_key.format(compressed=False)[1:]
    return str(to_checksum_address(keccak(public)[-20:]))


def address_from_private_key(private_key: bytes) -> str:
    """The checksummed address of a private key, for binding it in the keystore."""
    require_valid_private_key(private_key)
    return _address_of(PrivateKey(bytes(private_key)))


class LocalSigner:
    """Signs 32-byte digests with the wallet key; shows and exports nothing but the address."""

    __slots__ = ("_address", "_key")

    def __init__(self, private_key: bytes) -> None:
        require_valid_private_key(private_key)
        self._key = PrivateKey(bytes(private_key))
        self._address = _address_of(self._key)

    @property
    def address(self) -> str:
        """The checksummed Ethereum address of the key."""
        return self._address

    def sign_hash(self, digest: bytes) -> bytes:
        """Sign a prehashed digest: 65 bytes r‖s‖v, low-s, v in {27, 28}.

        libsecp256k1 always produces low-s signatures, which is what EIP-2 and the
        USDC contract's ``ecrecover`` path expect.
        """
        if len(digest) != DIGEST_LEN:
            raise InvalidRequestError(f"digest must be {DIGEST_LEN} bytes, got {len(digest)}")
        sig = self._key.sign_recoverable(digest, hasher=None)
        return sig[:64] + bytes((sig[64] + _V_OFFSET,))

    def __repr__(self) -> str:
        return f"LocalSigner(address={self._address})"

    __str__ = __repr__

    def _refuse_export(self, *_: Any) -> NoReturn:
        """Pickling or copying would put the key somewhere we do not control."""
        raise TypeError("LocalSigner holds a private key and cannot be pickled or copied")

    __reduce__ = _refuse_export
    __reduce_ex__ = _refuse_export
    __getstate__ = _refuse_export
    __copy__ = _refuse_export
    __deepcopy__ = _refuse_export
