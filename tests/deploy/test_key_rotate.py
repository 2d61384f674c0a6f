"""`walletd key rotate` and `key history` through the real CLI and daemon (SQLite, no chain)."""

from __future__ import annotations

import base64
import json
import shutil
from pathlib import Path
from typing import Any

from tests.plugins.daemon import PASSPHRASE, Daemon, WalletHome, demand_header
from walletd.client import WalletClient
from walletd.keys import keystore


def _json(home: WalletHome, *args: str) -> Any:
    return json.loads(home.admin(*args, "--json").stdout)


def _rotate(home: WalletHome, *extra: str) -> Any:
    return _json(home, "key", "rotate", "--passphrase-file", str(home.passphrase_file),
                 "--kdf-log-n", "10", *extra)  # fmt: skip


def _payer_of(header_value: str) -> str:
    doc = json.loads(base64.b64decode(header_value))
    return str(doc["payload"]["authorization"]["from"])


def test_rotate_prints_both_addresses_and_the_restarted_daemon_signs_with_the_new_key(
    wallet_home: WalletHome,
) -> None:
    token = wallet_home.add_client("svc")
    wallet_home.admin("budget", "set", "svc", "--daily", "1")
    out = _rotate(wallet_home)
    assert out["old_address"] == wallet_home.address != out["new_address"]
    assert keystore.read_address(wallet_home.data_dir / "key.json") == out["new_address"]
    assert Path(out["retired_keystore"]).parent == wallet_home.data_dir / "retired-keys"
    daemon = Daemon(wallet_home)
    try:
        with WalletClient(socket=wallet_home.socket, token_file=token) as wallet:
            receipt = wallet.pay("k1", "POST", "http://127.0.0.1:9/v1/chat",
                                 payment_required=demand_header())  # fmt: skip
        assert _payer_of(receipt.header_value) == out["new_address"]
    finally:
        assert daemon.stop() == 0, daemon.logs()


def test_the_daemon_refuses_a_keystore_the_ledger_rotated_away(wallet_home: WalletHome) -> None:
    out = _rotate(wallet_home)
    shutil.copyfile(out["retired_keystore"], wallet_home.data_dir / "key.json")
    start = wallet_home.run(
        "serve", "--data-dir", str(wallet_home.data_dir), "--passphrase-file",
        str(wallet_home.passphrase_file), check=False, timeout=120,
    )  # fmt: skip
    assert start.returncode == 1
    assert f"ledger's current key is {out['new_address']}" in start.stderr
    assert not wallet_home.socket.exists()


def test_history_and_audit_show_both_operations_and_no_secret_is_anywhere(
    wallet_home: WalletHome,
) -> None:
    old_key = keystore.unlock(wallet_home.data_dir / "key.json", PASSPHRASE.encode())
    new_pass = wallet_home.root / "new-passphrase"
    new_pass.write_text("another passphrase entirely\n")
    new_pass.chmod(0o600)
    changed = _json(wallet_home, "key", "change-passphrase", "--passphrase-file",
                    str(wallet_home.passphrase_file), "--new-passphrase-file", str(new_pass),
                    "--kdf-log-n", "10")  # fmt: skip
    wallet_home.passphrase_file = new_pass
    rotated = _rotate(wallet_home)
    new_key = keystore.unlock(wallet_home.data_dir / "key.json", b"another passphrase entirely")

    history = _json(wallet_home, "key", "history")["events"]
    assert [(e["operation"], e["old_address"], e["new_address"]) for e in history] == [
        ("change-passphrase", changed["address"], changed["address"]),
        ("rotate", rotated["old_address"], rotated["new_address"]),
    ]
    text = wallet_home.admin("key", "history").stdout
    assert "change-passphrase" in text and rotated["new_address"] in text
    audit = _json(wallet_home, "audit", "verify")
    assert (audit["ok"], audit["key_events"]) == (True, 2)

    outputs = json.dumps([changed, rotated, history, audit]) + text
    ledger = b"".join(p.read_bytes() for p in wallet_home.data_dir.glob("walletd.db*"))
    for secret in (old_key, new_key):
        assert secret.hex() not in outputs and secret.hex().encode() not in ledger
        assert secret not in ledger
    for phrase in (PASSPHRASE, "another passphrase entirely"):
        assert phrase not in outputs and phrase.encode() not in ledger


def test_history_of_a_ledger_without_key_operations_says_so(wallet_home: WalletHome) -> None:
    assert wallet_home.admin("key", "history").stdout.strip() == "no key operations recorded"
    assert _json(wallet_home, "key", "history") == {"events": []}
