"""Fixtures that run the real `walletd` CLI and daemon as subprocesses.

Data dirs live under a short /tmp path because AF_UNIX socket paths are limited
to 107 bytes. Keys are made with a cheap KDF (`--kdf-log-n 10`) so tests are fast;
the default cost is measured by bench/kdf_cost.py.
"""

from __future__ import annotations

import base64
import functools
import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from walletd.domain.networks import BASE

PAY_TO = "0x90F79bf6Eb2c4f870365E96051896F3aC51Fb01A"
PASSPHRASE = "correct horse battery staple"


def demand_header(
    amount: str = "3000",
    *,
    url: str = "http://127.0.0.1:9/v1/chat/completions",
    **overrides: Any,
) -> str:
    """A v2 PAYMENT-REQUIRED value like Cluster Protocol's, with fields overridden."""
    entry: dict[str, Any] = {
        "scheme": "exact",
        "network": BASE.caip2,
        "asset": BASE.usdc,
        "amount": amount,
        "payTo": PAY_TO,
        "maxTimeoutSeconds": 300,
        "extra": {"name": "USD Coin", "version": "2"},
    }
    entry.update(overrides)
    doc = {
        "x402Version": 2,
        "error": "Payment required",
        "resource": {"url": url, "description": "chat", "mimeType": "application/json"},
        "accepts": [entry],
    }
    return base64.b64encode(json.dumps(doc).encode()).decode()


@dataclass
class WalletHome:
    """An initialised data dir, and a way to run `walletd` commands against it."""

    root: Path
    data_dir: Path
    passphrase_file: Path
    address: str = ""
    env: dict[str, str] = field(default_factory=dict)

    @property
    def socket(self) -> Path:
        return self.data_dir / "walletd.sock"

    def run(
        self, *args: str, check: bool = True, timeout: float = 60
    ) -> subprocess.CompletedProcess[str]:
        """Run `walletd ARGS` (adds --data-dir to commands that take it)."""
        argv = [sys.executable, "-m", "walletd", *args]
        proc = subprocess.run(
            argv, capture_output=True, text=True, env=self.env, timeout=timeout, check=False
        )
        if check and proc.returncode != 0:
            raise AssertionError(
                f"walletd {' '.join(args)} failed {proc.returncode}:\n{proc.stderr}"
            )
        return proc

    def admin(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run an operator command against this data dir."""
        return self.run(*args, "--data-dir", str(self.data_dir), check=check)

    def add_client(self, name: str, scopes: str = "pay,read") -> Path:
        """Create a client; return the path of a 0600 file holding its token."""
        token = self.admin("client", "add", name, "--scopes", scopes).stdout.splitlines()[-1]
        path = self.root / f"{name}.token"
        path.write_text(token + "\n")
        path.chmod(0o600)
        return path


def _short_tmp() -> Path:
    return Path(tempfile.mkdtemp(prefix="wd-", dir="/tmp"))


def init_home(root: Path | None = None, data_dir: Path | None = None) -> WalletHome:
    """A data dir made by `walletd init` (cheap KDF) in ``root`` (default: a new short dir).

    The commands it runs see no ``WALLETD_*`` variable and no systemd credentials
    of the environment the tests run in.
    """
    root = root if root is not None else _short_tmp()
    passfile = root / "passphrase"
    passfile.write_text(PASSPHRASE + "\n")
    passfile.chmod(0o600)
    env = {k: v for k, v in os.environ.items() if not k.startswith("WALLETD_")}
    env.pop("CREDENTIALS_DIRECTORY", None)
    home = WalletHome(root, data_dir if data_dir is not None else root / "data", passfile, env=env)
    out = home.run(
        "init", "--data-dir", str(home.data_dir), "--passphrase-file", str(passfile),
        "--kdf-log-n", "10",
    )  # fmt: skip
    home.address = out.stdout.splitlines()[-1]
    return home


@contextmanager
def client_daemon(*budget: str, config: str = "") -> Iterator[tuple[WalletHome, Path]]:
    """A new wallet, its client `svc` (``budget set svc BUDGET``) and its running daemon.

    ``config`` becomes the data dir's walletd.toml. Yields the home and the token file;
    the daemon must then stop cleanly.
    """
    home = init_home()
    if config:
        (home.data_dir / "walletd.toml").write_text(config)
    token = home.add_client("svc")
    home.admin("budget", "set", "svc", *budget)
    daemon = Daemon(home)
    try:
        yield home, token
    finally:
        code = daemon.stop()
        shutil.rmtree(home.root, ignore_errors=True)
        assert code == 0, daemon.logs()


@pytest.fixture
def wallet_home() -> Iterator[WalletHome]:
    """A fresh data dir with a new key (cheap KDF) and a migrated ledger."""
    home = init_home()
    yield home
    shutil.rmtree(home.root, ignore_errors=True)


def _limit_fds(n: int | tuple[int, int]) -> None:
    resource.setrlimit(resource.RLIMIT_NOFILE, n if isinstance(n, tuple) else (n, n))


class Daemon:
    """A running `walletd serve` subprocess."""

    def __init__(
        self, home: WalletHome, *extra: str, nofile: int | tuple[int, int] | None = None
    ) -> None:
        """``nofile`` sets the daemon's RLIMIT_NOFILE (both, or (soft, hard)) before it starts."""
        self.home = home
        self.socket = (
            Path(extra[extra.index("--socket") + 1]) if "--socket" in extra else home.socket
        )
        """Where this daemon listens (``--socket``, else the data dir's default)."""
        self.log = (home.root / "daemon.log").open("ab")
        argv = [
            sys.executable, "-m", "walletd", "serve", "--data-dir", str(home.data_dir),
            "--passphrase-file", str(home.passphrase_file), *extra,
        ]  # fmt: skip
        limit = None if nofile is None else functools.partial(_limit_fds, nofile)
        self.proc = subprocess.Popen(
            argv, env=home.env, stdout=self.log, stderr=self.log, preexec_fn=limit
        )
        try:
            self._wait_ready()
        except BaseException:
            self.stop()  # a daemon that never came up leaves no process or open log behind
            raise

    def _wait_ready(self, timeout: float = 30) -> None:
        from walletd.client import WalletClient
        from walletd.errors import DaemonUnavailableError

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"walletd serve exited {self.proc.returncode}: {self.logs()}")
            if self.socket.exists():
                try:
                    probe = WalletClient(socket=self.socket, token="probe", timeout=2)
                except DaemonUnavailableError:  # the socket file exists before it accepts
                    probe = None
                if probe is not None:
                    with probe as c:
                        if c.health():
                            return
            time.sleep(0.05)
        raise AssertionError(f"walletd serve not ready: {self.logs()}")

    def logs(self) -> str:
        """What the daemon logged so far (also after ``stop``)."""
        if not self.log.closed:
            self.log.flush()
        return (self.home.root / "daemon.log").read_text(errors="replace")

    def stop(self) -> int:
        """SIGTERM and wait; returns the exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()
        return self.proc.returncode


@pytest.fixture
def daemon(wallet_home: WalletHome) -> Iterator[Daemon]:
    """`walletd serve` on the wallet_home data dir; stopped (SIGTERM) after the test."""
    running = Daemon(wallet_home)
    yield running
    assert running.stop() == 0, running.logs()
