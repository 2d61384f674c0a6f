"""The thin client must import nothing of the daemon: it is the base install."""

from __future__ import annotations

import json
import subprocess
import sys

FORBIDDEN = (
    "sqlalchemy",
    "alembic",
    "cryptography",
    "eth_account",
    "coincurve",
    "web3",
    # grpc/__init__ itself imports the empty top-level grpc_health/grpc_reflection
    # packages when installed; their services (server extras) must stay unloaded.
    "grpc_health.v1",
    "grpc_reflection.v1alpha",
    "walletd.service",
    "walletd.db",
    "walletd.keys",
    "walletd.rpc",
    # the mcp extra: PayingMCPSession loads it on first use
    "mcp",
)

PROGRAM = """
import json, sys
import walletd.client
print(json.dumps(sorted(sys.modules)))
"""


def test_client_import_is_thin() -> None:
    out = subprocess.run(
        [sys.executable, "-c", PROGRAM], capture_output=True, text=True, check=True
    ).stdout
    modules = json.loads(out)
    bad = [m for m in modules if any(m == f or m.startswith(f + ".") for f in FORBIDDEN)]
    assert bad == []
    assert "walletd.v1.wallet_pb2_grpc" in modules


def test_all_is_complete() -> None:
    import walletd.client as client
    from walletd.errors import all_error_classes

    assert set(client.__all__) >= {cls.__name__ for cls in all_error_classes()}
    assert {"WalletClient", "AsyncWalletClient", "PayReceipt", "BudgetState", "PaymentView"} <= set(
        client.__all__
    )
    for name in client.__all__:
        assert hasattr(client, name)
