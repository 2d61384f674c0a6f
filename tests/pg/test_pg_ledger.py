"""PostgreSQL ledger: why budgets and idempotency keys hold across replicas, and failing closed.

The proof of exactness has two halves, both shown here on a real server:

* every Pay's first statement locks the one wallet_state row, so Pays on all
  replicas queue on it (a second Pay is seen *waiting on a lock* while the
  first is inside its transaction);
* the engine runs READ COMMITTED, so the sums the second Pay reads after the
  lock include the first one's payment. The contrast test shows that under
  REPEATABLE READ the very same schedule overspends, which is why the level
  is pinned in the engine instead of left to the server's default.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable

import pytest
from sqlalchemy import create_engine, func, select, text

from tests.pg.conftest import PRICE, GatedSigner, PgWallet, in_threads
from tests.plugins.daemon import PAY_TO, demand_header
from tests.plugins.pg import libpq_url, require_psycopg
from walletd.db import migrate, tables
from walletd.db.engine import Engines, make_engines
from walletd.db.ledger import NewPayment, Store
from walletd.domain.payment import PayCommand, PaymentStatus, PayReceipt
from walletd.domain.policy import Limits
from walletd.errors import BudgetExceededError, IdempotencyConflictError, StorageError
from walletd.service import admin
from walletd.service.wallet import WalletService

pytestmark = pytest.mark.postgres
psycopg = require_psycopg()

URL = "http://127.0.0.1:9/v1/chat/completions"


def _cmd(key: str, amount: str = str(PRICE)) -> PayCommand:
    return PayCommand(key, "POST", URL, demand_header(amount))


def _ledger_rows(wallet: PgWallet) -> tuple[int, int]:
    with wallet.engines[0].read.connect() as conn:
        count, total = conn.execute(
            select(func.count(), func.coalesce(func.sum(tables.Payment.amount), 0))
        ).one()
    return int(count), int(total)


def _wait_for(predicate, what: str, timeout: float = 90) -> None:
    """Poll until ``predicate()``; the deadline only bounds a hang, it asserts no timing."""
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"never saw: {what}"
        time.sleep(0.02)


def _sessions_waiting_on_a_lock(url: str) -> int:
    with psycopg.connect(libpq_url(url), autocommit=True) as conn:
        row = conn.execute(
            "select count(*) from pg_stat_activity "
            "where datname = current_database() and wait_event_type = 'Lock'"
        ).fetchone()
    return int(row[0]) if row else 0


def _one_payment_budget(wallet: PgWallet) -> None:
    admin.set_budget(Store(wallet.engines[0]), "svc", admin.BudgetChange(total=PRICE))


def _first_holds_the_lock_while_second_pays(
    wallet: PgWallet, second: WalletService
) -> tuple[object, object]:
    """Replica A stops inside its Pay (row locked); B pays; then A may commit. Both outcomes."""
    signer = GatedSigner()
    first, caller = wallet.replica(signer)
    signer.armed = True
    outcomes: dict[str, object] = {}

    def run(name: str, service: WalletService, key: str) -> None:
        try:
            outcomes[name] = service.pay(caller, _cmd(key))
        except Exception as exc:
            outcomes[name] = exc

    a = threading.Thread(target=run, args=("a", first, "key-a"), daemon=True)
    a.start()
    assert signer.inside.wait(60), "replica A never reached its signer"
    b = threading.Thread(target=run, args=("b", second, "key-b"), daemon=True)
    b.start()
    _wait_for(lambda: _sessions_waiting_on_a_lock(wallet.url) >= 1, "B waiting on the row lock")
    signer.gate.set()
    a.join(60)
    b.join(60)
    return outcomes["a"], outcomes["b"]


def test_engine_pins_read_committed_whatever_the_server_default(pg_url: str) -> None:
    name = pg_url.rsplit("/", 1)[1]
    with psycopg.connect(libpq_url(pg_url), autocommit=True) as conn:
        conn.execute(
            f"alter database \"{name}\" set default_transaction_isolation = 'repeatable read'"
        )
    with psycopg.connect(libpq_url(pg_url)) as conn:
        row = conn.execute("show transaction_isolation").fetchone()
        assert row is not None and row[0] == "repeatable read"
    engines = make_engines(pg_url)
    try:
        with engines.write.connect() as conn:
            assert conn.execute(text("show transaction_isolation")).scalar() == "read committed"
    finally:
        engines.dispose()


def test_second_pay_waits_on_the_wallet_row_then_sees_the_first(pg_wallet: PgWallet) -> None:
    _one_payment_budget(pg_wallet)
    second_signer = GatedSigner()
    second, _ = pg_wallet.replica(second_signer)
    first, then = _first_holds_the_lock_while_second_pays(pg_wallet, second)
    assert isinstance(first, PayReceipt)
    assert isinstance(then, BudgetExceededError)
    assert second_signer.calls == 0
    assert _ledger_rows(pg_wallet) == (1, PRICE)


def test_repeatable_read_would_overspend_so_the_level_is_pinned(pg_wallet: PgWallet) -> None:
    """The same schedule with B on REPEATABLE READ: B's sums predate A's commit.

    B then decides to pay a budget that is already spent (it signs). Whether the
    ledger's hash chain catches the stale tail at commit (StorageError) or not
    (an overspend), the decision itself is wrong, which is why the level is pinned.
    """
    _one_payment_budget(pg_wallet)
    stale = create_engine(pg_wallet.url, isolation_level="REPEATABLE READ")
    pg_wallet.engines.append(Engines(stale, stale))
    second_signer = GatedSigner()
    second = WalletService(Store(Engines(stale, stale)), second_signer, Limits())
    first, then = _first_holds_the_lock_while_second_pays(pg_wallet, second)
    assert isinstance(first, PayReceipt)
    assert second_signer.calls == 1, "B should have passed the budget check on stale sums"
    assert isinstance(then, PayReceipt | StorageError), then
    rows = (2, 2 * PRICE) if isinstance(then, PayReceipt) else (1, PRICE)
    assert _ledger_rows(pg_wallet) == rows


def test_same_key_on_many_replicas_signs_once(pg_wallet: PgWallet) -> None:
    admin.set_budget(Store(pg_wallet.engines[0]), "svc", admin.BudgetChange(total=100 * PRICE))
    replicas = [pg_wallet.replica() for _ in range(3)]

    def pay(i: int) -> PayReceipt:
        service, caller = replicas[i % 3]
        return service.pay(caller, _cmd("shared-key"))

    outcomes = in_threads(12, pay)
    receipts = [r for r in outcomes if isinstance(r, PayReceipt)]
    assert len(receipts) == len(outcomes), outcomes
    assert len({(r.payment_id, r.header_value) for r in receipts}) == 1
    assert sum(not r.reused for r in receipts) == 1
    assert sum(s._signer.calls for s, _ in replicas) == 1  # type: ignore[attr-defined]
    assert _ledger_rows(pg_wallet) == (1, PRICE)


def test_same_key_with_another_demand_on_another_replica_is_a_conflict(
    pg_wallet: PgWallet,
) -> None:
    admin.set_budget(Store(pg_wallet.engines[0]), "svc", admin.BudgetChange(total=100 * PRICE))
    (one, caller_one), (two, caller_two) = pg_wallet.replica(), pg_wallet.replica()
    one.pay(caller_one, _cmd("k"))
    with pytest.raises(IdempotencyConflictError):
        two.pay(caller_two, _cmd("k", amount=str(2 * PRICE)))
    assert _ledger_rows(pg_wallet) == (1, PRICE)


def _new_payment(client_id: int, key: str) -> NewPayment:
    nonce = "0x" + os.urandom(32).hex()
    return NewPayment(
        id="pay_" + os.urandom(12).hex(), client_id=client_id, idempotency_key=key,
        fingerprint="f" * 64, amount=PRICE, payee=PAY_TO, network="eip155:8453",
        asset=PAY_TO, payer=PAY_TO, method="POST", url=URL, host="127.0.0.1", nonce=nonce,
        valid_after=0, valid_before=2**31, header_name="PAYMENT-SIGNATURE",
        header_value="h" + nonce, labels={}, created_at_ms=int(time.time() * 1000),
    )  # fmt: skip


def test_unique_index_refuses_a_second_row_for_a_key_even_without_the_lock(
    pg_wallet: PgWallet,
) -> None:
    """The backstop under the lock: two transactions that both saw no row cannot both record."""
    stores = [pg_wallet.store(), pg_wallet.store()]
    client_id = admin.list_clients(stores[0])[0].id
    both_looked = threading.Barrier(2, timeout=120)

    def record(i: int) -> str:
        with stores[i].write() as tx:
            assert tx.client_with_payment(client_id, "dup")[1] is None
            both_looked.wait()
            tx.add_payment(_new_payment(client_id, "dup"), PaymentStatus.SIGNED, "pay")
        return "recorded"

    outcomes = in_threads(2, record)
    assert sorted(type(o).__name__ for o in outcomes) == ["StorageError", "str"], outcomes
    assert _ledger_rows(pg_wallet) == (1, PRICE)


@pytest.mark.parametrize(
    "sqlstate",
    ["40001", "40P01", "55P03", "57014", "08006"],
    ids=["serialization", "deadlock", "lock-timeout", "cancelled", "connection"],
)
def test_database_errors_inside_a_transaction_are_storage_errors(
    pg_wallet: PgWallet, sqlstate: str
) -> None:
    store = pg_wallet.store()
    raise_it = f"do $$ begin raise exception 'injected' using errcode = '{sqlstate}'; end $$"

    def inject() -> None:
        with store.write() as tx:
            tx.lock_state()
            tx._session.execute(text(raise_it))

    with pytest.raises(StorageError):
        inject()


def test_pay_that_cannot_get_the_row_lock_fails_closed(
    pg_wallet: PgWallet, monkeypatch: pytest.MonkeyPatch
) -> None:
    admin.set_budget(Store(pg_wallet.engines[0]), "svc", admin.BudgetChange(total=100 * PRICE))
    monkeypatch.setattr("walletd.db.engine.PG_LOCK_TIMEOUT_MS", 200)
    signer = GatedSigner()
    service, caller = pg_wallet.replica(signer)
    with psycopg.connect(libpq_url(pg_wallet.url)) as holder:
        holder.execute("select * from wallet_state where id = 1 for update")
        with pytest.raises(StorageError):
            service.pay(caller, _cmd("k"))
    assert signer.calls == 0
    assert _ledger_rows(pg_wallet) == (0, 0)


def test_connection_lost_before_commit_returns_no_header(pg_wallet: PgWallet) -> None:
    """Signed but not committed: the header never leaves, and the ledger has no row."""
    admin.set_budget(Store(pg_wallet.engines[0]), "svc", admin.BudgetChange(total=100 * PRICE))
    signer = GatedSigner()
    service, caller = pg_wallet.replica(signer)
    signer.armed = True
    outcome = in_threads_async(lambda: service.pay(caller, _cmd("k")))
    assert signer.inside.wait(60)
    with psycopg.connect(libpq_url(pg_wallet.url), autocommit=True) as admin_conn:
        killed = admin_conn.execute(
            "select count(*) from (select pg_terminate_backend(pid) from pg_stat_activity "
            "where datname = current_database() and state = 'idle in transaction') t"
        ).fetchone()
    assert killed is not None and killed[0] == 1
    signer.gate.set()
    assert isinstance(outcome(), StorageError)
    assert signer.calls == 1
    assert _ledger_rows(pg_wallet) == (0, 0)


def in_threads_async(target: Callable[[], object]) -> Callable[[], object]:
    """Start ``target()`` in a thread now; the returned function joins it and gives the outcome."""
    box: list[object] = []

    def run() -> None:
        try:
            box.append(target())
        except Exception as exc:
            box.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()

    def result() -> object:
        thread.join(120)
        assert box, "the call never finished"
        return box[0]

    return result


def test_deadlock_between_two_writers_is_a_storage_error_for_one(pg_wallet: PgWallet) -> None:
    first = Store(pg_wallet.engines[0])
    admin.add_client(first, "other", frozenset({"pay"}))
    stores = [pg_wallet.store(), pg_wallet.store()]
    both_hold_one = threading.Barrier(2, timeout=120)
    order = (("svc", "other"), ("other", "svc"))

    def cross(i: int) -> str:
        # Every ledger write method takes the wallet_state lock first, so it cannot
        # deadlock; plain UPDATEs in the same Store transaction still can.
        change = text("UPDATE clients SET total = :total WHERE name = :name")
        with stores[i].write() as tx:
            tx._session.execute(change, {"total": PRICE, "name": order[i][0]})
            both_hold_one.wait()
            tx._session.execute(change, {"total": PRICE, "name": order[i][1]})
        return "committed"

    outcomes = in_threads(2, cross)
    assert sorted(type(o).__name__ for o in outcomes) == ["StorageError", "str"], outcomes


def test_a_server_that_refuses_connections_is_a_storage_error_without_the_password() -> None:
    engines = make_engines("postgresql+psycopg://walletd:s3cret-pw@127.0.0.1:1/ledger")
    try:
        with pytest.raises(StorageError, match="ledger unavailable") as err:
            migrate.current_revision(engines.read)
        assert "s3cret-pw" not in str(err.value)
    finally:
        engines.dispose()


def test_plain_postgresql_url_uses_psycopg_3(pg_url: str) -> None:
    engines = make_engines(pg_url.replace("postgresql+psycopg://", "postgresql://"))
    try:
        assert engines.write.dialect.driver == "psycopg"
        migrate.upgrade(engines.write)
        migrate.require_current(engines.read)
    finally:
        engines.dispose()


def test_foreign_keys_are_enforced(pg_wallet: PgWallet) -> None:
    store = pg_wallet.store()
    with pytest.raises(StorageError), store.write() as tx:
        tx.add_event("pay_nope", 0, "signed", "x", {})
