"""The layer rules in pyproject.toml ([tool.importlinter]) catch a forbidden import.

``scripts/check`` runs ``lint-imports``; these tests copy the package to a temporary
directory, add one import that breaks a rule, and expect ``lint-imports`` to fail there
(and to pass on the copy left as it is).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"


def _copy_tree(dest: Path) -> Path:
    shutil.copytree(
        ROOT / "walletd",
        dest / "walletd",
        symlinks=True,
        ignore=shutil.ignore_patterns("__pycache__", "migrations"),
    )
    shutil.copy(ROOT / "pyproject.toml", dest / "pyproject.toml")
    return dest


def _lint_imports(tree: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(tree)}
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache"],
        cwd=tree,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_the_tree_keeps_every_layer_contract(tmp_path: Path) -> None:
    result = _lint_imports(_copy_tree(tmp_path))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "BROKEN" not in result.stdout


@pytest.mark.parametrize(
    ("module", "line", "contract"),
    [
        ("domain/money.py", "import sqlalchemy", "domain is pure"),
        ("domain/policy.py", "import socket", "domain is pure"),
        ("domain/demand.py", "from walletd.db import engine", "domain is pure"),
        ("service/wallet.py", "import sqlalchemy", "only db imports SQLAlchemy"),
        ("cli/config_cmds.py", "from sqlalchemy.engine import make_url", "only db imports"),
        ("service/reconcile.py", "import web3", "only chain and devnet import web3"),
        ("client/_http.py", "from walletd.service import admin", "the thin client"),
        ("client/_wallet.py", "import walletd.rpc.status", "the thin client"),
        ("config.py", "from walletd.db.engine import make_engines", "config does not"),
        ("keys/keystore.py", "from walletd.db import ledger", "keys does not"),
    ],
)
def test_a_forbidden_import_fails_the_check(
    tmp_path: Path, module: str, line: str, contract: str
) -> None:
    tree = _copy_tree(tmp_path)
    target = tree / "walletd" / module
    target.write_text(target.read_text() + f"\n{line}  # noqa\n")
    result = _lint_imports(tree)
    assert result.returncode != 0, result.stdout
    broken = result.stdout.split("Broken contracts", 1)[-1]
    assert contract in broken, result.stdout
