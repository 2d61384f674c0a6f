"""Rate limits and budgets per label, host and payee, as an operator sets them and a service meets them.

Limits are set with the real CLI commands (run in process, offline against the
data dir, as an operator runs them beside the daemon), payments go through a
real daemon and the thin client, and refusals come back as the error classes
with their figures.
"""

from __future__ import annotations

import json
import os
from typing import Any

import pytest
from click.testing import CliRunner

from tests.plugins.daemon import Daemon, WalletHome, demand_header
from walletd.cli import main
from walletd.client import BudgetExceededError, RateLimitedError, WalletClient

URL = "http://127.0.0.1:9/v1/chat/completions"
OTHER = "0x" + "ab" * 20
PRICE = 3000


def _admin(home: WalletHome, *args: str) -> str:
    """Run an operator command in process (the real CLI code, without a subprocess's start-up)."""
    unset: dict[str, str | None] = {k: None for k in os.environ if k.startswith("WALLETD_")}
    result = CliRunner(env=unset).invoke(
        main, [*args, "--data-dir", str(home.data_dir)], catch_exceptions=False
    )
    assert result.exit_code == 0, result.output
    return result.output


def _show(home: WalletHome, *who: str) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(_admin(home, "budget", "show", *who, "--json"))
    return doc


def test_tool_and_payee_budgets_stop_at_their_limit_while_the_client_has_room(
    wallet_home: WalletHome,
) -> None:
    home = wallet_home
    token = home.add_client("svc")
    _admin(home, "budget", "set", "svc", "--daily", "1")
    _admin(home, "budget", "set", "svc", "--for", "label:tool=summarize", "--daily", "0.009")
    shouted = "0x" + OTHER[2:].upper()  # stored lower-cased, as Pay compares it
    _admin(home, "budget", "set", "svc", "--for", f"payee={shouted}", "--monthly", "0.006")
    daemon = Daemon(home)
    try:
        with WalletClient(socket=home.socket, token_file=token) as wallet:
            tool = {"tool": "summarize"}
            for i in range(3):
                wallet.pay(f"t{i}", "POST", URL, payment_required=demand_header(), labels=tool)
            with pytest.raises(BudgetExceededError) as tool_hit:
                wallet.pay("t3", "POST", URL, payment_required=demand_header(), labels=tool)
            other = demand_header(payTo=OTHER)
            for i in range(2):
                wallet.pay(f"p{i}", "POST", URL, payment_required=other)
            with pytest.raises(BudgetExceededError) as payee_hit:
                wallet.pay("p2", "POST", URL, payment_required=other)
            # The client's own budget still has room: other tools and payees are paid.
            wallet.pay("free", "POST", URL, payment_required=demand_header(),
                       labels={"tool": "draw"})  # fmt: skip
    finally:
        assert daemon.stop() == 0, daemon.logs()
    assert tool_hit.value.details["window"] == "daily[label:tool=summarize]"
    assert (tool_hit.value.limit, tool_hit.value.spent) == (3 * PRICE, 3 * PRICE)
    assert payee_hit.value.details["window"] == f"monthly[payee={OTHER}]"
    assert (payee_hit.value.limit, payee_hit.value.spent) == (2 * PRICE, 2 * PRICE)
    shown = _show(home, "svc")
    assert shown["windows"]["daily"]["spent"] == 6 * PRICE
    scoped = {s["for"]: s["windows"] for s in shown["scoped"]}
    assert scoped["label:tool=summarize"]["daily"] == {
        "limit": 3 * PRICE, "spent": 3 * PRICE, "remaining": 0
    }  # fmt: skip
    assert scoped[f"payee={OTHER}"]["monthly"]["spent"] == 2 * PRICE
    assert "ok:" in _admin(home, "audit", "verify")


def test_rate_limits_refuse_with_the_windows_figures(wallet_home: WalletHome) -> None:
    home = wallet_home
    tokens = {name: home.add_client(name) for name in ("svc", "other")}
    for name in tokens:
        _admin(home, "budget", "set", name, "--daily", "1")
    _admin(home, "budget", "set", "svc", "--max-payments", "2", "--per", "minute")
    _admin(home, "budget", "set", "--global", "--max-payments", "3", "--per", "hour")
    daemon = Daemon(home)
    try:
        with WalletClient(socket=home.socket, token_file=tokens["svc"]) as svc:
            first = svc.pay("a", "POST", URL, payment_required=demand_header())
            svc.pay("b", "POST", URL, payment_required=demand_header())
            with pytest.raises(RateLimitedError) as own:
                svc.pay("c", "POST", URL, payment_required=demand_header())
            # A retry under a used key is the same payment, not a new signature.
            again = svc.pay("a", "POST", URL, payment_required=demand_header())
            assert (again.reused, again.payment_id) == (True, first.payment_id)
        with WalletClient(socket=home.socket, token_file=tokens["other"]) as other:
            other.pay("a", "POST", URL, payment_required=demand_header())
            with pytest.raises(RateLimitedError) as shared:
                other.pay("b", "POST", URL, payment_required=demand_header())
    finally:
        assert daemon.stop() == 0, daemon.logs()
    assert (own.value.window, own.value.limit, own.value.count) == ("payments_per_minute", 2, 2)
    assert own.value.per == "minute"
    assert (shared.value.window, shared.value.limit, shared.value.count) == (
        "global_payments_per_hour", 3, 3
    )  # fmt: skip
    assert _show(home, "svc")["rates"]["payments_per_minute"] == {
        "limit": 2, "count": 2, "remaining": 0
    }  # fmt: skip
    decisions = json.loads(_admin(home, "spend-report", "--json"))
    assert "RATE_LIMITED" in json.dumps(decisions)


def test_two_daemons_sign_exactly_the_rate_limit_of_many_concurrent_attempts(
    wallet_home: WalletHome,
) -> None:
    """Two daemons on one SQLite ledger, 4 caller processes x 4 threads x 3 keys: 48 for 10."""
    from tests.pg.test_replica_race import _callers

    home = wallet_home
    token = home.add_client("svc")
    _admin(home, "budget", "set", "svc", "--daily", "1", "--max-payments", "10", "--per", "minute")
    second = home.root / "second.sock"
    running = [Daemon(home), Daemon(home, "--socket", str(second))]
    try:
        results = _callers([home.socket, second], {"svc": token}, shared=0, attempts=3)
    finally:
        codes = [d.stop() for d in running]
    assert codes == [0, 0], running[0].logs()
    runs = results["svc"]
    assert [e for run in runs for e in run["errors"]] == []
    signed = [r for run in runs for r in run["receipts"]]
    refused = [r for run in runs for r in run["refused"]]
    assert len(signed) == 10
    assert {r["reason"] for r in refused} == {"RATE_LIMITED"}
    assert len(signed) + len(refused) == 4 * 4 * 3
