"""The running daemon: GetSpendReport for a read token, the metrics endpoint, and clean logs."""

from __future__ import annotations

import base64
import json
import os
import shutil
import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.plugins.daemon import PASSPHRASE, Daemon, WalletHome, demand_header
from walletd.client import WalletClient
from walletd.domain.report import Tally
from walletd.errors import (
    BudgetExceededError,
    PermissionDeniedError,
    PolicyDeniedError,
    UnauthenticatedError,
)

pytestmark = pytest.mark.slow  # each test runs the real daemon and CLI

URL = "https://api.example/v1/chat/completions"


def _token(home: WalletHome, name: str) -> Path:
    return home.root / f"{name}.token"


def _client(home: WalletHome, name: str) -> WalletClient:
    return WalletClient(socket=home.socket, token_file=_token(home, name))


def _pay(wallet: WalletClient, key: str, amount: int, model: str = "llama"):
    return wallet.pay(key, "POST", URL, payment_required=demand_header(str(amount)),
                      labels={"model": model})  # fmt: skip


def _traffic(home: WalletHome) -> None:
    """svc: two paid, one over budget, one denied by policy; other: one paid."""
    with _client(home, "svc") as svc, _client(home, "other") as other:
        _pay(svc, "s1", 3000)
        _pay(svc, "s2", 4000, model="qwen")
        _pay(svc, "s2", 4000, model="qwen")  # a replay: no new money, no new decision
        with pytest.raises(BudgetExceededError):
            _pay(svc, "s3", 9000)
        with pytest.raises(PolicyDeniedError):
            svc.pay("s4", "POST", URL, payment_required=demand_header("1000", scheme="exact-v9"))
        _pay(other, "o1", 2000)


@pytest.fixture
def home(wallet_home: WalletHome) -> WalletHome:
    for name, scopes in (("svc", "pay,read"), ("other", "pay,read"), ("payonly", "pay")):
        wallet_home.add_client(name, scopes)
        wallet_home.admin("budget", "set", name, "--daily", "0.01")
    return wallet_home


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _ledger_json(home: WalletHome, *args: str) -> Any:
    proc = home.admin("spend-report", "--format", "json", *args)
    return json.loads(proc.stdout)


def test_a_read_token_gets_its_own_spend_report_over_grpc(home: WalletHome) -> None:
    daemon = Daemon(home)
    try:
        _traffic(home)
        with _client(home, "svc") as svc:
            report = svc.get_spend_report(group_by=["model", "status"])
            flat = svc.get_spend_report()
        assert report.query.client == "svc"
        assert flat.totals.payments == Tally(2, 7000)
        assert flat.totals.tally("refused") == Tally(2, 10000)
        assert flat.totals.tally("pending") == Tally(2, 7000)
        keys = {r.key for r in report.rows}
        assert keys == {("llama", "pending"), ("qwen", "pending"), ("llama", "refused"),
                        ("", "refused")}  # fmt: skip
        assert {(r.reason, r.rule) for r in flat.refusals} == {
            ("BUDGET_EXCEEDED", "daily"), ("POLICY_DENIED", "scheme"),
        }  # fmt: skip
        # The operator's report, read from the database while the daemon runs, agrees.
        ledger = _ledger_json(home, "--client", "svc")
        assert ledger["totals"]["payments"]["amount"] == flat.totals.payments.amount
        assert ledger["totals"]["statuses"]["refused"]["count"] == 2
        with _client(home, "payonly") as payonly, pytest.raises(PermissionDeniedError):
            payonly.get_spend_report()
    finally:
        assert daemon.stop() == 0, daemon.logs()


