"""PostgreSQL-only fixtures: a migrated database, and in-process "replicas" on it.

A replica here is a WalletService with its own engine (its own connection
pool), which is what separate walletd processes look like to PostgreSQL; the
real multi-process race is in test_replica_race.py.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import pytest

from tests.service.conftest import CountingSigner
from walletd.db import migrate
from walletd.db.engine import Engines, make_engines
from walletd.db.ledger import Store
from walletd.domain.payment import Caller
from walletd.domain.policy import Limits
from walletd.service import admin
from walletd.service.wallet import WalletService

PRICE = 3000


class GatedSigner(CountingSigner):
    """A signer that, once armed, stops inside sign_hash (inside Pay's transaction) until opened.

    That holds the wallet_state row lock for as long as a test needs, without
    any sleep: the test decides when the first Pay may commit.
    """

    def __init__(self) -> None:
        super().__init__()
        self.armed = False
        self.inside = threading.Event()
        self.gate = threading.Event()

    def sign_hash(self, digest: bytes) -> bytes:
        if self.armed:
            self.inside.set()
            assert self.gate.wait(120), "the test never opened the gate"
        return super().sign_hash(digest)


@dataclass
class PgWallet:
    """A migrated PostgreSQL ledger with one client; ``replica()`` adds services on it."""

    url: str
    token: str
    engines: list[Engines] = field(default_factory=list)

    def store(self) -> Store:
        """A Store on a new engine (a new pool, as another process would have)."""
        engines = make_engines(self.url)
        self.engines.append(engines)
        return Store(engines)

    def replica(self, signer: CountingSigner | None = None) -> tuple[WalletService, Caller]:
        """A WalletService on its own engine, and the client as it sees it."""
        service = WalletService(self.store(), signer or CountingSigner(), Limits())
        return service, service.authenticate(self.token)


@pytest.fixture
def pg_wallet(pg_url: str) -> Iterator[PgWallet]:
    """A migrated PostgreSQL ledger with client ``svc`` (pay, read) and no limits set yet."""
    engines = make_engines(pg_url)
    migrate.upgrade(engines.write)
    store = Store(engines)
    token = admin.add_client(store, "svc", frozenset({"pay", "read"}))
    wallet = PgWallet(pg_url, token, [engines])
    yield wallet
    for made in wallet.engines:
        made.dispose()


def in_threads(count: int, target: Callable[[int], object]) -> list[object]:
    """Run ``target(i)`` in ``count`` threads started together; results (or exceptions) by i."""
    start = threading.Barrier(count, timeout=120)
    results: list[object] = [None] * count

    def run(i: int) -> None:
        start.wait()
        try:
            results[i] = target(i)
        except Exception as exc:
            results[i] = exc

    # daemon: a thread stuck on a lock must fail this test, not hang the interpreter's exit
    threads = [threading.Thread(target=run, args=(i,), daemon=True) for i in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(240)
    assert not any(t.is_alive() for t in threads), "a thread is stuck"
    return results
