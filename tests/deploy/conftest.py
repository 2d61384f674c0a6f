"""Helpers for the deploy/ tests: the files under test, and `walletd` run as a subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"


def walletd(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run `python -m walletd ARGS` with no WALLETD_* variables from the caller's environment."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("WALLETD_")}
    clean.pop("CREDENTIALS_DIRECTORY", None)
    clean.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "walletd", *args],
        capture_output=True,
        text=True,
        env=clean,
        timeout=120,
        check=False,
    )
