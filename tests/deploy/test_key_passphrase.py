"""`walletd key change-passphrase`: the new passphrase unlocks the same key, the old one no longer."""

from __future__ import annotations

import hashlib
import json
import stat
from pathlib import Path

from tests.plugins.daemon import Daemon, WalletHome
from walletd.keys import keystore


def _file(home: WalletHome, name: str, text: str) -> Path:
    path = home.root / name
    path.write_text(text + "\n")
    path.chmod(0o600)
    return path


def _change(home: WalletHome, old: Path, new: Path, *extra: str):
    return home.run(
        "key", "change-passphrase", "--data-dir", str(home.data_dir), "--passphrase-file",
        str(old), "--new-passphrase-file", str(new), "--kdf-log-n", "10", *extra, check=False,
    )  # fmt: skip


def test_change_passphrase_keeps_the_key_and_the_daemon_starts_with_the_new_one(
    wallet_home: WalletHome,
) -> None:
    keyfile = wallet_home.data_dir / "key.json"
    new = _file(wallet_home, "new-passphrase", "a new and longer passphrase")
    out = _change(wallet_home, wallet_home.passphrase_file, new, "--json")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["address"] == wallet_home.address
    assert stat.S_IMODE(keyfile.stat().st_mode) == 0o600
    assert keystore.read_address(keyfile) == wallet_home.address
    keystore.unlock(keyfile, b"a new and longer passphrase")

    old_start = wallet_home.run(
        "serve", "--data-dir", str(wallet_home.data_dir), "--passphrase-file",
        str(wallet_home.passphrase_file), check=False, timeout=120,
    )  # fmt: skip
    assert old_start.returncode == 1
    assert "passphrase" in old_start.stderr.lower()
    wallet_home.passphrase_file = new
    assert Daemon(wallet_home).stop() == 0


def test_wrong_current_passphrase_changes_nothing(wallet_home: WalletHome) -> None:
    keyfile = wallet_home.data_dir / "key.json"
    before = hashlib.sha256(keyfile.read_bytes()).hexdigest()
    wrong = _file(wallet_home, "wrong", "not the passphrase")
    new = _file(wallet_home, "new", "another passphrase")
    out = _change(wallet_home, wrong, new)
    assert out.returncode == 1
    assert hashlib.sha256(keyfile.read_bytes()).hexdigest() == before


def test_same_passphrase_is_refused(wallet_home: WalletHome) -> None:
    out = _change(wallet_home, wallet_home.passphrase_file, wallet_home.passphrase_file)
    assert out.returncode == 1
    assert "same as the current" in out.stderr
