"""Fixtures for the thin client: one daemon per module, a funded wallet per test.

Starting a wallet (init + client + budget + serve) costs seconds, so one daemon
serves a whole module; each test gets a chain snapshot (``chain``), fresh USDC
and looks only at the ledger rows it created.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.plugins.chain import Chain
from tests.plugins.daemon import WalletHome, client_daemon
from tests.plugins.devnet import DevnetApi
from walletd.client import PaymentView, WalletClient, WalletdSettings

FUNDS = 1_000_000  # 1 USDC
CHAT_PRICE = 3000
IMAGE_PRICE = 20000
CHAT_MODEL = "llama-3.3-70b"
IMAGE_MODEL = "flux-dev"


@dataclass
class Wallet:
    """The module's running daemon and one client token, as a test sees them."""

    home: WalletHome
    token_file: Path
    api: DevnetApi
    chain: Chain
    seen: frozenset[str] = frozenset()

    @property
    def socket(self) -> Path:
        return self.home.socket

    @property
    def address(self) -> str:
        return self.home.address

    def settings(self, **options: Any) -> WalletdSettings:
        """What a paying client needs to reach this daemon as ``svc``."""
        return WalletdSettings(socket=self.socket, token_file=self.token_file, **options)

    def client(self) -> WalletClient:
        return WalletClient(socket=self.socket, token_file=self.token_file, timeout=30)

    def new_payments(self) -> list[PaymentView]:
        """Ledger rows made since the test started, oldest first."""
        with self.client() as wallet:
            rows = wallet.list_payments(limit=1000)
        return [r for r in reversed(rows) if r.payment_id not in self.seen]

    def balances(self) -> tuple[int, int]:
        """(our USDC, the payee's USDC)."""
        return self.chain.usdc_balance(self.address), self.chain.usdc_balance(self.api.pay_to)

    def env(self) -> dict[str, str]:
        """Environment for a `walletd` subprocess that finds this daemon."""
        env = dict(self.home.env)
        env["WALLETD_SOCKET"] = str(self.socket)
        env["WALLETD_TOKEN_FILE"] = str(self.token_file)
        return env


@pytest.fixture(scope="module")
def module_daemon() -> Iterator[tuple[WalletHome, Path]]:
    """An initialised wallet with client `svc` (daily budget 5 USD) and its daemon."""
    with client_daemon("--daily", "5") as found:
        yield found


@pytest.fixture
def wallet(module_daemon: tuple[WalletHome, Path], chain: Chain, devnet_api: DevnetApi) -> Wallet:
    """The module's daemon with 1 USDC minted for this test (rolled back after it)."""
    home, token = module_daemon
    chain.mint(home.address, FUNDS)
    found = Wallet(home, token, devnet_api, chain)
    found.seen = frozenset(p.payment_id for p in found.new_payments())
    return found
