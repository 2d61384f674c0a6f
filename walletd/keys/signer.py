"""The in-memory signer: the only object that holds the unlocked private key.

The key lives in one ``SecretBuffer`` (``walletd.keys.memory``: mlocked where
the OS allows, wiped on ``close``) and libsecp256k1 signs straight from it
through coincurve's bindings, so no Python ``bytes`` copy of the key is made
for signing. A repr, a log line, a pickle or a copy cannot carry it out:
``repr`` shows the address only, and pickling/copying raise. ``sign_hash`` is
the payment hot path, so it does the least work possible around libsecp256k1.
"""

from __future__ import annotations

from typing import Any, NoReturn

from coincurve import PrivateKey
from coincurve._libsecp256k1 import ffi, lib
from coincurve.context import GLOBAL_CONTEXT
from coincurve.ecdsa import serialize_recoverable
from coincurve.utils import DEFAULT_NONCE
from eth_hash.auto import keccak
from eth_utils.address import to_checksum_address

from walletd.errors import InvalidRequestError
from walletd.keys.memory import SecretBuffer

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


def _secret_view(secret: SecretBuffer) -> memoryview:
    """The first 32 bytes of ``secret``: the key (the buffer may be longer)."""
    return secret.view()[:PRIVATE_KEY_LEN]


def secret_is_valid(secret: SecretBuffer) -> bool:
    """Whether the buffer holds a usable scalar, checked by libsecp256k1 in place."""
    if secret.size < PRIVATE_KEY_LEN:
        return False
    return bool(
        lib.secp256k1_ec_seckey_verify(GLOBAL_CONTEXT.ctx, ffi.from_buffer(_secret_view(secret)))
    )


def address_of_secret(secret: SecretBuffer) -> str:
    """The checksummed address of the key in ``secret``, computed without copying it."""
    if not secret_is_valid(secret):
        raise InvalidRequestError("private key is not a valid 32-byte secp256k1 scalar")
    ctx = GLOBAL_CONTEXT.ctx
    pubkey = ffi.new("secp256k1_pubkey *")
    if not lib.secp256k1_ec_pubkey_create(ctx, pubkey, ffi.from_buffer(_secret_view(secret))):
        raise InvalidRequestError("private key is not a valid 32-byte secp256k1 scalar")
    out = ffi.new("unsigned char[65]")
    out_len = ffi.new("size_t *", 65)
    lib.secp256k1_ec_pubkey_serialize(ctx, out, out_len, pubkey, lib.SECP256K1_EC_UNCOMPRESSED)
    public = bytes(ffi.buffer(out, out_len[0]))[1:]
    return str(to_checksum_address(keccak(public)[-20:]))


def secret_from_bytes(private_key: bytes) -> SecretBuffer:
    """A new SecretBuffer holding a copy of ``private_key`` (for keys the caller already has)."""
    require_valid_private_key(private_key)
    secret = SecretBuffer(PRIVATE_KEY_LEN)
    secret.view()[:] = private_key
    return secret


class LocalSigner:
    """Signs 32-byte digests with the wallet key; shows and exports nothing but the address.

    Built from ``bytes`` (copied into its own SecretBuffer: the caller's bytes
    stay where they are), or with ``from_secret`` from a SecretBuffer it then
    owns, which is how the daemon keeps a single copy of the key.
    """

    __slots__ = ("_address", "_seckey", "_secret")

    def __init__(self, private_key: bytes | SecretBuffer) -> None:
        if isinstance(private_key, SecretBuffer):
            secret = private_key
        else:
            secret = secret_from_bytes(private_key)
        self._address = address_of_secret(secret)
        self._secret = secret
        self._seckey = ffi.from_buffer(_secret_view(secret))

    @classmethod
    def from_secret(cls, secret: SecretBuffer) -> LocalSigner:
        """A signer over ``secret`` (not copied; ``close`` wipes it)."""
        return cls(secret)

    @property
    def memory_locked(self) -> bool:
        """Whether the key's pages are mlocked."""
        return self._secret.locked

    def close(self) -> None:
        """Wipe the key; the signer cannot sign afterwards."""
        self._secret.wipe()

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
        signature = ffi.new("secp256k1_ecdsa_recoverable_signature *")
        nonce_fn, nonce_data = DEFAULT_NONCE
        if not lib.secp256k1_ecdsa_sign_recoverable(
            GLOBAL_CONTEXT.ctx, signature, digest, self._seckey, nonce_fn, nonce_data
        ):
            raise InvalidRequestError("the key could not sign (wiped, or invalid)")
        sig = serialize_recoverable(signature, GLOBAL_CONTEXT)
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
