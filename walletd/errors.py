"""The one error tree of walletd, shared by the daemon, the client library and the CLI.

Every refusal the daemon can give is one of these classes. Each class carries a
stable machine-readable ``reason`` (sent to clients as the gRPC ``ErrorInfo.reason``)
and a gRPC status code name; the client maps the reason back to the same class,
so callers catch ``walletd.errors.BudgetExceededError``, never ``grpc.RpcError``.

This module imports nothing outside the standard library, so the thin client can
use it without the daemon's dependencies::

    WalletdError
    ├── RefusedError                      a payment was refused; nothing was signed
    │   ├── InvalidDemandError            INVALID_DEMAND        INVALID_ARGUMENT
    │   ├── PolicyDeniedError             POLICY_DENIED         PERMISSION_DENIED
    │   ├── BudgetExceededError           BUDGET_EXCEEDED       RESOURCE_EXHAUSTED
    │   ├── InsufficientFundsError        INSUFFICIENT_FUNDS    FAILED_PRECONDITION
    │   ├── FrozenError                   FROZEN                FAILED_PRECONDITION
    │   ├── FeeTooHighError               FEE_TOO_HIGH          FAILED_PRECONDITION
    │   ├── IdempotencyConflictError      IDEMPOTENCY_CONFLICT  ALREADY_EXISTS
    │   ├── RateLimitedError              RATE_LIMITED          RESOURCE_EXHAUSTED
    │   ├── ApprovalRequiredError         APPROVAL_REQUIRED     FAILED_PRECONDITION
    │   └── ApprovalDeniedError           APPROVAL_DENIED       PERMISSION_DENIED
    ├── AuthError
    │   ├── UnauthenticatedError          UNAUTHENTICATED       UNAUTHENTICATED
    │   ├── PermissionDeniedError         PERMISSION_DENIED     PERMISSION_DENIED
    │   └── UntrustedSocketError          UNTRUSTED_SOCKET      PERMISSION_DENIED
    ├── InvalidRequestError               INVALID_REQUEST       INVALID_ARGUMENT
    ├── NotFoundError                     NOT_FOUND             NOT_FOUND
    ├── PaidAnswerLostError               PAID_ANSWER_LOST      DATA_LOSS
    ├── KeyStoreError                     KEYSTORE              FAILED_PRECONDITION
    │   └── WrongPassphraseError          WRONG_PASSPHRASE      FAILED_PRECONDITION
    ├── SchemaOutOfDateError              SCHEMA_OUT_OF_DATE    FAILED_PRECONDITION
    ├── ChainError                        CHAIN_UNAVAILABLE     UNAVAILABLE
    ├── StorageError                      STORAGE_UNAVAILABLE   UNAVAILABLE
    │   ├── StorageBusyError              STORAGE_BUSY          UNAVAILABLE
    │   ├── StorageFullError              STORAGE_FULL          UNAVAILABLE
    │   ├── StorageReadOnlyError          STORAGE_READ_ONLY     UNAVAILABLE
    │   └── StorageIOError                STORAGE_IO            UNAVAILABLE
    ├── DaemonUnavailableError            DAEMON_UNAVAILABLE    UNAVAILABLE
    └── ApprovalClosedError               APPROVAL_CLOSED       FAILED_PRECONDITION
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, overload


class WalletdError(Exception):
    """Base of every error walletd raises on purpose.

    ``details`` holds small string facts (limits, rule names) that travel to the
    client next to the reason; it never holds secrets.
    """

    reason: str = "INTERNAL"
    grpc_code: str = "INTERNAL"

    def __init__(self, message: str, details: Mapping[str, str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details: dict[str, str] = dict(details or {})

    def __str__(self) -> str:
        return self.message


class Detail:
    """An error's attribute that reads one of its ``details`` ("" when absent).

    For example ``rule = Detail("The name of the rule that refused the demand.")``
    in a class body makes ``err.rule`` read ``err.details["rule"]``.
    """

    def __init__(self, doc: str) -> None:
        self.__doc__ = doc
        self.name = ""

    def __set_name__(self, owner: type[WalletdError], name: str) -> None:
        self.name = name

    @overload
    def __get__(self, obj: None, owner: Any) -> Detail: ...
    @overload
    def __get__(self, obj: WalletdError, owner: Any) -> str: ...
    def __get__(self, obj: WalletdError | None, owner: Any) -> Detail | str:
        return self if obj is None else obj.details.get(self.name, "")


class RefusedError(WalletdError):
    """A payment was refused: nothing was signed and nothing counted as spent.

    Except ``ApprovalRequiredError``: nothing is signed yet, but the amount is
    reserved in the budgets until a human decides or the approval expires.
    """

    reason = "REFUSED"
    grpc_code = "FAILED_PRECONDITION"


class InvalidDemandError(RefusedError):
    """The 402 demand is malformed: bad base64, bad JSON, bad field, too large."""

    reason = "INVALID_DEMAND"
    grpc_code = "INVALID_ARGUMENT"


class PolicyDeniedError(RefusedError):
    """A policy rule refuses the demand; ``details["rule"]`` names the rule."""

    reason = "POLICY_DENIED"
    grpc_code = "PERMISSION_DENIED"

    rule = Detail("The name of the rule that refused the demand.")


class BudgetExceededError(RefusedError):
    """The amount does not fit a budget; details carry window, limit, spent, requested."""

    reason = "BUDGET_EXCEEDED"
    grpc_code = "RESOURCE_EXHAUSTED"

    @property
    def limit(self) -> int:
        """The window's limit in atomic units."""
        return int(self.details.get("limit", "0"))

    @property
    def spent(self) -> int:
        """What the window had already spent, in atomic units."""
        return int(self.details.get("spent", "0"))

    @property
    def requested(self) -> int:
        """The amount asked for, in atomic units."""
        return int(self.details.get("requested", "0"))


