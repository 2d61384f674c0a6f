"""`walletd db backup`: a consistent snapshot while the daemon pays, and a restore that works."""

from __future__ import annotations

import hashlib
import json
import shutil
import sqlite3
import stat
import threading
from pathlib import Path

import pytest

from tests.plugins.daemon import Daemon, WalletHome, demand_header
from walletd.client import WalletClient
from walletd.domain.payment import PayReceipt

URL = "http://127.0.0.1:9/v1/chat"


class Payer(threading.Thread):
    """Pays with fresh keys until stopped; remembers each key's header."""

    def __init__(self, socket: Path, token: Path) -> None:
        super().__init__()
        self.socket, self.token = socket, token
        self.stop = threading.Event()
        self.paid: dict[str, PayReceipt] = {}
        self.enough = threading.Event()
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            with WalletClient(socket=self.socket, token_file=self.token, timeout=60) as c:
                while not self.stop.is_set():
                    key = f"b-{len(self.paid)}"
                    self.paid[key] = c.pay(key, "POST", URL, payment_required=demand_header())
                    if len(self.paid) >= 5:
                        self.enough.set()
        except BaseException as exc:
            self.error = exc
            self.enough.set()


def _rows(db: Path) -> dict[str, str]:
    with sqlite3.connect(db) as conn:
        return dict(conn.execute("select idempotency_key, header_value from payments"))


@pytest.mark.slow
def test_backup_while_paying_restores_to_a_working_ledger(wallet_home: WalletHome) -> None:
    token = wallet_home.add_client("svc")
    wallet_home.admin("budget", "set", "svc", "--daily", "100")
    dest = wallet_home.root / "ledger.backup"
    running = Daemon(wallet_home)
    payer = Payer(wallet_home.socket, token)
    payer.start()
    try:
        assert payer.enough.wait(120) and payer.error is None, payer.error
        out = wallet_home.admin("db", "backup", str(dest), "--json")
    finally:
        payer.stop.set()
        payer.join(120)
        assert running.stop() == 0, running.logs()
    assert payer.error is None, payer.error
    report = json.loads(out.stdout)
    assert report["backup"] == str(dest)
    assert stat.S_IMODE(dest.stat().st_mode) == 0o600

    # The snapshot is intact and holds a prefix of what was paid, header for header.
    with sqlite3.connect(dest) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        assert conn.execute("PRAGMA journal_mode").fetchone() == ("delete",)
    saved = _rows(dest)
    assert report["payments"] == len(saved) >= 5
    original = _rows(wallet_home.data_dir / "walletd.db")
    assert saved.items() <= original.items()
    assert {k: r.header_value for k, r in payer.paid.items() if k in saved} == saved

    # Restore into a new data dir (the documented steps) and serve from it.
    restored = WalletHome(
        wallet_home.root / "r", wallet_home.root / "r" / "data", wallet_home.passphrase_file,
        env=wallet_home.env,
    )  # fmt: skip
    restored.data_dir.mkdir(parents=True, mode=0o700)
    shutil.copy2(wallet_home.data_dir / "key.json", restored.data_dir / "key.json")
    shutil.copy2(dest, restored.data_dir / "walletd.db")
    again = Daemon(restored)
    try:
        key = next(iter(saved))
        with WalletClient(socket=restored.socket, token_file=token, timeout=60) as c:
            replay = c.pay(key, "POST", URL, payment_required=demand_header())
        assert (replay.reused, replay.header_value) == (True, saved[key])
    finally:
        assert again.stop() == 0, again.logs()


def test_backup_never_overwrites(wallet_home: WalletHome) -> None:
    dest = wallet_home.root / "ledger.backup"
    wallet_home.admin("db", "backup", str(dest))
    before = hashlib.sha256(dest.read_bytes()).hexdigest()
    out = wallet_home.admin("db", "backup", str(dest), check=False)
    assert out.returncode == 1
    assert "refusing to overwrite" in out.stderr
    assert hashlib.sha256(dest.read_bytes()).hexdigest() == before
    assert sorted(p.name for p in dest.parent.iterdir() if p.name.startswith(".ledger")) == []


def test_backup_of_a_postgresql_ledger_points_at_pg_dump(wallet_home: WalletHome) -> None:
    dest = wallet_home.root / "ledger.backup"
    url = "postgresql+psycopg://walletd:pw-s3cret@127.0.0.1:1/walletd"
    config = wallet_home.root / "pg.toml"  # a URL with a password is refused in argv
    config.write_text(f'[db]\nurl = "{url}"\n')
    out = wallet_home.admin("db", "backup", str(dest), "--config", str(config), check=False)
    assert out.returncode == 1
    assert "pg_dump" in out.stderr
    assert "pw-s3cret" not in out.stderr
    assert not dest.exists()
