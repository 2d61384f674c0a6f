"""The server around the servicer: socket safety, health, reflection, listener rules."""

from __future__ import annotations

import os
import socket
import stat
import threading
import time
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
    ProtoReflectionDescriptorDatabase,
)

from tests.rpc.conftest import BOTH_TOKEN, PAY_TOKEN, FakeWalletApi
from walletd.client import WalletClient
from walletd.errors import InvalidRequestError
from walletd.rpc.permissions import SERVICE_NAME
from walletd.rpc.server import RpcServer, TlsFiles, build_server

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


def test_socket_mode_is_0600(rpc_server: RpcServer, socket_path: Path) -> None:
    mode = socket_path.stat().st_mode
    assert stat.S_ISSOCK(mode)
    assert stat.S_IMODE(mode) == 0o600
    assert rpc_server.address == f"unix://{socket_path}"


def test_socket_is_private_before_start(fake_api: FakeWalletApi, socket_path: Path) -> None:
    old = os.umask(0o022)
    try:
        server = build_server(fake_api, socket_path=socket_path)
    finally:
        os.umask(old)
    try:
        assert stat.S_IMODE(socket_path.stat().st_mode) & 0o077 == 0
        assert os.umask(old) == old  # the umask was restored
    finally:
        server.stop(grace=0)


def test_missing_parent_directory_is_created_0700(fake_api: FakeWalletApi, sock_dir: Path) -> None:
    path = sock_dir / "run" / "walletd.sock"
    with build_server(fake_api, socket_path=path):
        assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700


def test_stale_socket_is_replaced(fake_api: FakeWalletApi, socket_path: Path) -> None:
    dead = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    dead.bind(str(socket_path))
    dead.close()  # leaves the file, nobody listening
    assert socket_path.exists()
    with (
        build_server(fake_api, socket_path=socket_path) as server,
        WalletClient(target=server.address, timeout=5) as c,
    ):
        assert c.health() is True


def test_live_daemon_socket_is_refused(
    rpc_server: RpcServer, fake_api: FakeWalletApi, socket_path: Path
) -> None:
    with pytest.raises(InvalidRequestError, match="already listening"):
        build_server(fake_api, socket_path=socket_path)
    with WalletClient(target=rpc_server.address, timeout=5) as c:
        assert c.health() is True  # the first daemon still owns its socket


def test_non_socket_file_is_refused(fake_api: FakeWalletApi, socket_path: Path) -> None:
    socket_path.write_text("not a socket")
    with pytest.raises(InvalidRequestError, match="not a socket"):
        build_server(fake_api, socket_path=socket_path)
    assert socket_path.read_text() == "not a socket"


def test_too_long_socket_path_is_refused(fake_api: FakeWalletApi, sock_dir: Path) -> None:
    with pytest.raises(InvalidRequestError):
        build_server(fake_api, socket_path=sock_dir / ("s" * 120))


def test_tcp_without_tls_is_refused(fake_api: FakeWalletApi) -> None:
    with pytest.raises(InvalidRequestError, match="without TLS"):
        build_server(fake_api, listen="127.0.0.1:0")


def test_no_listener_or_tls_without_tcp_is_refused(fake_api: FakeWalletApi, sock_dir: Path) -> None:
    with pytest.raises(InvalidRequestError):
        build_server(fake_api)
    tls = TlsFiles(cert=sock_dir / "c.pem", key=sock_dir / "k.pem")
    with pytest.raises(InvalidRequestError):
        build_server(fake_api, socket_path=sock_dir / "s.sock", tls=tls)


def test_unreadable_tls_files_are_refused(fake_api: FakeWalletApi, sock_dir: Path) -> None:
    tls = TlsFiles(cert=sock_dir / "missing.pem", key=sock_dir / "missing.key")
    with pytest.raises(InvalidRequestError, match="cannot read TLS file"):
        build_server(fake_api, listen="127.0.0.1:0", tls=tls)


def test_health_serving(rpc_server: RpcServer, client: WalletClient) -> None:
    assert client.health() is True
    with grpc.insecure_channel(rpc_server.address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        for service in ("", SERVICE_NAME):
            resp = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=5)
            assert resp.status == SERVING