class InsufficientFundsError(RefusedError):
    """The wallet's USDC, less outstanding authorizations, cannot cover the amount."""

    reason = "INSUFFICIENT_FUNDS"
    grpc_code = "FAILED_PRECONDITION"


class FrozenError(RefusedError):
    """An operator froze all payments (`walletd freeze`)."""

    reason = "FROZEN"
    grpc_code = "FAILED_PRECONDITION"


class FeeTooHighError(RefusedError):
    """The node's gas fee is above ``[chain] max_fee_per_gas_wei``; nothing was signed.

    ``details`` carry ``needed`` (base fee + tip the node asks, in wei) and ``cap``.
    """

    reason = "FEE_TOO_HIGH"
    grpc_code = "FAILED_PRECONDITION"


class IdempotencyConflictError(RefusedError):
    """The idempotency key was already used for a different demand."""

    reason = "IDEMPOTENCY_CONFLICT"
    grpc_code = "ALREADY_EXISTS"


class AuthError(WalletdError):
    """The caller is not who it must be, or may not do this."""

    reason = "AUTH"
    grpc_code = "UNAUTHENTICATED"


class UnauthenticatedError(AuthError):
    """No token, an unknown token, or a revoked token."""

    reason = "UNAUTHENTICATED"
    grpc_code = "UNAUTHENTICATED"


class PermissionDeniedError(AuthError):
    """The token lacks the scope for this call, or the object is another client's."""

    reason = "PERMISSION_DENIED"
    grpc_code = "PERMISSION_DENIED"


class UntrustedSocketError(AuthError):
    """The daemon's Unix socket cannot be trusted: the client refused to talk to it.

    Its directory is writable by others (anyone could have put it there), or the
    socket file or the process listening on it belongs to another user than the
    expected owner. Raised only by the client library, before any token is sent.
    """

    reason = "UNTRUSTED_SOCKET"
    grpc_code = "PERMISSION_DENIED"


class InvalidRequestError(WalletdError):
    """A request field (not the 402 demand itself) is malformed."""

    reason = "INVALID_REQUEST"
    grpc_code = "INVALID_ARGUMENT"


class NotFoundError(WalletdError):
    """The named object does not exist (or is not visible to the caller)."""

    reason = "NOT_FOUND"
    grpc_code = "NOT_FOUND"


class PaidAnswerLostError(WalletdError):
    """The payment went through on chain, but the server's answer to the request was lost.

    Typically a retry after a timeout: the first attempt settled, the server's
    answer never arrived, and the retry (same authorization) was refused as
    already used (``invalid_exact_evm_nonce_already_used``). The chain shows the
    authorization used, so the ledger records the payment ``settled``. Sending
    the request again is a *new* payment. ``details``: ``payment_id``, ``tx``
    (the settlement transaction, "" when the node could not find its log).
    """

    reason = "PAID_ANSWER_LOST"
    grpc_code = "DATA_LOSS"

    @property
    def payment_id(self) -> str:
        """walletd's id of the settled payment."""
        return self.details.get("payment_id", "")

    @property
    def tx(self) -> str:
        """The transaction that settled it, or "" when not found."""
        return self.details.get("tx", "")


class KeyStoreError(WalletdError):
    """The key file is missing, unreadable, of an unknown version or corrupt."""

    reason = "KEYSTORE"
    grpc_code = "FAILED_PRECONDITION"


class WrongPassphraseError(KeyStoreError):
    """The passphrase does not open the key file."""

    reason = "WRONG_PASSPHRASE"
    grpc_code = "FAILED_PRECONDITION"


class SchemaOutOfDateError(WalletdError):
    """The database schema is behind the code; ``walletd db upgrade`` fixes it."""

    reason = "SCHEMA_OUT_OF_DATE"
    grpc_code = "FAILED_PRECONDITION"


class ChainError(WalletdError):
    """The chain RPC could not answer; payments that need it fail closed."""

    reason = "CHAIN_UNAVAILABLE"
    grpc_code = "UNAVAILABLE"


class StorageError(WalletdError):
    """The ledger could not be read or written; the payment fails closed."""

    reason = "STORAGE_UNAVAILABLE"
    grpc_code = "UNAVAILABLE"


