"""Fixtures for the gRPC edge: a fake WalletApi (no database) served on a temp socket."""

from __future__ import annotations

import shutil
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from walletd.client import WalletClient
from walletd.domain.budget import BudgetState, WindowState
from walletd.domain.payment import Caller, PayCommand, PaymentView, PayReceipt
from walletd.domain.report import (
    BUCKETS,
    ReportQuery,
    ReportRow,
    SpendReport,
    Tally,
    total_of,
)
from walletd.errors import NotFoundError, UnauthenticatedError
from walletd.rpc import server as rpc_server_module
from walletd.rpc.server import RpcServer, build_server

PAY_TOKEN = "tok-pay-0123456789"
READ_TOKEN = "tok-read-0123456789"
BOTH_TOKEN = "tok-both-0123456789"


class FakeWalletApi:
    """A WalletApi that answers from memory; ``error`` makes every call raise it."""

    def __init__(self) -> None:
        self.tokens = {
            PAY_TOKEN: Caller(1, "alice", frozenset({"pay"})),
            READ_TOKEN: Caller(2, "bob", frozenset({"read"})),
            BOTH_TOKEN: Caller(3, "carol", frozenset({"pay", "read"})),
        }
        self.error: BaseException | None = None
        self.commands: list[tuple[Caller, PayCommand]] = []
        self.outcomes: list[tuple[str, int, str]] = []
        self.pay_gate: threading.Event | None = None
        self.pay_entered = threading.Event()
        self._lock = threading.Lock()

    def _maybe_raise(self) -> None:
        if self.error is not None:
            raise self.error

    def authenticate(self, token: str) -> Caller:
        caller = self.tokens.get(token)
        if caller is None:
            raise UnauthenticatedError("unknown token")
        return caller

    def identify(self, token: str) -> Caller:
        return self.authenticate(token)

    def pay(self, caller: Caller, cmd: PayCommand) -> PayReceipt:
        self.pay_entered.set()
        if self.pay_gate is not None:
            self.pay_gate.wait(10)
        self._maybe_raise()
        with self._lock:
            self.commands.append((caller, cmd))
        return PayReceipt(
            payment_id=f"pay_{cmd.idempotency_key}",
            header_name="PAYMENT-SIGNATURE",
            header_value="eyJzaWduZWQiOnRydWV9",
            amount=10**18 + 7,  # bigger than int64: amounts are strings on the wire
            payee="0x" + "ab" * 20,
            network="eip155:84532",
            valid_before=1_900_000_000,
            reused=False,
        )

    def report_outcome(
        self, caller: Caller, payment_id: str, http_status: int, payment_response: str
    ) -> str:
        self._maybe_raise()
        if not payment_id.startswith("pay_"):
            raise NotFoundError("no such payment", {"payment_id": payment_id})
        self.outcomes.append((payment_id, http_status, payment_response))
        return "settled" if http_status < 400 else "rejected"

    def get_budget(self, caller: Caller) -> BudgetState:
        self._maybe_raise()
        return BudgetState(
            client=caller.name,
            windows=(
                WindowState("per_request", 1_000_000, 0, 1_000_000),
                WindowState("daily", 5_000_000, 1_250_000, 3_750_000),
                WindowState("global_total", None, 42, None),
            ),
            frozen=False,
        )

    def list_payments(self, caller: Caller, limit: int) -> list[PaymentView]:
        self._maybe_raise()
        return [
            PaymentView(
                payment_id=f"pay_{i}",
                client=caller.name,
                status="signed",
                amount=1000 * i,
                payee="0x" + "cd" * 20,
                network="eip155:84532",
                url=f"https://api.example/{i}",
                created_at=1_800_000_000 + i,
                valid_before=1_800_000_600 + i,
                nonce="0x" + f"{i:064x}",
                labels={"limit": str(limit), "i": str(i)},
            )
            for i in range(min(limit, 3))
        ]

    def spend_report(self, caller: Caller, query: ReportQuery) -> SpendReport:
        """One group: an upto payment that authorized 0.02 USD and was charged 0.007777."""
        settled = {"settled": Tally(1, 7_777)}
        row = ReportRow(("0xpayee",), {**dict.fromkeys(BUCKETS, Tally()), **settled},
                        confirmed=Tally(1, 7_777), authorized=20_000)  # fmt: skip
        return SpendReport(query, 1_700_000_000_000, (row,), total_of([row]))


@pytest.fixture
def sock_dir() -> Iterator[Path]:
    """A short directory under /tmp: AF_UNIX paths are limited to 107 bytes."""
    path = Path(tempfile.mkdtemp(dir="/tmp", prefix="wd-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def fake_api() -> FakeWalletApi:
    return FakeWalletApi()


@pytest.fixture
def socket_path(sock_dir: Path) -> Path:
    return sock_dir / "walletd.sock"


@pytest.fixture
def no_watcher(monkeypatch: pytest.MonkeyPatch) -> None:
    """Keep the socket watcher asleep: the test's own ``check_socket`` call is the one that acts.

    Request it before the server's fixture (fixtures start in the order asked for).
    """
    monkeypatch.setattr(rpc_server_module, "SOCKET_CHECK_S", 3600.0)


@pytest.fixture
def rpc_server(fake_api: FakeWalletApi, socket_path: Path) -> Iterator[RpcServer]:
    server = build_server(fake_api, socket_path=socket_path, max_workers=8)
    server.start()
    yield server
    server.stop(grace=0)


@pytest.fixture
def client(rpc_server: RpcServer, socket_path: Path) -> Iterator[WalletClient]:
    with WalletClient(socket=socket_path, token=BOTH_TOKEN, timeout=5) as c:
        yield c
