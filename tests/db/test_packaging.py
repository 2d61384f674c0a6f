"""The wheel carries the Alembic scripts, so an installed walletd can make its own schema."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from walletd.db import migrate

ROOT = Path(__file__).resolve().parents[2]


def test_the_package_finds_the_top_level_migrations() -> None:
    assert migrate.migrations_dir().resolve() == (ROOT / "migrations").resolve()


@pytest.mark.slow
def test_the_wheel_ships_every_migration(tmp_path: Path) -> None:
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "-q",
            "--no-deps",
            "--no-build-isolation",
            "-w",
            str(tmp_path),
            str(ROOT),
        ],
        check=True,
        capture_output=True,
    )
    (wheel,) = tmp_path.glob("walletd-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    expected = {
        f"walletd/migrations/{p.relative_to(ROOT / 'migrations').as_posix()}"
        for p in (ROOT / "migrations").rglob("*")
        if p.is_file() and "__pycache__" not in p.parts
    }
    assert expected <= names, sorted(expected - names)
