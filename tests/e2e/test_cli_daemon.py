"""The real CLI and daemon as an operator and a service use them."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

from eth_account import Account

from tests.plugins.daemon import Daemon, WalletHome, demand_header
from walletd.client import WalletClient
from walletd.errors import UnauthenticatedError

URL = "http://127.0.0.1:9/v1/chat/completions"


def _pay(home: WalletHome, token_file, *extra: str, header: str | None = None):
    return home.run(
        "pay", "--socket", str(home.socket), "--token-file", str(token_file),
        "--payment-required", header or demand_header(), "--url", URL, "--method", "POST",
        *extra, check=False,
    )  # fmt: skip


def test_init_prints_the_address_last_and_keeps_files_private(wallet_home: WalletHome) -> None:
    assert wallet_home.address.startswith("0x") and len(wallet_home.address) == 42
    for path in wallet_home.data_dir.iterdir():
        assert stat.S_IMODE(path.stat().st_mode) & 0o077 == 0, path
    assert stat.S_IMODE(wallet_home.data_dir.stat().st_mode) == 0o700


def test_wrong_passphrase_is_one_line_and_non_zero(wallet_home: WalletHome) -> None:
    bad = wallet_home.root / "bad"
    bad.write_text("nope\n")
    proc = wallet_home.run(
        "serve", "--data-dir", str(wallet_home.data_dir), "--passphrase-file", str(bad),
        check=False,
    )  # fmt: skip
    assert proc.returncode == 1
    errors = [line for line in proc.stderr.splitlines() if "WRONG_PASSPHRASE" in line]
    assert len(errors) == 1


def test_pay_prints_one_header_line(wallet_home: WalletHome, daemon: Daemon) -> None:
    token = wallet_home.add_client("svc")
    wallet_home.admin("budget", "set", "svc", "--daily", "1")
    proc = _pay(wallet_home, token)
    assert proc.returncode == 0, proc.stderr
    (line,) = proc.stdout.splitlines()
    assert line.startswith("PAYMENT-SIGNATURE: ey")


def test_json_output_and_exit_codes_differ_for_usage_and_refusal(
    wallet_home: WalletHome, daemon: Daemon
) -> None:
    token = wallet_home.add_client("svc")
    wallet_home.admin("budget", "set", "svc", "--per-request", "0.001")
    refused = _pay(wallet_home, token, "--json")
    assert refused.returncode == 3
    assert json.loads(refused.stderr.splitlines()[-1])["error"]["reason"] == "BUDGET_EXCEEDED"
    usage = wallet_home.run("pay", "--url", URL, check=False)
    assert usage.returncode == 2
    shown = json.loads(wallet_home.admin("budget", "show", "svc", "--json").stdout)
    assert shown["windows"]["per_request"]["limit"] == 1000


def test_amount_flags_reject_bad_usd_strings(wallet_home: WalletHome) -> None:
    wallet_home.add_client("svc")
    for bad in ("-1", "0.0000001", "abc", "1e3"):
        proc = wallet_home.admin("budget", "set", "svc", "--daily", bad, check=False)
        assert proc.returncode == 2, bad


def test_admin_commands_take_effect_while_the_daemon_runs(
    wallet_home: WalletHome, daemon: Daemon
) -> None:
    token = wallet_home.add_client("late")
    wallet_home.admin("budget", "set", "late", "--daily", "1")
    assert _pay(wallet_home, token).returncode == 0
    wallet_home.admin("freeze")
    frozen = _pay(wallet_home, token, "--idempotency-key", "new-one")
    assert frozen.returncode == 3 and "FROZEN" in frozen.stderr
    wallet_home.admin("unfreeze")
    wallet_home.admin("client", "revoke", "late")
    with WalletClient(socket=wallet_home.socket, token_file=token) as wallet:
        try:
            wallet.get_budget()
        except UnauthenticatedError:
            pass
        else:
            raise AssertionError("revoked token still accepted")


def test_serve_refuses_an_out_of_date_ledger_and_auto_migrate_fixes_it(
    wallet_home: WalletHome,
) -> None:
    from walletd.db import migrate
    from walletd.db.engine import make_engines, sqlite_url

    engines = make_engines(sqlite_url(wallet_home.data_dir))
    from alembic import command

    cfg = migrate._config()
    with engines.write.begin() as conn:
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, "base")
    engines.dispose()
    proc = wallet_home.run(
        "serve", "--data-dir", str(wallet_home.data_dir),
        "--passphrase-file", str(wallet_home.passphrase_file), check=False,
    )  # fmt: skip
    assert proc.returncode == 1
    assert "walletd db upgrade" in proc.stderr
    running = Daemon(wallet_home, "--auto-migrate")
    assert running.stop() == 0


def test_socket_is_owner_only(wallet_home: WalletHome, daemon: Daemon) -> None:
    assert stat.S_IMODE(wallet_home.socket.stat().st_mode) == 0o600


def test_init_imports_a_v3_keystore(tmp_path: Path) -> None:
    account = Account.create()
    v3 = tmp_path / "v3.json"
    v3.write_text(
        json.dumps(Account.encrypt(account.key, "v3-pass", kdf="scrypt", iterations=1024))
    )
    (tmp_path / "v3pass").write_text("v3-pass\n")
    (tmp_path / "pass").write_text("new-pass\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("WALLETD_")}
    argv = [
        sys.executable, "-m", "walletd", "init", "--data-dir", str(tmp_path / "d"),
        "--passphrase-file", str(tmp_path / "pass"), "--import-keystore", str(v3),
        "--keystore-passphrase-file", str(tmp_path / "v3pass"), "--kdf-log-n", "10", "--json",
    ]  # fmt: skip
    proc = subprocess.run(argv, capture_output=True, text=True, env=env, check=False)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["address"] == account.address
