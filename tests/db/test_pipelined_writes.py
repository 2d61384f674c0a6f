"""Pay's writes sent together (PostgreSQL pipeline mode) still fail whole and at once (both backends)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import func, select

from tests.db.test_spend_buckets import NOW, _payment
from walletd.db import migrate, tables
from walletd.db.engine import make_engines
from walletd.db.ledger import Store
from walletd.domain.payment import PaymentStatus
from walletd.errors import StorageError
from walletd.service import admin


@pytest.fixture
def store(ledger_url: str) -> Iterator[Store]:
    engines = make_engines(ledger_url)
    migrate.upgrade(engines.write)
    made = Store(engines)
    admin.add_client(made, "a", frozenset({"pay"}))
    yield made
    engines.dispose()


def _count(store: Store, table: type[tables.Base]) -> int:
    with store.connection() as conn:
        return int(conn.execute(select(func.count()).select_from(table)).scalar_one())


def test_pipelined_writes_are_all_recorded(store: Store) -> None:
    with store.read() as tx:
        client_id = tx.client_by_name("a").id
    with store.write() as tx:
        for offset in (0, 1):
            with tx.pipelined():
                tx.add_payment(_payment(client_id, NOW + offset, 5), PaymentStatus.SIGNED, "pay")
    assert (_count(store, tables.Payment), _count(store, tables.PaymentEvent)) == (2, 2)
    with store.read() as tx:
        assert tx.spent(client_id, NOW + 2)["daily"] == 10


def test_a_violated_constraint_inside_pipelined_writes_fails_and_records_nothing(
    store: Store,
) -> None:
    with store.read() as tx:
        client_id = tx.client_by_name("a").id
    twice = _payment(client_id, NOW, 5)

    def pay_twice() -> None:
        with store.write() as tx, tx.pipelined():
            tx.add_payment(twice, PaymentStatus.SIGNED, "pay")
            tx.add_payment(twice, PaymentStatus.SIGNED, "pay")  # the same id again

    with pytest.raises(StorageError, match="constraint"):
        pay_twice()
    assert (_count(store, tables.Payment), _count(store, tables.PaymentEvent)) == (0, 0)
    with store.write() as tx, tx.pipelined():  # the ledger is usable afterwards
        tx.add_payment(_payment(client_id, NOW, 7), PaymentStatus.SIGNED, "pay")
    assert _count(store, tables.Payment) == 1
