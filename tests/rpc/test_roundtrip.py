"""The sync client against the real server over a Unix socket, with a fake WalletApi."""

from __future__ import annotations

from pathlib import Path

import grpc
import pytest

from tests.rpc.conftest import BOTH_TOKEN, PAY_TOKEN, READ_TOKEN, FakeWalletApi
from walletd.client import (
    DaemonUnavailableError,
    InvalidRequestError,
    NotFoundError,
    PermissionDeniedError,
    UnauthenticatedError,
    WalletClient,
    WalletdError,
    default_socket_path,
)
from walletd.domain.budget import WindowState
from walletd.errors import all_error_classes
from walletd.rpc.server import RpcServer
from walletd.rpc.status import INTERNAL_MESSAGE
from walletd.v1 import wallet_pb2 as pb, wallet_pb2_grpc as pb_grpc


def test_pay_round_trip(client: WalletClient, fake_api: FakeWalletApi) -> None:
    receipt = client.pay(
        "key-1",
        "POST",
        "https://api.example/v1/chat",
        payment_required="eyJ4NDAyVmVyc2lvbiI6Mn0=",
        body=b'{"x402Version":1}',
        labels={"model": "llama"},
    )
    assert receipt.payment_id == "pay_key-1"
    assert receipt.amount == 10**18 + 7
    assert receipt.header_name == "PAYMENT-SIGNATURE"
    assert receipt.valid_before == 1_900_000_000
    assert receipt.reused is False
    caller, cmd = fake_api.commands[-1]
    assert caller.name == "carol"
    assert (cmd.idempotency_key, cmd.method, cmd.url) == (
        "key-1",
        "POST",
        "https://api.example/v1/chat",
    )
    assert cmd.payment_required == "eyJ4NDAyVmVyc2lvbiI6Mn0="
    assert cmd.body == b'{"x402Version":1}'
    assert dict(cmd.labels) == {"model": "llama"}


def test_report_outcome(client: WalletClient, fake_api: FakeWalletApi) -> None:
    assert client.report_outcome("pay_1", 200, "eyJzdWNjZXNzIjp0cnVlfQ==") == "settled"
    assert fake_api.outcomes == [("pay_1", 200, "eyJzdWNjZXNzIjp0cnVlfQ==")]
    with pytest.raises(NotFoundError) as info:
        client.report_outcome("nope", 200)
    assert info.value.details == {"payment_id": "nope"}


def test_get_budget_keeps_unlimited_windows(client: WalletClient) -> None:
    state = client.get_budget()
    assert state.client == "carol"
    assert state.frozen is False
    assert state.windows == (
        WindowState("per_request", 1_000_000, 0, 1_000_000),
        WindowState("daily", 5_000_000, 1_250_000, 3_750_000),
        WindowState("global_total", None, 42, None),
    )


def test_list_payments(client: WalletClient) -> None:
    views = client.list_payments(limit=2)
    assert [v.payment_id for v in views] == ["pay_0", "pay_1"]
    assert views[1].amount == 1000
    assert dict(views[1].labels) == {"limit": "2", "i": "1"}
    assert len(client.list_payments()) == 3  # default limit 100, fake returns 3


def test_spend_report_keeps_what_was_authorized_beside_what_was_charged(
    client: WalletClient,
) -> None:
    report = client.get_spend_report(group_by=["payee"])
    (row,) = report.rows
    assert row.authorized == 20_000 and row.tally("settled").amount == 7_777
    assert report.totals.authorized == 20_000


def test_negative_limit_is_invalid(client: WalletClient) -> None:
    with pytest.raises(InvalidRequestError):
        client.list_payments(limit=-1)


def test_no_token_is_unauthenticated(rpc_server: RpcServer, socket_path: Path) -> None:
    with WalletClient(socket=socket_path, timeout=5) as anon, pytest.raises(UnauthenticatedError):
        anon.get_budget()


def test_wrong_token_is_unauthenticated(rpc_server: RpcServer, socket_path: Path) -> None:
    with (
        WalletClient(socket=socket_path, token="nope", timeout=5) as c,
        pytest.raises(UnauthenticatedError),
    ):
        c.pay("k", "GET", "https://x")


@pytest.mark.parametrize("value", ["Basic abc", "Bearer", "Bearer   ", PAY_TOKEN])
def test_malformed_authorization_is_unauthenticated(rpc_server: RpcServer, value: str) -> None:
    with grpc.insecure_channel(rpc_server.address) as channel:
        stub = pb_grpc.WalletServiceStub(channel)
        with pytest.raises(grpc.RpcError) as info:
            stub.GetBudget(pb.GetBudgetRequest(), metadata=(("authorization", value),), timeout=5)
    assert info.value.code() is grpc.StatusCode.UNAUTHENTICATED


