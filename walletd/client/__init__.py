"""walletd.client: call the walletd daemon from a service, sync or asyncio.

    from walletd.client import WalletClient, BudgetExceededError

    with WalletClient() as wallet:           # $WALLETD_SOCKET, $WALLETD_TOKEN_FILE
        receipt = wallet.pay(key, "GET", url, payment_required=header)

Paying HTTP requests (see _auth, _cluster, _http, _openai):

    with ClusterClient("https://api.example/v1") as api:   # walletd pays each 402
        print(api.chat("llama-3.3-70b", "hello").text)

    billing = WalletdSettings(token_file="billing.token", labels={"app": "billing"})
    api = ClusterClient("https://api.example/v1", walletd=billing)

Every payer takes its walletd side as one ``WalletdSettings`` (``walletd=``).
Each blocking class has an asyncio twin with the same methods (``Async...``,
closed with ``aclose()``); both run one core (see _effects).

    client = OpenAI(base_url=url, api_key="x402", http_client=openai_http_client(url))

This package is the base install: it needs grpcio, protobuf and httpx only, and
must never import the daemon's modules (database, keys, service layer). The
openai helpers load ``openai`` only when first used, the MCP session (``walletd[mcp]``)
``mcp``:

    async with ClientSession(read, write) as session:      # the official MCP SDK
        await session.initialize()
        paying = PayingMCPSession(session, server="http://127.0.0.1:8000/mcp")
        result, payment = await paying.call_tool_paid("get_weather", {"city": "Paris"})
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from walletd.client._api_errors import (
    ClusterAuthenticationError,
    ClusterBadRequestError,
    ClusterConnectionError,
    ClusterError,
    ClusterNotFoundError,
    ClusterRateLimitError,
    ClusterServerError,
    ClusterUnavailableError,
    PaymentRejectedError,
    PaymentRequiredError,
)
from walletd.client._auth import (
    IDEMPOTENCY_HEADER,
    LABELS_EXTENSION,
    Demand,
    PaymentAttempt,
    WalletdAuth,
    guard_payment_header,
    new_idempotency_key,
    payment_attempt,
    request_labels,
)
from walletd.client._cluster import (
    AsyncChatStream,
    AsyncClusterClient,
    ChatOptions,
    ChatResult,
    ChatStream,
    ClusterClient,
    ImageOptions,
    ImagesResult,
    ModelInfo,
    RetryPolicy,
    api_root,
)
from walletd.client._errors import error_from_rpc, map_rpc_errors
from walletd.client._http import (
    AsyncHttpOptions,
    HttpOptions,
    async_http_client,
    async_openai_http_client,
    http_client,
    openai_http_client,
)
from walletd.client._settings import WalletdSettings
from walletd.client._wallet import (
    AsyncWalletClient,
    ClientTls,
    PayOptions,
    ReportOptions,
    WalletClient,
    default_socket_path,
)
from walletd.domain.approval import Approval, ApprovalEvent
from walletd.domain.budget import BudgetState, RateState, WindowState
from walletd.domain.payment import PaymentView, PayReceipt
from walletd.domain.report import RefusalCount, ReportRow, SpendReport, Tally
from walletd.errors import (
    ApprovalClosedError,
    ApprovalDeniedError,
    ApprovalRequiredError,
    AuthError,
    BudgetExceededError,
    ChainError,
    DaemonUnavailableError,
    FeeTooHighError,
    FrozenError,
    IdempotencyConflictError,
    InsufficientFundsError,
    InvalidDemandError,
    InvalidRequestError,
    KeyStoreError,
    NotFoundError,
    PaidAnswerLostError,
    PermissionDeniedError,
    PolicyDeniedError,
    RateLimitedError,
    RefusedError,
    SchemaOutOfDateError,
    StorageBusyError,
    StorageError,
    StorageFullError,
    StorageIOError,
    StorageReadOnlyError,
    UnauthenticatedError,
    UntrustedSocketError,
    WalletdError,
    WrongPassphraseError,
)

if TYPE_CHECKING:  # at run time they load on first use (__getattr__), with ``mcp``
    from walletd.client._mcp import (
        MCPPayment,
        MCPPaymentRejectedError,
        PayingMCPSession,
        tool_resource_url,
    )

_OPENAI_NAMES = frozenset({"WalletdPaymentError", "async_walletd_openai", "walletd_openai"})
_MCP_NAMES = frozenset(
    {"MCPPayment", "MCPPaymentRejectedError", "PayingMCPSession", "tool_resource_url"}
)


def __getattr__(name: str) -> Any:
    """The openai and MCP helpers, imported on first use (the ``openai``, ``mcp`` extras)."""
    if name in _OPENAI_NAMES:
        from walletd.client import _openai

        return getattr(_openai, name)
    if name in _MCP_NAMES:
        from walletd.client import _mcp

        return getattr(_mcp, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "IDEMPOTENCY_HEADER",
    "LABELS_EXTENSION",
    "Approval",
    "ApprovalClosedError",
    "ApprovalDeniedError",
    "ApprovalEvent",
    "ApprovalRequiredError",
    "AsyncChatStream",
    "AsyncClusterClient",
    "AsyncHttpOptions",
    "AsyncWalletClient",
    "AuthError",
    "BudgetExceededError",
    "BudgetState",
    "ChainError",
    "ChatOptions",
    "ChatResult",
    "ChatStream",
    "ClientTls",
    "ClusterAuthenticationError",
    "ClusterBadRequestError",
    "ClusterClient",
    "ClusterConnectionError",
    "ClusterError",
    "ClusterNotFoundError",
    "ClusterRateLimitError",
    "ClusterServerError",
    "ClusterUnavailableError",
    "DaemonUnavailableError",
    "Demand",
    "FeeTooHighError",
    "FrozenError",
    "HttpOptions",
    "IdempotencyConflictError",
    "ImageOptions",
    "ImagesResult",
    "InsufficientFundsError",
    "InvalidDemandError",
    "InvalidRequestError",
    "KeyStoreError",
    "MCPPayment",
    "MCPPaymentRejectedError",
    "ModelInfo",
    "NotFoundError",
    "PaidAnswerLostError",
    "PayOptions",
    "PayReceipt",
    "PayingMCPSession",
    "PaymentAttempt",
    "PaymentRejectedError",
    "PaymentRequiredError",
    "PaymentView",
    "PermissionDeniedError",
    "PolicyDeniedError",
    "RateLimitedError",
    "RateState",
    "RefusalCount",
    "RefusedError",
    "ReportOptions",
    "ReportRow",
    "RetryPolicy",
    "SchemaOutOfDateError",
    "SpendReport",
    "StorageBusyError",
    "StorageError",
    "StorageFullError",
    "StorageIOError",
    "StorageReadOnlyError",
    "Tally",
    "UnauthenticatedError",
    "UntrustedSocketError",
    "WalletClient",
    "WalletdAuth",
    "WalletdError",
    "WalletdPaymentError",
    "WalletdSettings",
    "WindowState",
    "WrongPassphraseError",
    "api_root",
    "async_http_client",
    "async_openai_http_client",
    "async_walletd_openai",
    "default_socket_path",
    "error_from_rpc",
    "guard_payment_header",
    "http_client",
    "map_rpc_errors",
    "new_idempotency_key",
    "openai_http_client",
    "payment_attempt",
    "request_labels",
    "tool_resource_url",
    "walletd_openai",
]
