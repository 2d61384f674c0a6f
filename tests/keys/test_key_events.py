"""Key operations are recorded in the ledger (chained, audited, never a secret) on both backends.

``walletd.service.keys`` against a real migrated ledger (``ledger_url``: SQLite
and PostgreSQL) and keystores in a temp data dir, with a cheap KDF.
"""

from __future__ import annotations

import json
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import select, update

from tests.keys.conftest import FAST, PASSPHRASE, TEST_ADDRESS, TEST_KEY
from tests.plugins.daemon import demand_header
from tests.service.conftest import CountingSigner
from walletd.db import migrate, queries, tables
from walletd.db.engine import make_engines
from walletd.db.ledger import Store
from walletd.domain.payment import PayCommand
from walletd.domain.policy import Limits
from walletd.errors import (
    InsufficientFundsError,
    InvalidRequestError,
    KeyStoreError,
    WrongPassphraseError,
)
from walletd.keys import keystore, rotation
from walletd.keys.signer import address_from_private_key
from walletd.metrics import LedgerCollector
from walletd.service import admin, keys
from walletd.service.reconcile import FundsCache, funds_status
from walletd.service.wallet import WalletService

NEW_PASSPHRASE = b"a different and longer passphrase"
OTHER_KEY = bytes.fromhex("59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d")
"""anvil/hardhat account #1: a well-known test key, never real funds."""
URL = "http://127.0.0.1:9/v1/chat"


@dataclass
class KeyLedger:
    store: Store
    files: keys.KeyFiles

    def rows(self) -> list[dict[str, object]]:
        """Every key_events row, every column, oldest first."""
        with self.store.connection() as conn:
            query = select(tables.KeyEvent).order_by(tables.KeyEvent.id)
            return [dict(row) for row in conn.execute(query).mappings()]


@pytest.fixture
def kl(ledger_url: str, tmp_path: Path) -> Iterator[KeyLedger]:
    """A migrated ledger (both backends) and a data dir holding TEST_KEY's keystore."""
    engines = make_engines(ledger_url)
    migrate.upgrade(engines.write)
    data_dir = tmp_path / "data"
    data_dir.mkdir(mode=0o700)
    files = keys.KeyFiles(data_dir, data_dir / "key.json")
    keystore.create_keystore(files.keystore, TEST_KEY, PASSPHRASE, FAST)
    yield KeyLedger(Store(engines), files)
    engines.dispose()


def _secrets() -> list[str]:
    """Every secret of these tests, in the spellings a leak would take."""
    found = []
    for secret in (TEST_KEY, OTHER_KEY, PASSPHRASE, NEW_PASSPHRASE):
        found += [secret.hex(), secret.hex().upper()]
    return [*found, PASSPHRASE.decode(), NEW_PASSPHRASE.decode()]


def test_passphrase_change_and_rotation_are_recorded_in_order_without_secrets(
    kl: KeyLedger,
) -> None:
    keys.change_passphrase(kl.store, kl.files, PASSPHRASE, NEW_PASSPHRASE, kdf=FAST)
    done = keys.rotate(
        kl.store, kl.files, NEW_PASSPHRASE, OTHER_KEY, source="imported-key-file", kdf=FAST
    )
    new_address = address_from_private_key(OTHER_KEY)
    assert (done.old_address, done.new_address) == (TEST_ADDRESS, new_address)
    history = keys.history(kl.store)
    assert [(e.operation, e.old_address, e.new_address) for e in history] == [
        ("change-passphrase", TEST_ADDRESS, TEST_ADDRESS),
        ("rotate", TEST_ADDRESS, new_address),
    ]
    assert history[1].data == {
        "source": "imported-key-file",
        "retired_keystore": f"retired-keys/{TEST_ADDRESS}.json",
    }
    dumped = json.dumps(kl.rows(), default=str)
    assert not [s for s in _secrets() if s in dumped]


def test_key_events_are_chained_and_covered_by_audit_verify(kl: KeyLedger) -> None:
    keys.change_passphrase(kl.store, kl.files, PASSPHRASE, NEW_PASSPHRASE, kdf=FAST)
    keys.rotate(kl.store, kl.files, NEW_PASSPHRASE, OTHER_KEY, source="generated", kdf=FAST)
    with kl.store.connection() as conn:
        result = queries.verify_chain(conn)
        heads = queries.chain_heads(conn)
    rows = kl.rows()
    assert (result.ok, result.key_events) == (True, 2)
    assert rows[1]["prev_hash"] == rows[0]["hash"]
    assert result.key_events_head == rows[1]["hash"] == heads["key_events"][1]


def test_editing_a_key_event_is_named_by_the_audit(kl: KeyLedger) -> None:
    keys.rotate(kl.store, kl.files, PASSPHRASE, OTHER_KEY, source="generated", kdf=FAST)
    with kl.store.engines.write.begin() as conn:
        conn.execute(update(tables.KeyEvent).values(new_address=TEST_ADDRESS))
    with kl.store.connection() as conn:
        result = queries.verify_chain(conn)
    assert not result.ok
    assert result.first_break is not None
    assert (result.first_break.table, result.first_break.row_id) == ("key_events", 1)