class StorageBusyError(StorageError):
    """Another writer held the ledger's lock past the wait limit; retrying later may pass."""

    reason = "STORAGE_BUSY"
    grpc_code = "UNAVAILABLE"


class StorageFullError(StorageError):
    """The disk (or database) holding the ledger is full; an operator must free space."""

    reason = "STORAGE_FULL"
    grpc_code = "UNAVAILABLE"


class StorageReadOnlyError(StorageError):
    """The ledger refuses writes: a read-only file or filesystem, or a standby database."""

    reason = "STORAGE_READ_ONLY"
    grpc_code = "UNAVAILABLE"


class StorageIOError(StorageError):
    """The disk failed or refused a write or sync (an I/O error, an immutable file)."""

    reason = "STORAGE_IO"
    grpc_code = "UNAVAILABLE"


class DaemonUnavailableError(WalletdError):
    """The client could not reach the daemon (not running, restarting, wrong socket).

    Raised only by the client library, never by the daemon: it stands for an
    UNAVAILABLE (or deadline) status that carries no walletd ErrorInfo.
    """

    reason = "DAEMON_UNAVAILABLE"
    grpc_code = "UNAVAILABLE"


class RateLimitedError(RefusedError):
    """A rate limit (signed payments per rolling window) is reached; nothing was signed.

    ``details``: ``window`` (e.g. ``payments_per_minute``, ``global_payments_per_hour``,
    ``payments_per_day[host=api.example.com]``), ``limit``, ``count`` (payments
    already signed in the window) and ``per`` (``minute``, ``hour`` or ``day``).
    """

    reason = "RATE_LIMITED"
    grpc_code = "RESOURCE_EXHAUSTED"

    window = Detail("The rate window that refused, as ``budget show`` names it.")
    per = Detail("The window's length: ``minute``, ``hour`` or ``day``.")

    @property
    def limit(self) -> int:
        """Signed payments the window allows."""
        return int(self.details.get("limit", "0"))

    @property
    def count(self) -> int:
        """Signed payments already in the window."""
        return int(self.details.get("count", "0"))


class ApprovalRequiredError(RefusedError):
    """The payment is above an approval threshold: held, not signed, its budget reserved.

    An operator approves or denies it (``walletd approve ID`` / ``walletd deny
    ID``); the caller's retry under the same idempotency key then gets the
    signature, or ``ApprovalDeniedError``. ``details``: ``approval_id``,
    ``payment_id``, ``amount`` (atomic units), ``amount_usd``, ``payee``, ``url``,
    ``expires_at_ms`` and ``threshold`` (the client's or the ``global`` one).
    """

    reason = "APPROVAL_REQUIRED"
    grpc_code = "FAILED_PRECONDITION"

    approval_id = Detail("The id to approve or deny (``apr_...``).")
    payment_id = Detail("The held payment's id.")
    amount_usd = Detail("The amount held, in USD (e.g. ``0.75``).")
    payee = Detail("The address that would be paid.")
    url = Detail("The URL the payment is for.")

    @property
    def expires_at_ms(self) -> int:
        """Unix ms after which the approval can no longer be given."""
        return int(self.details.get("expires_at_ms", "0") or 0)


class ApprovalDeniedError(RefusedError):
    """The held payment was denied, or its approval expired: nothing was signed.

    Its reservation was released. ``details``: ``approval_id``, ``payment_id``,
    ``status`` (``denied`` or ``expired``), and for a denial ``decided_by`` and ``note``.
    """

    reason = "APPROVAL_DENIED"
    grpc_code = "PERMISSION_DENIED"

    approval_id = Detail("The approval's id.")
    status = Detail("``denied`` or ``expired``.")
    note = Detail("The approver's note, if any.")


class ApprovalClosedError(WalletdError):
    """An approve or deny named an approval that is already decided or expired.

    Nothing changed and nothing was signed. ``details``: ``approval_id`` and
    ``status`` (``approved``, ``denied`` or ``expired``).
    """

    reason = "APPROVAL_CLOSED"
    grpc_code = "FAILED_PRECONDITION"

    approval_id = Detail("The approval's id.")
    status = Detail("What it already is: approved, denied or expired.")


def all_error_classes() -> list[type[WalletdError]]:
    """Every class of the tree, root first, so mappings can be checked for gaps."""
    found: list[type[WalletdError]] = [WalletdError]
    queue: list[type[WalletdError]] = [WalletdError]
    while queue:
        for sub in queue.pop(0).__subclasses__():
            found.append(sub)
            queue.append(sub)
    return found


def error_class_for_reason(reason: str) -> type[WalletdError]:
    """The class whose ``reason`` is this one, or the root when the reason is unknown."""
    for cls in all_error_classes():
        if cls.reason == reason:
            return cls
    return WalletdError


def read_named_file(path: str | os.PathLike[str], what: str) -> bytes:
    """The bytes of a file a user named, or InvalidRequestError saying which and why."""
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise InvalidRequestError(
            f"cannot read {what} {path}: {exc.strerror}", {"path": str(path)}
        ) from exc
