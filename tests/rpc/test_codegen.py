"""The committed walletd/v1 modules are exactly what scripts/gen_protos produces."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from walletd.rpc.permissions import METHOD_SCOPES, SERVICE_NAME, allowed
from walletd.v1 import wallet_pb2

ROOT = Path(__file__).resolve().parents[2]
GENERATED = ("wallet_pb2.py", "wallet_pb2.pyi", "wallet_pb2_grpc.py", "wallet_pb2_grpc.pyi")


def test_generated_code_is_up_to_date(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "gen_protos"), str(tmp_path)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    for name in GENERATED:
        fresh = (tmp_path / "walletd" / "v1" / name).read_bytes()
        committed = (ROOT / "walletd" / "v1" / name).read_bytes()
        assert fresh == committed, f"walletd/v1/{name} is stale: run scripts/gen_protos"


def test_gen_protos_is_executable() -> None:
    assert (ROOT / "scripts" / "gen_protos").stat().st_mode & 0o111


def _service_methods() -> set[str]:
    service = wallet_pb2.DESCRIPTOR.services_by_name["WalletService"]
    assert service.full_name == SERVICE_NAME
    return {f"/{service.full_name}/{m.name}" for m in service.methods}


def test_every_method_has_scopes() -> None:
    methods = _service_methods()
    assert methods - set(METHOD_SCOPES) == set(), "RPC without a scope entry"
    assert set(METHOD_SCOPES) - methods == set(), "scope entry for a method that is gone"
    assert all(METHOD_SCOPES.values())


@pytest.mark.parametrize(
    ("method", "scopes", "ok"),
    [
        ("Pay", {"pay"}, True),
        ("Pay", {"read"}, False),
        ("ReportOutcome", {"pay"}, True),
        ("ReportOutcome", {"read"}, False),
        ("GetBudget", {"read"}, True),
        ("GetBudget", {"pay"}, True),
        ("GetBudget", set(), False),
        ("ListPayments", {"read"}, True),
        ("ListPayments", {"pay"}, False),
        ("Unknown", {"pay", "read"}, False),
    ],
)
def test_allowed(method: str, scopes: set[str], ok: bool) -> None:
    assert allowed(f"/{SERVICE_NAME}/{method}", frozenset(scopes)) is ok
