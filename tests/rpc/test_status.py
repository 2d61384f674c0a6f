"""walletd errors <-> rich gRPC statuses, without a server."""

from __future__ import annotations

import logging

import grpc
import grpc.aio
import pytest
from google.rpc import error_details_pb2, status_pb2

from walletd.client._errors import error_from_rpc, map_rpc_errors
from walletd.errors import (
    BudgetExceededError,
    DaemonUnavailableError,
    WalletdError,
    all_error_classes,
)
from walletd.rpc.status import INTERNAL_MESSAGE, status_for_exception, to_rpc_status

DETAILS_KEY = "grpc-status-details-bin"


@pytest.mark.parametrize("cls", all_error_classes(), ids=lambda c: c.__name__)
def test_every_class_has_a_valid_grpc_code(cls: type[WalletdError]) -> None:
    assert cls.grpc_code in grpc.StatusCode.__members__
    assert cls.grpc_code != "OK"


def test_reasons_are_unique() -> None:
    reasons = [cls.reason for cls in all_error_classes()]
    assert len(reasons) == len(set(reasons))


def _unpack(status: grpc.Status) -> tuple[status_pb2.Status, error_details_pb2.ErrorInfo]:
    (key, value), *_ = status.trailing_metadata
    assert key == DETAILS_KEY
    assert isinstance(value, bytes)
    rich = status_pb2.Status.FromString(value)
    info = error_details_pb2.ErrorInfo()
    assert rich.details[0].Unpack(info)
    return rich, info


def test_to_rpc_status_packs_error_info() -> None:
    err = BudgetExceededError("daily budget exceeded", {"window": "daily", "limit": "5"})
    status = to_rpc_status(err)
    assert status.code is grpc.StatusCode.RESOURCE_EXHAUSTED
    assert status.details == "daily budget exceeded"
    rich, info = _unpack(status)
    assert rich.code == grpc.StatusCode.RESOURCE_EXHAUSTED.value[0]
    assert (info.reason, info.domain) == ("BUDGET_EXCEEDED", "walletd")
    assert dict(info.metadata) == {"window": "daily", "limit": "5"}


def test_unexpected_exception_is_internal_and_generic(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.ERROR, logger="walletd.rpc.status"):
        status = status_for_exception(RuntimeError("password=hunter2 at /secret/path"))
    assert status.code is grpc.StatusCode.INTERNAL
    assert status.details == INTERNAL_MESSAGE
    assert "hunter2" not in str(status.trailing_metadata)
    assert "hunter2" in caplog.text  # the traceback goes to the log only


def _aio_error(
    code: grpc.StatusCode, message: str, info: error_details_pb2.ErrorInfo | None
) -> grpc.aio.AioRpcError:
    trailers = grpc.aio.Metadata()
    if info is not None:
        rich = status_pb2.Status(code=code.value[0], message=message)
        rich.details.add().Pack(info)
        trailers.add(DETAILS_KEY, rich.SerializeToString())
    return grpc.aio.AioRpcError(code, grpc.aio.Metadata(), trailers, message, None)


def test_unknown_reason_becomes_root_error_with_reason_kept() -> None:
    info = error_details_pb2.ErrorInfo(
        reason="SOMETHING_NEW", domain="walletd", metadata={"a": "b"}
    )
    err = error_from_rpc(_aio_error(grpc.StatusCode.FAILED_PRECONDITION, "new refusal", info))
    assert type(err) is WalletdError
    assert (err.reason, err.message, err.details) == ("SOMETHING_NEW", "new refusal", {"a": "b"})


def test_other_domains_are_ignored() -> None:
    info = error_details_pb2.ErrorInfo(reason="BUDGET_EXCEEDED", domain="example.com")
    err = error_from_rpc(_aio_error(grpc.StatusCode.RESOURCE_EXHAUSTED, "proxy said no", info))
    assert type(err) is WalletdError
    assert err.details == {"grpc_code": "RESOURCE_EXHAUSTED"}


@pytest.mark.parametrize("code", [grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED])
def test_unreachable_without_error_info_is_daemon_unavailable(code: grpc.StatusCode) -> None:
    err = error_from_rpc(_aio_error(code, "connect failed", None))
    assert type(err) is DaemonUnavailableError
    assert err.details == {"grpc_code": code.name}


def test_map_rpc_errors_chains_the_grpc_error() -> None:
    original = _aio_error(grpc.StatusCode.UNAVAILABLE, "down", None)
    with pytest.raises(DaemonUnavailableError) as info, map_rpc_errors():
        raise original
    assert info.value.__cause__ is original


def test_bare_rpc_error_is_unknown() -> None:
    err = error_from_rpc(grpc.RpcError("odd"))
    assert type(err) is WalletdError
    assert err.details == {"grpc_code": "UNKNOWN"}
