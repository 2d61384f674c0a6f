"""README's "Quick start by hand" block, run exactly as written, so it cannot drift.

The fenced block is taken from README.md and run by bash (``-e``: the first
failing line fails the test) in a fresh directory that looks like the checkout
for ``make setup``: the Makefile, its inputs and the installed ``.venv`` and
``node_modules`` are symlinked in, so ``make setup`` has nothing to do. Nothing
in the commands is substituted; the daemon they start is a real ``walletd serve``.
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from walletd.devnet.sample import DEVNET_PAY_TO

REPO = Path(__file__).resolve().parents[2]
CHECKOUT_FILES = (
    "Makefile",
    "pyproject.toml",
    "constraints.txt",
    "package.json",
    "package-lock.json",
    ".venv",
    "node_modules",
)


def quickstart_block(readme: str) -> str:
    """The first ```sh block under the "Quick start by hand" heading."""
    section = readme.split("## Quick start by hand", 1)[1]
    found = re.search(r"```sh\n(.*?)```", section, re.DOTALL)
    assert found is not None, "no ```sh block under 'Quick start by hand'"
    return found.group(1)


@pytest.fixture
def scratch() -> Iterator[Path]:
    """A short /tmp directory (socket paths are limited) set up like the checkout for make."""
    up_to_date = subprocess.run(["make", "-q", "setup"], cwd=REPO, check=False)
    if up_to_date.returncode != 0:
        pytest.fail(
            "run `make setup` first: the quick start's `make setup` must have nothing to do"
        )
    root = Path(tempfile.mkdtemp(prefix="wd-qs-", dir="/tmp"))
    for name in CHECKOUT_FILES:
        (root / name).symlink_to(REPO / name)
    yield root
    shutil.rmtree(root, ignore_errors=True)


def _gone_within(pgid: int, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.1)
    return False


def _stop_group(pgid: int) -> bool:
    """True if the block's process group ended by itself; else stop it (TERM, then KILL)."""
    if _gone_within(pgid, 5):
        return True
    os.killpg(pgid, signal.SIGTERM)
    if not _gone_within(pgid, 15):
        os.killpg(pgid, signal.SIGKILL)
    return False


@pytest.mark.slow
def test_readme_quick_start_runs_as_written(scratch: Path) -> None:
    block = quickstart_block((REPO / "README.md").read_text())
    env = {k: v for k, v in os.environ.items() if not k.startswith(("WALLETD_", "VIRTUAL_ENV"))}
    env.pop("CREDENTIALS_DIRECTORY", None)
    env.pop("PAYMENT_REQUIRED_HEADER", None)
    # Output goes to files, not pipes: a daemon left running must not hold the test up.
    with (scratch / "stdout.txt").open("w") as stdout, (scratch / "stderr.txt").open("w") as stderr:
        proc = subprocess.Popen(
            ["bash", "-e", "-c", block],
            cwd=scratch, env=env, stdout=stdout, stderr=stderr, text=True,
            start_new_session=True,
        )  # fmt: skip
        try:
            proc.wait(timeout=240)
        finally:
            stopped = _stop_group(proc.pid)
    out = (scratch / "stdout.txt").read_text()
    err = (scratch / "stderr.txt").read_text()
    assert proc.returncode == 0, f"stdout:\n{out}\nstderr:\n{err}"
    assert stopped, "the quick start left its daemon running"

    (header,) = [line for line in out.splitlines() if line.startswith("PAYMENT-SIGNATURE: ")]
    payload = json.loads(base64.b64decode(header.split(": ", 1)[1]))
    authorization = payload["payload"]["authorization"]
    assert (authorization["to"], authorization["value"]) == (DEVNET_PAY_TO, "3000")
    assert "0.003000" in out  # `budget show`: spent today
    assert "5.000000" in out  # the daily limit given as '$5'
    assert (scratch / "pass.txt").stat().st_mode & 0o077 == 0


def test_quick_start_files_are_git_ignored(tmp_path: Path) -> None:
    probe = ["pass.txt", "wd/walletd.db", "my-service.token"]
    ignored = subprocess.run(
        ["git", "check-ignore", "--no-index", *probe],
        cwd=REPO, capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert ignored.stdout.split() == probe
