"""deploy/Dockerfile and deploy/compose.yaml, checked without Docker (it cannot run here).

The compose file is parsed when a YAML parser is installed (none is added for
this); the Dockerfile is checked line by line for the properties the issue
asks for, and its commands are parsed by the real CLI.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import click
import pytest

from tests.deploy.conftest import DEPLOY

DOCKERFILE = (DEPLOY / "Dockerfile").read_text()


def _instructions(name: str) -> list[str]:
    joined = DOCKERFILE.replace("\\\n", " ")
    return [line.split(None, 1)[1] for line in joined.splitlines() if line.startswith(name + " ")]


def _parse(argv: list[str], tmp_path: Path) -> click.Context:
    """Parse ``walletd ARGV`` with the real CLI, without running it.

    The passphrase file must exist for click, so its (secret mount) path is
    checked and then swapped for a temp file.
    """
    from walletd.cli import main

    args = list(argv)
    if "--passphrase-file" in args:
        i = args.index("--passphrase-file") + 1
        assert args[i].startswith("/run/secrets/"), args[i]
        args[i] = str(tmp_path / "passphrase")
        Path(args[i]).write_text("x\n")
    command: click.Command = main
    name = "walletd"
    while isinstance(command, click.Group):
        name, args = args[0], args[1:]
        command = command.commands[name]
    return command.make_context(name, args)


def test_dockerfile_is_slim_non_root_and_installs_server_and_postgres() -> None:
    assert all(f.startswith("python:3.11-slim") for f in _instructions("FROM"))
    user = _instructions("USER")[-1]
    assert user.split(":")[0] not in ("root", "0")
    assert any('".[server,postgres]"' in run for run in _instructions("RUN"))
    assert not any(re.search(r"PASSPHRASE|PASSWORD", env) for env in _instructions("ENV"))


def test_dockerfile_health_check_is_the_grpc_health_command() -> None:
    from walletd.cli.serve_cmds import health

    (check,) = _instructions("HEALTHCHECK")
    argv = json.loads(check.split("CMD", 1)[1])
    assert argv[:2] == ["walletd", "health"]
    ctx = health.make_context("health", argv[2:])
    assert str(ctx.params["socket"]) == "/run/walletd/walletd.sock"


def test_dockerfile_default_command_is_accepted_by_serve(tmp_path: Path) -> None:
    argv = json.loads(_instructions("CMD")[-1])
    assert argv[0] == "serve"
    ctx = _parse(argv, tmp_path)
    assert ctx.params["socket"] == "/run/walletd/walletd.sock"
    assert (ctx.params["socket_group"], ctx.params["socket_mode"]) == ("walletd-clients", "0660")


def test_compose_runs_walletd_with_postgres_and_file_secrets() -> None:
    yaml = pytest.importorskip("yaml", reason="no YAML parser installed")
    doc = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    services = doc["services"]
    assert {"walletd", "postgres"} <= set(services)
    walletd = services["walletd"]
    assert "walletd-passphrase" in walletd["secrets"]
    assert doc["secrets"]["walletd-passphrase"] == {"file": "./secrets/walletd-passphrase"}
    assert "--passphrase-file" in walletd["command"]
    for service in services.values():
        env = json.dumps(service.get("environment", {}))
        assert not re.search(r"PASSWORD\"|PASSPHRASE|PGPASSWORD", env), env
    assert walletd["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert walletd["read_only"] is True
    assert walletd["cap_drop"] == ["ALL"]
    assert doc["networks"]["ledger"]["internal"] is True


def test_compose_commands_are_accepted_by_the_cli(tmp_path: Path) -> None:
    yaml = pytest.importorskip("yaml", reason="no YAML parser installed")
    doc = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    serve = _parse(doc["services"]["walletd"]["command"], tmp_path)
    assert serve.params["config_path"] == Path("/etc/walletd/walletd.toml")
    migrate = _parse(doc["services"]["migrate"]["command"], tmp_path)
    assert migrate.command.name == "upgrade"
    mounts = doc["services"]["walletd"]["volumes"]
    assert "./walletd.compose.toml:/etc/walletd/walletd.toml:ro" in mounts
