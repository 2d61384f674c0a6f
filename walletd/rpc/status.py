"""walletd errors as rich gRPC statuses (google.rpc.Status + google.rpc.ErrorInfo).

The status code alone cannot tell BUDGET_EXCEEDED from FROZEN, so every refusal
also carries an ErrorInfo whose ``reason`` names the walletd.errors class and whose
``metadata`` holds the error's details; the client rebuilds the same class from it
(walletd.client._errors). Anything that is not a WalletdError is a bug: the caller
gets a generic INTERNAL and the traceback stays in the daemon's log.
"""

from __future__ import annotations

import logging

import grpc
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status

from walletd.errors import WalletdError

log = logging.getLogger(__name__)

ERROR_DOMAIN = "walletd"
"""ErrorInfo.domain of every walletd status; the client ignores other domains."""

INTERNAL_MESSAGE = "internal error in walletd; see the daemon log"


def grpc_code_for(err: WalletdError) -> grpc.StatusCode:
    """The StatusCode named by the error class's ``grpc_code``."""
    return grpc.StatusCode[err.grpc_code]


def to_rpc_status(err: WalletdError) -> grpc.Status:
    """The grpc.Status to abort with for ``err``, reason and details packed in ErrorInfo."""
    code = grpc_code_for(err)
    info = error_details_pb2.ErrorInfo(reason=err.reason, domain=ERROR_DOMAIN, metadata=err.details)
    status = status_pb2.Status(code=code.value[0], message=err.message)
    status.details.add().Pack(info)
    result: grpc.Status = rpc_status.to_status(status)
    return result


def internal_status(exc: BaseException) -> grpc.Status:
    """INTERNAL with a generic message for an unexpected exception; logs the traceback.

    The message is generic on purpose: exception text can carry paths, SQL or
    key material the caller must not see.
    """
    log.error("unexpected error in an RPC", exc_info=exc)
    return to_rpc_status(WalletdError(INTERNAL_MESSAGE))


def status_for_exception(exc: BaseException) -> grpc.Status:
    """The status for any exception an RPC handler let through."""
    if isinstance(exc, WalletdError):
        return to_rpc_status(exc)
    return internal_status(exc)
