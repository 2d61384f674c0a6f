"""gRPC failures back into walletd.errors classes, for the thin client.

The daemon sends each refusal as a google.rpc.Status with an ErrorInfo (domain
"walletd") in the ``grpc-status-details-bin`` trailer; the reason picks the class
and the metadata are its details. So callers catch ``BudgetExceededError``, never
``grpc.RpcError``. A failure without that ErrorInfo did not come from walletd's
code: UNAVAILABLE and DEADLINE_EXCEEDED mean the daemon could not be reached in
time (DaemonUnavailableError); anything else is a plain WalletdError.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

import grpc
import grpc.aio
from google.rpc import error_details_pb2, status_pb2

from walletd.errors import DaemonUnavailableError, WalletdError, error_class_for_reason

ERROR_DOMAIN = "walletd"
STATUS_DETAILS_KEY = "grpc-status-details-bin"

_UNREACHABLE = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED})


@contextmanager
def map_rpc_errors() -> Iterator[None]:
    """Re-raise any gRPC failure in the block as the matching walletd error.

    Works around ``await`` too (``grpc.aio.AioRpcError`` is a ``grpc.RpcError``).
    """
    try:
        yield
    except grpc.RpcError as exc:
        raise error_from_rpc(exc) from exc


def error_from_rpc(exc: grpc.RpcError) -> WalletdError:
    """The walletd error that a failed call stands for."""
    code, message, trailers = _call_parts(exc)
    info = _error_info(trailers)
    if info is not None:
        return _from_error_info(info, message)
    details = {"grpc_code": code.name}
    if code in _UNREACHABLE:
        return DaemonUnavailableError(f"walletd did not answer ({code.name}): {message}", details)
    return WalletdError(f"{code.name}: {message}", details)


def _from_error_info(info: error_details_pb2.ErrorInfo, message: str) -> WalletdError:
    """The class named by the reason, with the message and details restored."""
    cls = error_class_for_reason(info.reason)
    err = cls(message, dict(info.metadata))
    if err.reason != info.reason:
        # A reason this client does not know (a newer daemon): keep it visible.
        err.reason = info.reason
    return err


def _call_parts(exc: grpc.RpcError) -> tuple[grpc.StatusCode, str, list[tuple[str, object]]]:
    """Code, message and trailing metadata of a failed sync or async call.

    Only the raised subclasses (sync ``_InactiveRpcError``, ``AioRpcError``) carry
    these methods; a bare ``grpc.RpcError`` maps to UNKNOWN.
    """
    if not isinstance(exc, grpc.Call | grpc.aio.AioRpcError):
        return grpc.StatusCode.UNKNOWN, str(exc), []
    code: grpc.StatusCode = exc.code()
    message: str = exc.details() or ""
    items: Iterable[Any] = exc.trailing_metadata() or ()
    return code, message, [(str(key), value) for key, value in items]


def _error_info(trailers: list[tuple[str, object]]) -> error_details_pb2.ErrorInfo | None:
    """The walletd ErrorInfo packed in the status trailer, if there is one."""
    for key, value in trailers:
        if key != STATUS_DETAILS_KEY or not isinstance(value, bytes):
            continue
        status = status_pb2.Status.FromString(value)
        for detail in status.details:
            info = error_details_pb2.ErrorInfo()
            if detail.Unpack(info) and info.domain == ERROR_DOMAIN:
                return info
    return None
