"""What a local attacker can get from a running daemon: its memory, core files, its socket.

The memory tests run a real ``walletd serve`` as uid 65534 (as the unit runs it
as ``walletd``, not root), then look at it from root: /proc/<pid>/status's
owner shows whether the kernel considers it dumpable, /proc/<pid>/limits its
core-file limit, and /proc/<pid>/mem (over /proc/<pid>/maps) every byte it
holds, where the passphrase and the raw key are counted.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.deploy.conftest import walletd
from tests.plugins.daemon import PASSPHRASE, Daemon, WalletHome, demand_header
from walletd.client import AsyncWalletClient, WalletClient
from walletd.errors import DaemonUnavailableError, UntrustedSocketError
from walletd.keys import keystore

NOBODY = 65534
needs_root = pytest.mark.skipif(
    os.geteuid() != 0 or not shutil.which("setpriv"), reason="needs root and setpriv"
)


def _chown_tree(root: Path, uid: int) -> None:
    for path in [root, *root.rglob("*")]:
        os.chown(path, uid, uid)


@pytest.fixture
def nobody_daemon(wallet_home: WalletHome) -> Iterator[subprocess.Popen[bytes]]:
    """``walletd serve`` as uid/gid 65534 on wallet_home (ready: health SERVING)."""
    _chown_tree(wallet_home.root, NOBODY)
    argv = [
        "setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups",
        sys.executable, "-m", "walletd", "serve", "--data-dir", str(wallet_home.data_dir),
        "--passphrase-file", str(wallet_home.passphrase_file),
    ]  # fmt: skip
    log = (wallet_home.root / "daemon.log").open("wb")
    proc = subprocess.Popen(argv, env=wallet_home.env, stdout=log, stderr=log)
    deadline = time.monotonic() + 30
    try:
        while True:
            assert proc.poll() is None, (wallet_home.root / "daemon.log").read_text()
            assert time.monotonic() < deadline, "daemon not ready"
            try:
                with WalletClient(socket=wallet_home.socket, timeout=2) as probe:
                    if probe.health():
                        break
            except DaemonUnavailableError:
                pass
            time.sleep(0.1)
        yield proc
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


@pytest.mark.slow
@needs_root
def test_the_daemon_is_not_dumpable_and_has_no_core_limit(
    nobody_daemon: subprocess.Popen[bytes],
) -> None:
    pid = nobody_daemon.pid  # setpriv execs python in place: the same pid
    status = Path(f"/proc/{pid}/status").read_text()
    assert re.search(rf"^Uid:\s+{NOBODY}\b", status, re.M), status
    # The kernel gives a non-dumpable process's /proc files to root: uid 65534 cannot
    # ptrace it, read its /proc/<pid>/mem or environ, or get a core file of it.
    assert os.stat(f"/proc/{pid}/status").st_uid == 0
    limits = Path(f"/proc/{pid}/limits").read_text()
    core = re.search(r"^Max core file size\s+(\S+)\s+(\S+)", limits, re.M)
    assert core is not None and core.groups() == ("0", "0"), limits


def _memory_counts(pid: int, needles: list[bytes]) -> list[int]:
    """How often each needle occurs in the readable memory of ``pid`` (as root)."""
    counts = [0] * len(needles)
    with Path(f"/proc/{pid}/maps").open() as maps, Path(f"/proc/{pid}/mem").open("rb") as mem:
        for line in maps:
            fields = line.split()
            start, end = (int(x, 16) for x in fields[0].split("-"))
            if "r" not in fields[1] or (len(fields) > 5 and fields[5] == "[vvar]"):
                continue
            try:
                mem.seek(start)
                chunk = mem.read(end - start)
            except (OSError, ValueError):
                continue
            for i, needle in enumerate(needles):
                counts[i] += chunk.count(needle)
    return counts


@pytest.mark.slow
@needs_root
def test_after_unlock_the_daemon_holds_one_copy_of_the_key_and_no_passphrase(
    nobody_daemon: subprocess.Popen[bytes], wallet_home: WalletHome
) -> None:
    key = keystore.unlock(wallet_home.data_dir / "key.json", PASSPHRASE.encode())
    # Sign something first, so the hot path's copies (if any) are in there too.
    token = wallet_home.add_client("svc")
    wallet_home.admin("budget", "set", "svc", "--daily", "1")
    with WalletClient(socket=wallet_home.socket, token_file=token) as client:
        client.pay("k1", "GET", "http://127.0.0.1:9/v1/x", payment_required=demand_header())
    key_copies, passphrase_copies = _memory_counts(nobody_daemon.pid, [key, PASSPHRASE.encode()])
    assert (key_copies, passphrase_copies) == (1, 0)


# ---- metrics ---------------------------------------------------------------


@pytest.mark.slow
def test_metrics_on_a_bare_port_bind_loopback(wallet_home: WalletHome) -> None:
    running = Daemon(wallet_home, "--metrics", "0")
    try:
        found = re.search(r"metrics on http://([^/]+)/metrics", running.logs())
        assert found is not None, running.logs()
        host, _, port = found.group(1).rpartition(":")
        assert host == "127.0.0.1"
        assert "not loopback" not in running.logs()
        with socket.create_connection(("127.0.0.1", int(port)), timeout=5):
            pass
    finally:
        assert running.stop() == 0, running.logs()


def test_metrics_bound_beyond_loopback_log_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    from prometheus_client import CollectorRegistry

    from walletd import metrics

    server = metrics.serve("0.0.0.0:0", CollectorRegistry())  # all interfaces: the point
    server.stop()
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert any("without authentication" in w and "not loopback" in w for w in warnings)
    server = metrics.serve("127.0.0.1:0", CollectorRegistry())
    server.stop()
    assert len([r for r in caplog.records if r.levelname == "WARNING"]) == len(warnings)


# ---- the client's socket checks --------------------------------------------


@pytest.mark.slow
def test_a_socket_owned_by_another_uid_is_refused(daemon: Daemon) -> None:
    path = daemon.home.socket
    os.chown(path, 12345, -1)
    with pytest.raises(UntrustedSocketError, match="belongs to uid 12345"):
        WalletClient(socket=path)
    out = walletd("health", "--socket", str(path))
    assert out.returncode == 1
    assert "UNTRUSTED_SOCKET" in out.stderr or "belongs to uid 12345" in out.stderr


@pytest.mark.slow
def test_a_daemon_running_as_another_uid_than_expected_is_refused(daemon: Daemon) -> None:
    path = daemon.home.socket
    with pytest.raises(UntrustedSocketError) as info:
        AsyncWalletClient(socket=path, socket_owner=12345)
    assert "expected uid 12345" in str(info.value)
    os.chown(path, 12345, -1)  # the file passes now: the listening process (uid 0) does not
    with pytest.raises(UntrustedSocketError, match="process listening on it runs as uid 0"):
        WalletClient(socket=path, socket_owner=12345)
    out = walletd("health", "--socket", str(path), env={"WALLETD_SOCKET_OWNER": "12345"})
    assert out.returncode == 1
    assert "runs as uid 0" in out.stderr


@pytest.mark.slow
def test_a_socket_in_a_directory_others_can_write_is_refused(daemon: Daemon) -> None:
    daemon.home.data_dir.chmod(0o777)
    try:
        with pytest.raises(UntrustedSocketError, match="writable by others"):
            WalletClient(socket=daemon.home.socket)
    finally:
        daemon.home.data_dir.chmod(0o700)
    with WalletClient(socket=daemon.home.socket) as client:
        assert client.health()


def test_a_missing_socket_fails_at_once_naming_the_path(tmp_path: Path) -> None:
    path = tmp_path / "walletd.sock"
    started = time.monotonic()
    with pytest.raises(DaemonUnavailableError) as info, WalletClient(socket=path, token="t") as c:
        c.pay("k", "GET", "http://127.0.0.1:9/x", payment_required="e30=")
    assert time.monotonic() - started < 5  # not the ~11 s of waiting for a deadline
    assert f"nothing is listening at {path}" in str(info.value)
    token = tmp_path / "token"
    token.write_text("t\n")
    out = walletd(
        "pay", "--socket", str(path), "--token-file", str(token), "--url", "http://127.0.0.1:9/x",
        "--payment-required", "e30=",
    )  # fmt: skip
    assert out.returncode != 0
    assert f"nothing is listening at {path}" in out.stderr
    assert "DEADLINE_EXCEEDED" not in out.stderr


def test_a_stale_socket_nobody_accepts_on_fails_at_once(tmp_path: Path) -> None:
    path = tmp_path / "walletd.sock"
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(str(path))  # bound, never listening: what a crashed daemon leaves
    try:
        started = time.monotonic()
        with pytest.raises(DaemonUnavailableError, match=f"nothing is listening at {path}"):
            WalletClient(socket=path)
        assert time.monotonic() - started < 5  # not the ~11 s of waiting for a deadline
    finally:
        stale.close()
