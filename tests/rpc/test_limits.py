"""The server's bounds: receive size, stalled calls, connection count (fake WalletApi)."""

from __future__ import annotations

import socket
import struct
import time
from collections.abc import Iterable
from pathlib import Path

import pytest

from tests.adversarial.stalls import Stall, raise_fd_limit
from tests.rpc.conftest import BOTH_TOKEN, FakeWalletApi
from walletd.client import WalletClient
from walletd.domain.payment import (
    MAX_IDEMPOTENCY_KEY_BYTES,
    MAX_LABEL_KEY_BYTES,
    MAX_LABEL_VALUE_BYTES,
    MAX_LABELS,
    MAX_PAY_REQUEST_BYTES,
    MAX_URL_BYTES,
)
from walletd.errors import WalletdError
from walletd.rpc import server as rpc_server_module
from walletd.rpc.intake import REQUEST_WAIT_S
from walletd.rpc.server import RpcServer, build_server

URL = "http://127.0.0.1:9/v1/chat/completions"


def test_largest_valid_pay_fits_the_receive_limit(
    client: WalletClient, fake_api: FakeWalletApi
) -> None:
    labels = {f"{i:02d}".ljust(MAX_LABEL_KEY_BYTES, "k"): "v" * MAX_LABEL_VALUE_BYTES
              for i in range(MAX_LABELS)}  # fmt: skip
    client.pay(
        "k" * MAX_IDEMPOTENCY_KEY_BYTES,
        "OPTIONS",
        URL + "?" + "a" * (MAX_URL_BYTES - len(URL) - 1),
        payment_required="p" * 64 * 1024,
        body=b"b" * 64 * 1024,
        labels=labels,
    )
    ((_, cmd),) = fake_api.commands
    assert cmd.labels == labels


def test_request_over_the_receive_limit_never_reaches_the_service(
    client: WalletClient, fake_api: FakeWalletApi
) -> None:
    with pytest.raises(WalletdError) as caught:
        client.pay("k1", "POST", URL, payment_required="e30=", labels={"l": "x" * 3_800_000})
    assert caught.value.details["grpc_code"] == "RESOURCE_EXHAUSTED"
    assert MAX_PAY_REQUEST_BYTES < 256 * 1024
    assert fake_api.commands == []


def test_pay_succeeds_while_hundreds_of_stalled_calls_are_held(
    rpc_server: RpcServer, socket_path: Path, fake_api: FakeWalletApi
) -> None:
    raise_fd_limit(1024)
    held = [Stall(socket_path) for _ in range(300)]  # 37 times the 8 workers
    try:
        time.sleep(0.5)  # every stalled call accepted
        with WalletClient(socket=socket_path, token=BOTH_TOKEN, timeout=3) as wallet:
            for n in range(3):
                t0 = time.monotonic()
                wallet.pay(f"k{n}", "POST", URL, payment_required="e30=")
                # Blocked, it would hit the 3 s deadline; the bound leaves room for a busy CI.
                assert time.monotonic() - t0 < 2.5
    finally:
        for stall in held:
            stall.close()
    assert len(fake_api.commands) == 3


def _frames_until(sock: socket.socket, deadline: float) -> list[tuple[int, int, int]]:
    """(type, flags, stream) of every frame the server sends until it closes or ``deadline``."""
    data, frames = b"", []
    while time.monotonic() < deadline:
        sock.settimeout(max(0.01, deadline - time.monotonic()))
        try:
            chunk = sock.recv(65536)
        except TimeoutError:
            break
        if not chunk:
            break
        data += chunk
        while len(data) >= 9:
            length = int.from_bytes(data[:3], "big")
            if len(data) < 9 + length:
                break
            stream = struct.unpack(">I", data[5:9])[0] & 0x7FFFFFFF
            frames.append((data[3], data[4], stream))
            data = data[9 + length :]
    return frames


def test_a_stalled_call_is_ended_after_the_request_wait(
    rpc_server: RpcServer, socket_path: Path
) -> None:
    stall = Stall(socket_path)
    try:
        assert stall.sock is not None
        t0 = time.monotonic()
        frames = _frames_until(stall.sock, t0 + REQUEST_WAIT_S + 3)
        ended = [f for f in frames if f[2] == 1 and (f[0] == 3 or f[1] & 0x1)]
        assert ended, frames  # RST_STREAM, or trailers with END_STREAM, on the stalled call
        assert time.monotonic() - t0 >= REQUEST_WAIT_S - 1
    finally:
        stall.close()


def test_connections_beyond_the_cap_are_closed(
    monkeypatch: pytest.MonkeyPatch, fake_api: FakeWalletApi, socket_path: Path
) -> None:
    monkeypatch.setattr(rpc_server_module, "MAX_CONNECTIONS", 20, raising=False)
    with (
        build_server(fake_api, socket_path=socket_path, max_workers=4),
        WalletClient(socket=socket_path, token=BOTH_TOKEN, timeout=3) as wallet,
    ):
        wallet.pay("k0", "POST", URL, payment_required="e30=")
        held = [Stall(socket_path) for _ in range(60)]
        try:
            served = _served(stall.sock for stall in held if stall.sock is not None)
            # Beyond the cap of 20 (the client's connection is one of them) the server
            # closes a connection, or leaves it unaccepted; gRPC counts connections as it
            # accepts them, so a racing accept may let one or two more in.
            assert served <= 22, served
            wallet.pay("k1", "POST", URL, payment_required="e30=")  # its connection kept
        finally:
            for stall in held:
                stall.close()


def _served(socks: Iterable[socket.socket], seconds: float = 3.0) -> int:
    """How many of ``socks`` the server accepted and still serves, watched for ``seconds``.

    An accepted connection gets the server's HTTP/2 SETTINGS; one closed by the
    server reads as closed; one never accepted stays silent.
    """
    state: dict[socket.socket, str] = {sock: "silent" for sock in socks}
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        for sock, seen in state.items():
            if seen != "closed":
                state[sock] = _read(sock, seen)
    return sum(seen == "served" for seen in state.values())


def _read(sock: socket.socket, seen: str) -> str:
    """``seen``, updated by what the server sent since: served (data), closed, or as it was."""
    sock.settimeout(0.01)
    try:
        chunk = sock.recv(65536)
        while chunk:
            seen = "served"
            chunk = sock.recv(65536)
    except TimeoutError:
        return seen
    except OSError:
        return "closed"
    return "closed"  # the server ended the connection
