"""AsyncWalletClient against the real server; asyncio.run keeps each test's loop its own."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from tests.rpc.conftest import BOTH_TOKEN, READ_TOKEN, FakeWalletApi
from walletd.client import (
    AsyncWalletClient,
    BudgetExceededError,
    DaemonUnavailableError,
    PermissionDeniedError,
    UnauthenticatedError,
)
from walletd.rpc.server import RpcServer


def test_async_round_trip(rpc_server: RpcServer, socket_path: Path) -> None:
    async def main() -> None:
        async with AsyncWalletClient(socket=socket_path, token=BOTH_TOKEN, timeout=5) as c:
            receipt = await c.pay("a-1", "GET", "https://x", labels={"k": "v"})
            assert receipt.payment_id == "pay_a-1"
            assert receipt.amount == 10**18 + 7
            assert await c.report_outcome("pay_a-1", 402) == "rejected"
            assert (await c.get_budget()).client == "carol"
            assert len(await c.list_payments(limit=1)) == 1
            assert await c.health() is True

    asyncio.run(main())


def test_async_four_concurrent_pays(
    rpc_server: RpcServer, socket_path: Path, fake_api: FakeWalletApi
) -> None:
    async def main() -> list[str]:
        async with AsyncWalletClient(socket=socket_path, token=BOTH_TOKEN, timeout=5) as c:
            receipts = await asyncio.gather(
                *(c.pay(f"c-{i}", "GET", "https://x") for i in range(4))
            )
        return [r.payment_id for r in receipts]

    assert asyncio.run(main()) == [f"pay_c-{i}" for i in range(4)]
    assert sorted(cmd.idempotency_key for _, cmd in fake_api.commands) == [
        f"c-{i}" for i in range(4)
    ]


def test_async_errors_are_mapped(
    rpc_server: RpcServer, socket_path: Path, fake_api: FakeWalletApi
) -> None:
    async def main() -> None:
        async with AsyncWalletClient(socket=socket_path, timeout=5) as anon:
            with pytest.raises(UnauthenticatedError):
                await anon.get_budget()
        async with AsyncWalletClient(socket=socket_path, token=READ_TOKEN, timeout=5) as reader:
            with pytest.raises(PermissionDeniedError):
                await reader.pay("k", "GET", "https://x")
        fake_api.error = BudgetExceededError("over", {"window": "daily", "limit": "7"})
        async with AsyncWalletClient(socket=socket_path, token=BOTH_TOKEN, timeout=5) as c:
            with pytest.raises(BudgetExceededError) as info:
                await c.pay("k", "GET", "https://x")
            assert info.value.limit == 7
            assert info.value.details == {"window": "daily", "limit": "7"}

    asyncio.run(main())


def test_async_client_is_created_outside_a_loop_and_used_in_two(
    rpc_server: RpcServer, socket_path: Path
) -> None:
    client = AsyncWalletClient(socket=socket_path, token=BOTH_TOKEN, timeout=5)

    async def use() -> str:
        state = await client.get_budget()
        await client.aclose()
        return state.client

    assert asyncio.run(use()) == "carol"
    assert asyncio.run(use()) == "carol"


def test_async_daemon_down(sock_dir: Path) -> None:
    absent = sock_dir / "absent.sock"
    with pytest.raises(DaemonUnavailableError, match=f"nothing is listening at {absent}"):
        AsyncWalletClient(socket=absent, timeout=0.3)