def test_rotation_keeps_the_old_key_retired_encrypted_and_installs_the_new_one(
    kl: KeyLedger,
) -> None:
    done = keys.rotate(kl.store, kl.files, PASSPHRASE, OTHER_KEY, source="generated", kdf=FAST)
    assert keystore.unlock(kl.files.keystore, PASSPHRASE) == OTHER_KEY
    assert keystore.unlock(done.retired, PASSPHRASE) == TEST_KEY
    assert stat.S_IMODE(done.retired.stat().st_mode) == 0o600
    assert stat.S_IMODE(done.retired.parent.stat().st_mode) == 0o700
    assert TEST_KEY.hex() not in done.retired.read_text()
    found = rotation.keystore_for(kl.files.data_dir, kl.files.keystore, TEST_ADDRESS.lower())
    assert found == done.retired


def test_a_wrong_passphrase_rotates_nothing_and_records_nothing(kl: KeyLedger) -> None:
    before = kl.files.keystore.read_bytes()
    with pytest.raises(WrongPassphraseError):
        keys.rotate(kl.store, kl.files, b"not it", OTHER_KEY, source="generated", kdf=FAST)
    assert kl.files.keystore.read_bytes() == before
    assert kl.rows() == []
    assert rotation.retired_keystores(kl.files.data_dir) == []


def test_rotating_to_the_current_key_is_refused(kl: KeyLedger) -> None:
    with pytest.raises(InvalidRequestError, match="already the current key"):
        keys.rotate(kl.store, kl.files, PASSPHRASE, TEST_KEY, source="generated", kdf=FAST)
    assert kl.rows() == []


def test_a_second_key_operation_at_once_is_refused(kl: KeyLedger) -> None:
    with rotation.key_lock(kl.files.data_dir), pytest.raises(KeyStoreError, match="another"):
        keys.rotate(kl.store, kl.files, PASSPHRASE, OTHER_KEY, source="generated", kdf=FAST)
    assert keystore.read_address(kl.files.keystore) == TEST_ADDRESS
    assert kl.rows() == []


def test_passphrase_change_reencrypts_retired_keys_and_can_be_run_again(kl: KeyLedger) -> None:
    done = keys.rotate(kl.store, kl.files, PASSPHRASE, OTHER_KEY, source="generated", kdf=FAST)
    first = keys.change_passphrase(kl.store, kl.files, PASSPHRASE, NEW_PASSPHRASE, kdf=FAST)
    assert first.retired.changed == (done.retired,)
    assert keystore.unlock(done.retired, NEW_PASSPHRASE) == TEST_KEY
    # As if interrupted after the retired keys: the current one is still under the old one.
    keystore.create_keystore(kl.files.keystore, OTHER_KEY, PASSPHRASE, FAST, overwrite=True)
    again = keys.change_passphrase(kl.store, kl.files, PASSPHRASE, NEW_PASSPHRASE, kdf=FAST)
    assert (again.retired.changed, again.retired.already) == ((), (done.retired,))
    assert keystore.unlock(kl.files.keystore, NEW_PASSPHRASE) == OTHER_KEY


def test_start_check_accepts_the_current_key_and_refuses_a_rotated_away_one(
    kl: KeyLedger,
) -> None:
    keys.require_current_key(kl.store, TEST_ADDRESS)  # nothing recorded yet: anything goes
    done = keys.rotate(kl.store, kl.files, PASSPHRASE, OTHER_KEY, source="generated", kdf=FAST)
    keys.require_current_key(kl.store, done.new_address)
    with pytest.raises(KeyStoreError, match="ledger's current key is") as err:
        keys.require_current_key(kl.store, TEST_ADDRESS)
    assert done.new_address in err.value.message


def test_after_rotation_the_old_keys_outstanding_does_not_draw_on_the_new_keys_funds(
    kl: KeyLedger,
) -> None:
    token = admin.add_client(kl.store, "svc", frozenset({"pay"}))
    admin.set_budget(kl.store, "svc", admin.BudgetChange(daily=10**9))
    paid = []
    for n, signer in enumerate((CountingSigner(), CountingSigner())):  # the old key, the new
        funds = FundsCache()
        funds.update(5000)
        service = WalletService(kl.store, signer, Limits(), funds=funds)
        caller = service.authenticate(token)
        paid.append(service.pay(caller, PayCommand(f"k{n}", "POST", URL, demand_header("4000"))))
        with pytest.raises(InsufficientFundsError):  # 4000 + 4000 > 5000 for one key
            service.pay(caller, PayCommand(f"again{n}", "POST", URL, demand_header("4000")))
    assert [r.amount for r in paid] == [4000, 4000]


def test_status_and_metrics_split_outstanding_between_the_current_key_and_retired_ones(
    kl: KeyLedger,
) -> None:
    token = admin.add_client(kl.store, "svc", frozenset({"pay"}))
    admin.set_budget(kl.store, "svc", admin.BudgetChange(daily=10**9))
    old, new = CountingSigner(), CountingSigner()
    for n, (signer, amount) in enumerate(((old, "4000"), (old, "1000"), (new, "3000"))):
        service = WalletService(kl.store, signer, Limits())
        caller = service.authenticate(token)
        service.pay(caller, PayCommand(f"k{n}", "POST", URL, demand_header(amount)))

    status = funds_status(kl.store, new.address, None)
    assert (status.outstanding_count, status.outstanding_amount) == (1, 3000)
    assert (status.retired_count, status.retired_amount) == (2, 5000)
    gauges = {
        family.name: family.samples[0].value
        for family in LedgerCollector(kl.store, None, new.address).collect()
        if "outstanding" in family.name
    }
    assert gauges == {
        "walletd_outstanding_payments": 1,
        "walletd_outstanding_atomic": 3000,
        "walletd_retired_keys_outstanding_payments": 2,
        "walletd_retired_keys_outstanding_atomic": 5000,
    }
