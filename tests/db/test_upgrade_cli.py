"""`walletd db upgrade` / `db current` on a ledger that cannot be opened: one line, exit 1."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.deploy.conftest import walletd

pytestmark = pytest.mark.slow  # each case runs the walletd CLI in a subprocess


@pytest.mark.parametrize("command", ["upgrade", "current"])
def test_a_missing_data_dir_is_one_clear_line_and_exit_1(tmp_path: Path, command: str) -> None:
    missing = tmp_path / "no-such-dir"
    out = walletd("db", command, "--data-dir", str(missing))
    assert out.returncode == 1
    assert out.stderr.splitlines() == [
        f"walletd: STORAGE_UNAVAILABLE: no ledger directory {missing}: check --data-dir "
        "(or --db-url), or create the wallet with `walletd init`"
    ]
    assert not missing.exists()


def test_a_missing_data_dir_is_a_json_error_with_json(tmp_path: Path) -> None:
    out = walletd("db", "upgrade", "--data-dir", str(tmp_path / "nope"), "--json")
    assert out.returncode == 1
    error = json.loads(out.stderr)["error"]
    assert error["reason"] == "STORAGE_UNAVAILABLE"
    assert "no ledger directory" in error["message"]
    assert "Traceback" not in out.stderr


def test_an_unreachable_postgres_is_an_error_naming_the_cause_not_a_traceback(
    tmp_path: Path,
) -> None:
    url = "postgresql+psycopg://walletd@127.0.0.1:1/walletd?connect_timeout=5"
    out = walletd("db", "upgrade", "--data-dir", str(tmp_path), "--db-url", url)
    assert out.returncode == 1
    assert out.stderr.startswith("walletd: STORAGE_UNAVAILABLE: ledger unavailable: ")
    assert "Traceback" not in out.stderr
