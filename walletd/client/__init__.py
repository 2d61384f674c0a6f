"""walletd.client: call the walletd daemon from a service, sync or asyncio.

    from walletd.client import WalletClient, BudgetExceededError

    with WalletClient() as wallet:           # $WALLETD_SOCKET, $WALLETD_TOKEN_FILE
        receipt = wallet.pay(key, "GET", url, payment_required=header)

This package is the base install: it needs grpcio and protobuf only, and must
never import the daemon's modules (database, keys, service layer).
"""

from __future__ import annotations

from walletd.client._errors import error_from_rpc, map_rpc_errors
from walletd.client._wallet import (
    AsyncWalletClient,
    ClientTls,
    WalletClient,
    default_socket_path,
)
from walletd.domain.budget import BudgetState, WindowState
from walletd.domain.payment import PaymentView, PayReceipt
from walletd.errors import (
    AuthError,
    BudgetExceededError,
    ChainError,
    DaemonUnavailableError,
    FrozenError,
    IdempotencyConflictError,
    InsufficientFundsError,
    InvalidDemandError,
    InvalidRequestError,
    KeyStoreError,
    NotFoundError,
    PermissionDeniedError,
    PolicyDeniedError,
    RefusedError,
    SchemaOutOfDateError,
    StorageError,
    UnauthenticatedError,
    WalletdError,
    WrongPassphraseError,
)

__all__ = [
    "AsyncWalletClient",
    "AuthError",
    "BudgetExceededError",
    "BudgetState",
    "ChainError",
    "ClientTls",
    "DaemonUnavailableError",
    "FrozenError",
    "IdempotencyConflictError",
    "InsufficientFundsError",
    "InvalidDemandError",
    "InvalidRequestError",
    "KeyStoreError",
    "NotFoundError",
    "PayReceipt",
    "PaymentView",
    "PermissionDeniedError",
    "PolicyDeniedError",
    "RefusedError",
    "SchemaOutOfDateError",
    "StorageError",
    "UnauthenticatedError",
    "WalletClient",
    "WalletdError",
    "WindowState",
    "WrongPassphraseError",
    "default_socket_path",
    "error_from_rpc",
    "map_rpc_errors",
]
