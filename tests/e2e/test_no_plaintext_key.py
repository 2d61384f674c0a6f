"""After init and 100 payments, the private key is nowhere in plaintext."""

from __future__ import annotations

import base64
import os
import shutil
import tempfile
from pathlib import Path

from tests.plugins.daemon import PASSPHRASE, Daemon, WalletHome, demand_header
from walletd.client import WalletClient


def _forms(key: bytes) -> list[bytes]:
    hexes = [key.hex().encode(), key.hex().upper().encode()]
    return [key, *hexes, base64.b64encode(key), base64.urlsafe_b64encode(key)] + [
        b"0x" + h for h in hexes
    ]


def _files(*roots: Path) -> list[Path]:
    return [p for root in roots for p in root.rglob("*") if p.is_file()]


def test_no_plaintext_key_in_data_dir_database_or_logs() -> None:
    key = os.urandom(32)
    root = Path(tempfile.mkdtemp(prefix="wd-pk-", dir="/tmp"))
    try:
        key_file = root / "import.hex"
        key_file.write_text(key.hex())
        passfile = root / "pass"
        passfile.write_text(PASSPHRASE)
        env = {k: v for k, v in os.environ.items() if not k.startswith("WALLETD_")}
        home = WalletHome(root, root / "data", passfile, env=env)
        home.run("init", "--data-dir", str(home.data_dir), "--passphrase-file", str(passfile),
                 "--import-key-file", str(key_file), "--kdf-log-n", "10")  # fmt: skip
        key_file.unlink()  # the operator's own copy; it is not walletd's to keep
        token = home.add_client("svc")
        home.admin("budget", "set", "svc", "--total", "10")
        daemon = Daemon(home)
        with WalletClient(socket=home.socket, token_file=token) as wallet:
            for i in range(100):
                wallet.pay(f"k{i}", "POST", "http://127.0.0.1:9/v1/chat",
                           payment_required=demand_header())  # fmt: skip
            assert len(wallet.list_payments(200)) == 100
        assert daemon.stop() == 0
        files = _files(home.data_dir, root)
        assert any(p.name == "walletd.db" for p in files)
        assert any(p.name == "daemon.log" for p in files)
        for path in files:
            data = path.read_bytes()
            for form in _forms(key):
                assert form not in data, f"key material found in {path}"
    finally:
        shutil.rmtree(root, ignore_errors=True)
