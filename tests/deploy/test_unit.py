"""deploy/walletd.service: systemd accepts it, it is hardened, and its choices hold.

``systemd-analyze verify`` checks that ExecStart's binary exists, so the test
verifies a copy whose binary path points at this environment's ``walletd``;
every other line is the shipped one. MemoryDenyWriteExecute= is proved by
running the daemon under ``prctl(PR_SET_MDWE)``, the same W^X rule the kernel
enforces for systemd's option: init, serve, health and a signed payment.
"""

from __future__ import annotations

import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.deploy.conftest import DEPLOY
from tests.plugins.daemon import WalletHome, demand_header

UNIT = DEPLOY / "walletd.service"
INSTALLED_BINARY = "/opt/walletd/bin/walletd"


def _directives() -> dict[str, list[str]]:
    """Key -> values of the unit, with backslash continuations joined."""
    text = UNIT.read_text().replace("\\\n", " ")
    found: dict[str, list[str]] = {}
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";", "[")):
            continue
        key, _, value = line.partition("=")
        found.setdefault(key.strip(), []).append(value.strip())
    return found


def _exec_start() -> list[str]:
    return shlex.split(_directives()["ExecStart"][0])


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze not here")
def test_systemd_analyze_verify_accepts_the_unit(tmp_path: Path) -> None:
    binary = Path(sys.executable).with_name("walletd")
    assert binary.exists(), "the venv has no walletd script (pip install -e .)"
    unit = tmp_path / "walletd.service"
    unit.write_text(UNIT.read_text().replace(INSTALLED_BINARY, str(binary)))
    out = subprocess.run(
        ["systemd-analyze", "verify", "--man=no", str(unit)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    assert "walletd.service" not in out.stderr, out.stderr  # no warnings about our unit


def test_unit_is_hardened() -> None:
    d = _directives()
    required = {
        "NoNewPrivileges": "yes", "ProtectSystem": "strict", "ProtectHome": "yes",
        "PrivateTmp": "yes", "PrivateDevices": "yes", "RuntimeDirectory": "walletd",
        "StateDirectory": "walletd", "UMask": "0077", "CapabilityBoundingSet": "",
        "RestrictAddressFamilies": "AF_UNIX AF_INET AF_INET6",
        "SystemCallFilter": "@system-service", "MemoryDenyWriteExecute": "yes",
        "User": "walletd", "Group": "walletd", "SupplementaryGroups": "walletd-clients",
        "LoadCredential": "walletd-passphrase:/etc/walletd/passphrase",
    }  # fmt: skip
    for key, value in required.items():
        assert value in d.get(key, []), f"{key}={value} missing"
    assert "Environment" not in d, "secrets never go through the environment"


def test_the_daemon_is_favoured_over_its_callers_and_the_benchmark_runs_it_so() -> None:
    """Nice=-10: Pay's serial write section must not queue for CPU behind the callers."""
    from bench.pay_load import deployed_nice

    assert _directives()["Nice"] == ["-10"]
    assert deployed_nice() == -10


def test_exec_start_is_a_command_line_serve_accepts() -> None:
    from walletd.cli.serve_cmds import serve

    argv = _exec_start()
    assert argv[:2] == [INSTALLED_BINARY, "serve"]
    ctx = serve.make_context("serve", argv[2:])
    assert ctx.params["socket"] == "/run/walletd/walletd.sock"
    assert (ctx.params["socket_group"], ctx.params["socket_mode"]) == ("walletd-clients", "0660")
    assert ctx.params["passphrase_file"] is None  # it comes from the credential


MDWE_LAUNCHER = """
# prctl(PR_SET_MDWE=65, PR_MDWE_REFUSE_EXEC_GAIN=1): no W+X memory from here on.
import ctypes, mmap, runpy, sys
libc = ctypes.CDLL(None, use_errno=True)
if libc.prctl(65, 1, 0, 0, 0) != 0:
    sys.exit(97)
try:
    mmap.mmap(-1, 4096, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
    sys.exit(98)  # W+X memory still allowed: the rule is not on
except OSError:
    pass
sys.argv = ["walletd", *sys.argv[1:]]
runpy.run_module("walletd", run_name="__main__")
"""


def _mdwe_supported() -> bool:
    probe = subprocess.run(
        [sys.executable, "-c", MDWE_LAUNCHER, "--version"], capture_output=True, check=False
    )
    return probe.returncode == 0


def _mdwe(home: WalletHome, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", MDWE_LAUNCHER, *args],
        capture_output=True,
        text=True,
        env=home.env,
        timeout=120,
        check=False,
    )


@pytest.mark.slow
def test_daemon_runs_and_signs_with_memory_deny_write_execute(wallet_home: WalletHome) -> None:
    if not _mdwe_supported():
        pytest.skip("this kernel has no prctl(PR_SET_MDWE) (Linux >= 6.3)")
    token = wallet_home.add_client("svc")
    wallet_home.admin("budget", "set", "svc", "--daily", "1")
    launcher = [sys.executable, "-c", MDWE_LAUNCHER, "serve", "--data-dir",
                str(wallet_home.data_dir), "--passphrase-file", str(wallet_home.passphrase_file)]  # fmt: skip
    log = (wallet_home.root / "mdwe.log").open("wb")
    proc = subprocess.Popen(launcher, env=wallet_home.env, stdout=log, stderr=log)
    try:
        health = None
        for _ in range(600):
            health = _mdwe(wallet_home, "health", "--socket", str(wallet_home.socket))
            if health.returncode == 0 or proc.poll() is not None:
                break
            time.sleep(0.1)
        assert health is not None and health.returncode == 0, health and health.stderr
        paid = _mdwe(
            wallet_home, "pay", "--socket", str(wallet_home.socket), "--token-file", str(token),
            "--url", "http://127.0.0.1:9/x", "--payment-required", demand_header(),
        )  # fmt: skip
        assert paid.returncode == 0, paid.stderr
        assert paid.stdout.startswith("PAYMENT-SIGNATURE: ")
    finally:
        proc.terminate()
        assert proc.wait(timeout=30) == 0, (wallet_home.root / "mdwe.log").read_text()
        log.close()