def test_health_not_serving_during_shutdown(fake_api: FakeWalletApi, socket_path: Path) -> None:
    server = build_server(fake_api, socket_path=socket_path)
    server.start()
    with grpc.insecure_channel(server.address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        watch = stub.Watch(health_pb2.HealthCheckRequest(service=SERVICE_NAME), timeout=10)
        assert next(watch).status == SERVING
        stopper = threading.Thread(target=server.stop, args=(1.0,))
        stopper.start()
        try:
            assert next(watch).status == NOT_SERVING
        finally:
            stopper.join()
            watch.cancel()
    assert not socket_path.exists()


def test_in_flight_call_finishes_within_grace(fake_api: FakeWalletApi, socket_path: Path) -> None:
    server = build_server(fake_api, socket_path=socket_path)
    server.start()
    fake_api.pay_gate = threading.Event()
    results: list[str] = []

    def pay() -> None:
        with WalletClient(target=server.address, token="tok-pay-0123456789", timeout=5) as c:
            results.append(c.pay("slow", "GET", "https://x").payment_id)

    caller = threading.Thread(target=pay)
    caller.start()
    assert fake_api.pay_entered.wait(5)
    stopper = threading.Thread(target=server.stop, args=(5.0,))
    stopper.start()
    fake_api.pay_gate.set()
    caller.join(10)
    stopper.join(10)
    assert results == ["pay_slow"]


def test_reflection_lists_the_service(rpc_server: RpcServer) -> None:
    with grpc.insecure_channel(rpc_server.address) as channel:
        services = set(ProtoReflectionDescriptorDatabase(channel).get_services())
    assert SERVICE_NAME in services
    assert "grpc.health.v1.Health" in services


def test_wait_returns_after_stop(fake_api: FakeWalletApi, socket_path: Path) -> None:
    server = build_server(fake_api, socket_path=socket_path)
    server.start()
    waiter = threading.Thread(target=server.wait)
    waiter.start()
    server.stop(grace=0)
    waiter.join(5)
    assert not waiter.is_alive()


# ---- a deleted socket is re-bound in-process (walletd.rpc.server.RpcServer.check_socket)


def _serving(path: Path) -> bool:
    with WalletClient(socket=path, token=BOTH_TOKEN, timeout=5) as c:
        return c.health()


def test_a_deleted_socket_is_rebound_with_its_mode(
    no_watcher: None, rpc_server: RpcServer, socket_path: Path
) -> None:
    socket_path.unlink()
    assert rpc_server.check_socket() is True
    assert stat.S_ISSOCK(socket_path.stat().st_mode)
    assert stat.S_IMODE(socket_path.stat().st_mode) == 0o600
    assert _serving(socket_path)
    assert rpc_server.check_socket() is False  # nothing to do while it is ours


def test_the_watcher_rebinds_without_being_asked(rpc_server: RpcServer, socket_path: Path) -> None:
    socket_path.unlink()
    deadline = time.monotonic() + 20
    while not socket_path.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _serving(socket_path)


def test_a_file_put_in_its_place_is_left_alone(
    no_watcher: None, rpc_server: RpcServer, socket_path: Path
) -> None:
    other = socket_path.with_name("other")
    other.write_text("someone's file")
    os.replace(other, socket_path)
    assert rpc_server.check_socket() is False
    assert socket_path.read_text() == "someone's file"
    socket_path.unlink()
    assert rpc_server.check_socket() is True
    assert _serving(socket_path)


def test_a_dead_socket_put_in_its_place_is_replaced(
    no_watcher: None, rpc_server: RpcServer, socket_path: Path
) -> None:
    dead_path = socket_path.with_name("dead")
    dead = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    dead.bind(str(dead_path))
    dead.close()
    os.replace(dead_path, socket_path)
    assert rpc_server.check_socket() is True
    assert _serving(socket_path)


def test_a_call_running_at_the_rebind_still_finishes(
    no_watcher: None, fake_api: FakeWalletApi, socket_path: Path
) -> None:
    fake_api.pay_gate = threading.Event()
    results: list[str] = []
    with build_server(fake_api, socket_path=socket_path) as server:

        def pay() -> None:
            with WalletClient(target=server.address, token=PAY_TOKEN, timeout=60) as c:
                results.append(c.pay("slow", "GET", "https://x").payment_id)

        caller = threading.Thread(target=pay)
        caller.start()
        assert fake_api.pay_entered.wait(30)  # generous: a loaded CI machine is slow
        socket_path.unlink()
        assert server.check_socket() is True
        fake_api.pay_gate.set()
        caller.join(60)
        assert _serving(socket_path)
    assert results == ["pay_slow"]