def test_bearer_scheme_is_case_insensitive(rpc_server: RpcServer) -> None:
    with grpc.insecure_channel(rpc_server.address) as channel:
        stub = pb_grpc.WalletServiceStub(channel)
        resp = stub.GetBudget(
            pb.GetBudgetRequest(), metadata=(("authorization", f"bearer {PAY_TOKEN}"),), timeout=5
        )
    assert resp.client == "alice"


def test_read_scope_cannot_pay(rpc_server: RpcServer, socket_path: Path) -> None:
    with WalletClient(socket=socket_path, token=READ_TOKEN, timeout=5) as reader:
        with pytest.raises(PermissionDeniedError) as info:
            reader.pay("k", "GET", "https://x")
        assert info.value.details["needed"] == "pay"
        assert reader.get_budget().client == "bob"
        assert reader.list_payments()


def test_pay_scope_cannot_list(rpc_server: RpcServer, socket_path: Path) -> None:
    with WalletClient(socket=socket_path, token=PAY_TOKEN, timeout=5) as payer:
        with pytest.raises(PermissionDeniedError):
            payer.list_payments()
        assert payer.get_budget().client == "alice"


@pytest.mark.parametrize("cls", all_error_classes(), ids=lambda c: c.__name__)
def test_every_error_class_survives_the_round_trip(
    client: WalletClient, fake_api: FakeWalletApi, cls: type[WalletdError]
) -> None:
    details = {"reason_seen": cls.reason, "limit": "5000000", "rule": "max_amount"}
    fake_api.error = cls(f"refused by {cls.__name__}: é ✓", details)
    with pytest.raises(WalletdError) as info:
        client.pay("k", "GET", "https://x")
    err = info.value
    assert type(err) is cls
    assert err.message == f"refused by {cls.__name__}: é ✓"
    assert err.details == details
    assert err.reason == cls.reason
    assert isinstance(err.__cause__, grpc.RpcError)


def test_unexpected_exception_is_generic_internal(
    client: WalletClient, fake_api: FakeWalletApi
) -> None:
    fake_api.error = RuntimeError("db password is hunter2")
    with pytest.raises(WalletdError) as info:
        client.get_budget()
    assert type(info.value) is WalletdError
    assert info.value.message == INTERNAL_MESSAGE
    assert "hunter2" not in str(info.value)


def test_daemon_down_is_daemon_unavailable(sock_dir: Path) -> None:
    absent = sock_dir / "absent.sock"
    with pytest.raises(DaemonUnavailableError) as info:  # at once, not after Pay's deadline
        WalletClient(socket=absent, token=PAY_TOKEN, timeout=0.3)
    assert f"nothing is listening at {absent}" in info.value.message
    assert info.value.details["socket"] == str(absent)


def test_a_daemon_gone_after_connecting_is_daemon_unavailable(
    rpc_server: RpcServer, socket_path: Path
) -> None:
    with WalletClient(socket=socket_path, token=PAY_TOKEN, timeout=0.3) as c:
        rpc_server.stop(0)
        with pytest.raises(DaemonUnavailableError) as fast:
            c.get_budget()
        assert fast.value.details["grpc_code"] == "UNAVAILABLE"
        with pytest.raises(DaemonUnavailableError) as waited:  # wait_for_ready -> deadline
            c.pay("k", "GET", "https://x")
        assert waited.value.details["grpc_code"] == "DEADLINE_EXCEEDED"
        assert c.health() is False


def test_token_file_and_env(
    rpc_server: RpcServer,
    socket_path: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    token_file = tmp_path / "token"
    token_file.write_text(PAY_TOKEN + "\n")
    with WalletClient(socket=socket_path, token_file=token_file, timeout=5) as c:
        assert c.get_budget().client == "alice"
    monkeypatch.setenv("WALLETD_TOKEN_FILE", str(token_file))
    monkeypatch.setenv("WALLETD_SOCKET", str(socket_path))
    assert default_socket_path() == socket_path
    with WalletClient(timeout=5) as c:
        assert c.get_budget().client == "alice"


def test_unreadable_or_empty_token_file(tmp_path: Path) -> None:
    with pytest.raises(InvalidRequestError):
        WalletClient(socket=tmp_path / "s", token_file=tmp_path / "missing")
    (tmp_path / "empty").write_text("\n")
    with pytest.raises(InvalidRequestError):
        WalletClient(socket=tmp_path / "s", token_file=tmp_path / "empty")


def test_default_socket_path(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("WALLETD_SOCKET", raising=False)
    assert default_socket_path() == Path.home() / ".local/share/walletd/walletd.sock"


def test_plaintext_tcp_target_is_refused() -> None:
    with pytest.raises(InvalidRequestError):
        WalletClient(target="127.0.0.1:50051", token=BOTH_TOKEN)


def test_target_overrides_socket(rpc_server: RpcServer) -> None:
    with WalletClient(target=rpc_server.address, token=BOTH_TOKEN, timeout=5) as c:
        assert c.target == rpc_server.address
        assert c.get_budget().client == "carol"
