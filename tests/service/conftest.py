"""A WalletService over a real, migrated ledger (SQLite and PostgreSQL) and a counting signer."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import pytest
from eth_account import Account
from eth_typing import Hash32

from walletd.db import migrate
from walletd.db.engine import make_engines
from walletd.db.ledger import Store
from walletd.domain.payment import Caller
from walletd.domain.policy import Limits
from walletd.service import admin
from walletd.service.wallet import WalletService

if TYPE_CHECKING:
    from eth_account.signers.local import LocalAccount


class CountingSigner:
    """Signs with ``account`` (default: a throwaway key) and counts how often it was asked to."""

    def __init__(self, account: LocalAccount | None = None) -> None:
        self._account = account if account is not None else Account.create()
        self.calls = 0

    @property
    def address(self) -> str:
        return str(self._account.address)

    def sign_hash(self, digest: bytes) -> bytes:
        self.calls += 1
        return bytes(self._account.unsafe_sign_hash(Hash32(digest)).signature)


@dataclass
class Ledger:
    store: Store
    signer: CountingSigner
    service: WalletService
    caller: Caller
    token: str


@pytest.fixture
def ledger(ledger_url: str) -> Iterator[Ledger]:
    """Parametrized over both backends by ``ledger_url`` (tests/plugins/pg.py)."""
    engines = make_engines(ledger_url)
    migrate.upgrade(engines.write)
    store = Store(engines)
    token = admin.add_client(store, "svc", frozenset({"pay", "read"}))
    admin.set_budget(store, "svc", admin.BudgetChange(per_request=10_000, daily=100_000))
    signer = CountingSigner()
    service = WalletService(store, signer, Limits())
    yield Ledger(store, signer, service, service.authenticate(token), token)
    engines.dispose()
