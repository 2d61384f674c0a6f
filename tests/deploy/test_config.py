"""deploy/walletd.toml tells the truth, and `walletd config check` validates and redacts."""

from __future__ import annotations

import json
import tomllib
from dataclasses import fields
from pathlib import Path

import pytest

from tests.deploy.conftest import DEPLOY, walletd
from walletd import config as config_module
from walletd.config import Settings, load_settings

SAMPLE = DEPLOY / "walletd.toml"


def test_sample_config_loads_to_exactly_the_code_defaults(tmp_path: Path) -> None:
    assert load_settings(tmp_path, SAMPLE) == Settings(data_dir=tmp_path)


def test_sample_config_sets_every_option_but_the_data_dir() -> None:
    """A new setting without a line (and a comment) in the sample fails here."""
    doc = tomllib.loads(SAMPLE.read_text())
    given = {config_module._SECTIONS[section][key] for section, body in doc.items() for key in body}
    assert given == {f.name for f in fields(Settings)} - {"data_dir"}
    assert "--data-dir" in SAMPLE.read_text()  # where the data dir is set instead


def test_sample_config_comments_every_option() -> None:
    lines = SAMPLE.read_text().splitlines()
    for i, line in enumerate(lines):
        if "=" in line and not line.startswith("#"):
            above = lines[i - 1].strip()
            assert above.startswith("#") or "=" in above, f"no comment above {line!r}"


def test_compose_config_is_valid_and_points_at_postgres(tmp_path: Path) -> None:
    settings = load_settings(tmp_path, DEPLOY / "walletd.compose.toml")
    assert settings.db_url.startswith("postgresql+psycopg://walletd@postgres:5432/")


def test_config_check_prints_the_effective_settings(tmp_path: Path) -> None:
    out = walletd("config", "check", "--config", str(SAMPLE), "--data-dir", str(tmp_path), "--json")
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    assert doc["ok"] is True
    assert doc["config"] == str(SAMPLE)
    assert doc["settings"]["ledger"] == f"sqlite:///{tmp_path}/walletd.db"
    assert doc["settings"]["networks"] == ["eip155:8453"]
    assert doc["settings"]["socket_path"] == str(tmp_path / "walletd.sock")


def test_config_check_without_a_file_shows_the_defaults(tmp_path: Path) -> None:
    out = walletd("config", "check", "--data-dir", str(tmp_path))
    assert out.returncode == 0, out.stderr
    assert "config: (none: defaults)" in out.stdout
    assert "max_validity_seconds = 300" in out.stdout


def test_config_check_redacts_secrets(tmp_path: Path) -> None:
    path = tmp_path / "walletd.toml"
    path.write_text(
        '[db]\nurl = "postgresql+psycopg://walletd:pg-s3cret@db.internal:5432/ledger"\n'
        '[chain]\nrpc_url = "https://user:pw-s3cret@base.example.com/v2/API-KEY-s3cret?k=q-s3cret"\n'
    )
    for fmt in ((), ("--json",)):
        out = walletd("config", "check", "--config", str(path), "--data-dir", str(tmp_path), *fmt)
        assert out.returncode == 0, out.stderr
        assert "s3cret" not in out.stdout + out.stderr
        assert "db.internal:5432/ledger" in out.stdout
        assert "https://***@base.example.com/***" in out.stdout


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        ('[rpc]\nlisten = "127.0.0.1:9443"\n', "TLS only"),
        ('[rpc]\ntls_cert = "/nonexistent/cert.pem"\n', "rpc.listen is empty"),
        ('[db]\nurl = "not a url"\n', "not a database URL"),
        ('[db]\nurl = "mysql://x@h/db"\n', "not mysql"),
        ("[policy]\nmax_validity_seconds = 5\n", "max_validity_seconds"),
        ("[polcy]\nnetworks = []\n", "unknown section"),
        ("[rpc]\nsockets = 'x'\n", "unknown key rpc.sockets"),
    ],
    ids=["tcp-without-tls", "tls-without-listen", "bad-url", "other-backend", "limits",
         "unknown-section", "unknown-key"],
)  # fmt: skip
def test_config_check_refuses_what_serve_would_refuse(
    tmp_path: Path, toml: str, message: str
) -> None:
    path = tmp_path / "walletd.toml"
    path.write_text(toml)
    out = walletd("config", "check", "--config", str(path), "--data-dir", str(tmp_path))
    assert out.returncode == 1
    assert message in out.stderr


def test_config_check_refuses_a_missing_file(tmp_path: Path) -> None:
    out = walletd("config", "check", "--config", str(tmp_path / "nope.toml"))
    assert out.returncode == 2  # click: the path must exist