def _scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
    out = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def test_the_metrics_endpoint_is_scraped_and_matches_the_ledger(home: WalletHome) -> None:
    port = _free_port()
    daemon = Daemon(home, "--metrics", f"127.0.0.1:{port}")
    try:
        _traffic(home)
        m = _scrape(port)
        with _client(home, "svc") as svc:
            budget = {w.window: w for w in svc.get_budget().windows}
    finally:
        assert daemon.stop() == 0, daemon.logs()
    ledger = _ledger_json(home, "--group-by", "client")
    rows = {r["key"]["client"]: r for r in ledger["rows"]}
    for client in ("svc", "other"):
        paid = rows[client]["payments"]
        calls = m[("walletd_pay_requests_total", (("client", client), ("outcome", "paid")))]
        amount = m[("walletd_pay_amount_atomic_total", (("client", client), ("outcome", "paid")))]
        assert (calls, amount) == (paid["count"], paid["amount"])
    refused = m[("walletd_pay_requests_total", (("client", "svc"), ("outcome", "refused")))]
    assert refused == rows["svc"]["statuses"]["refused"]["count"] == 2
    assert m[("walletd_pay_requests_total", (("client", "svc"), ("outcome", "replayed")))] == 1
    by_reason = {(r["reason"], r["rule"]): r["count"] for r in ledger["refusals"]}
    for (reason, rule), count in by_reason.items():
        assert m[("walletd_refusals_total", (("reason", reason), ("rule", rule)))] == count
    daily = budget["daily"]
    labels = (("client", "svc"), ("window", "daily"))
    assert m[("walletd_budget_remaining_atomic", labels)] == daily.remaining == 10_000 - 7000
    assert m[("walletd_budget_spent_atomic", labels)] == daily.spent
    assert (
        m[("walletd_outstanding_atomic", ())] == ledger["totals"]["statuses"]["pending"]["amount"]
    )
    assert m[("walletd_retired_keys_outstanding_atomic", ())] == 0  # no rotation here
    assert m[("walletd_reconcile_overdue_seconds", ())] == 0
    assert m[("walletd_pay_latency_seconds_count", (("outcome", "paid"),))] == 3
    assert m[("walletd_metrics_ledger_up", ())] == 1


@pytest.fixture
def known_key_home() -> Iterator[WalletHome]:
    """A data dir whose key is known to the test (imported), so the log can be searched for it."""
    root = Path(tempfile.mkdtemp(prefix="wd-", dir="/tmp"))
    key_hex = os.urandom(32).hex()
    key_file = root / "key.hex"
    key_file.write_text(key_hex + "\n")
    passfile = root / "passphrase"
    passfile.write_text(PASSPHRASE + "\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("WALLETD_")}
    home = WalletHome(root, root / "data", passfile, env=env)
    home.run("init", "--data-dir", str(home.data_dir), "--passphrase-file", str(passfile),
             "--import-key-file", str(key_file), "--kdf-log-n", "10")  # fmt: skip
    key_file.unlink()
    home.env["TEST_KEY_HEX"] = key_hex
    yield home
    shutil.rmtree(root, ignore_errors=True)


@pytest.mark.parametrize("log_format", [(), ("--log-json",)], ids=["text", "json"])
def test_the_daemon_log_holds_no_token_passphrase_key_signature_or_header(
    known_key_home: WalletHome, log_format: tuple[str, ...]
) -> None:
    home = known_key_home
    key_hex = home.env.pop("TEST_KEY_HEX")
    for name in ("svc", "other", "payonly"):
        home.add_client(name, "pay,read")
        home.admin("budget", "set", name, "--daily", "0.01")
    daemon = Daemon(home, *log_format, "--metrics", f"127.0.0.1:{_free_port()}")
    headers = []
    try:
        _traffic(home)
        with _client(home, "svc") as svc:
            receipt = _pay(svc, "s9", 1000)
            headers.append(receipt.header_value)
            svc.report_outcome(receipt.payment_id, 200, "")
        with (
            WalletClient(socket=home.socket, token="not-a-token") as bad,
            pytest.raises(UnauthenticatedError),
        ):
            _pay(bad, "x", 1000)
    finally:
        assert daemon.stop() == 0, daemon.logs()
    log = (home.root / "daemon.log").read_text(errors="replace")
    assert "paid client=svc" in log and "refused client=svc" in log  # it did log the traffic
    payload = json.loads(base64.b64decode(headers[0]))
    signature = payload["payload"]["signature"]
    secrets = {
        "passphrase": PASSPHRASE,
        "private key": key_hex.lower(),
        "signature": signature.lower().removeprefix("0x"),
        "header value": headers[0],
        "bad token": "not-a-token",
    }
    for name in ("svc", "other", "payonly"):
        secrets[f"{name} token"] = _token(home, name).read_text().strip()
    lowered = log.lower()
    for what, value in secrets.items():
        assert value.lower() not in lowered, f"the daemon log contains the {what}"
