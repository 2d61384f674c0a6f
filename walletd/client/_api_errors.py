"""Errors of the paid API (Cluster Protocol and alike), as one small branch of walletd's tree.

They subclass ``WalletdError`` so the CLI and callers handle them like every
other walletd failure; the server's facts (HTTP status, error code and type)
live in ``details`` as strings, which keeps the ``(message, details)``
constructor every class of the tree shares::

    WalletdError
    └── ClusterError                    API_ERROR            any other status
        ├── ClusterBadRequestError      API_BAD_REQUEST      400
        ├── ClusterAuthenticationError  API_UNAUTHORIZED     401
        ├── PaymentRequiredError        API_PAYMENT_REQUIRED 402, nothing was paid
        │   └── PaymentRejectedError    API_PAYMENT_REJECTED 402 after a payment was sent
        ├── ClusterNotFoundError        API_NOT_FOUND        404
        ├── ClusterRateLimitError       API_RATE_LIMITED     429
        ├── ClusterServerError          API_SERVER_ERROR     5xx
        │   └── ClusterUnavailableError API_UNAVAILABLE      503
        └── ClusterConnectionError      API_CONNECTION       no answer (transport failure)
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from walletd.errors import Detail, WalletdError


class ClusterError(WalletdError):
    """The paid API answered with an error (or not at all).

    ``details``: ``status``, ``code``, ``type`` from the server's
    ``{"error": {"message", "type", "code"}}``; when walletd paid for the
    request, also ``payment_id`` and ``reused`` (the authorization stays
    outstanding until the ledger shows it settled or released).
    """

    reason = "API_ERROR"
    grpc_code = "UNKNOWN"

    def __init_subclass__(cls, reason: str = "", grpc_code: str = "", **kwargs: Any) -> None:
        """Each subclass names its reason and gRPC code in its class line."""
        super().__init_subclass__(**kwargs)
        cls.reason = reason or cls.reason
        cls.grpc_code = grpc_code or cls.grpc_code

    @property
    def status(self) -> int:
        """The HTTP status (0 when there was no answer)."""
        raw = self.details.get("status", "0")
        return int(raw) if raw.isdigit() else 0

    code = Detail("The server's machine-readable error code, e.g. ``model_not_found``.")
    type = Detail("The server's error type, e.g. ``invalid_request_error``.")

    payment_id = Detail("walletd's id of the payment made for the request; empty when none was.")


class ClusterBadRequestError(ClusterError, reason="API_BAD_REQUEST", grpc_code="INVALID_ARGUMENT"):
    """400: the request body was refused."""


class ClusterAuthenticationError(
    ClusterError, reason="API_UNAUTHORIZED", grpc_code="UNAUTHENTICATED"
):
    """401: the API key was refused."""


class PaymentRequiredError(
    ClusterError, reason="API_PAYMENT_REQUIRED", grpc_code="FAILED_PRECONDITION"
):
    """402 and nothing was paid (no wallet configured, or the origin is not ours)."""


class PaymentRejectedError(
    PaymentRequiredError, reason="API_PAYMENT_REJECTED", grpc_code="FAILED_PRECONDITION"
):
    """402 although a payment was sent: the server refused it.

    ``details``: ``payment_id``, ``payment_reason`` (the server's errorReason,
    e.g. ``invalid_exact_evm_nonce_already_used`` when a retried payment had
    already settled), ``reused`` ("true" when walletd handed back a payment
    sent on an earlier attempt of the same request).
    """

    payment_reason = Detail("Why the server refused it, in its own words.")


class ClusterNotFoundError(ClusterError, reason="API_NOT_FOUND", grpc_code="NOT_FOUND"):
    """404: unknown path or model."""


class ClusterRateLimitError(
    ClusterError, reason="API_RATE_LIMITED", grpc_code="RESOURCE_EXHAUSTED"
):
    """429, after the retries ran out."""


class ClusterServerError(ClusterError, reason="API_SERVER_ERROR", grpc_code="INTERNAL"):
    """5xx, after the retries ran out."""


class ClusterUnavailableError(
    ClusterServerError, reason="API_UNAVAILABLE", grpc_code="UNAVAILABLE"
):
    """503, after the retries ran out."""


class ClusterConnectionError(ClusterError, reason="API_CONNECTION", grpc_code="UNAVAILABLE"):
    """No complete answer: connection refused or dropped, or a timeout."""


_BY_STATUS: Mapping[int, type[ClusterError]] = {
    400: ClusterBadRequestError,
    401: ClusterAuthenticationError,
    402: PaymentRequiredError,
    404: ClusterNotFoundError,
    429: ClusterRateLimitError,
    503: ClusterUnavailableError,
}


def error_class_for_status(status: int) -> type[ClusterError]:
    """The class that stands for an HTTP error status."""
    found = _BY_STATUS.get(status)
    if found is not None:
        return found
    return ClusterServerError if status >= 500 else ClusterError


CLUSTER_ERRORS: tuple[type[ClusterError], ...] = (
    ClusterError,
    ClusterBadRequestError,
    ClusterAuthenticationError,
    PaymentRequiredError,
    PaymentRejectedError,
    ClusterNotFoundError,
    ClusterRateLimitError,
    ClusterServerError,
    ClusterUnavailableError,
    ClusterConnectionError,
)
