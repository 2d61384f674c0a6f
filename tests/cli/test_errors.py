"""Errors as a new user meets them: USD amounts, JSON on stdout, exit 2 for usage errors."""

from __future__ import annotations

import json
from pathlib import Path

from tests.cli.conftest import walletd
from tests.plugins.daemon import WalletHome, demand_header
from tests.report.conftest import Books

EXIT_USAGE = 2
EXIT_REFUSED = 3


def _pay_over_cap(home: WalletHome, token: Path, *extra: str) -> tuple[int, str, str]:
    proc = walletd(
        "pay", "--socket", str(home.socket), "--token-file", str(token),
        "--url", "http://127.0.0.1:9/v1/chat/completions", "--method", "POST",
        "--payment-required", demand_header("20000"), *extra,
    )  # fmt: skip
    return proc.returncode, proc.stdout, proc.stderr


def test_budget_exceeded_names_usd_amounts(pay_daemon: tuple[WalletHome, Path]) -> None:
    code, _out, err = _pay_over_cap(*pay_daemon)
    assert code == EXIT_REFUSED, err
    assert "BUDGET_EXCEEDED" in err
    assert "limit 0.010000 USD" in err
    assert "requested 0.020000 USD" in err
    assert "limit=10000" not in err


def test_a_refusal_with_json_prints_the_error_object_on_stdout(
    pay_daemon: tuple[WalletHome, Path],
) -> None:
    code, out, err = _pay_over_cap(*pay_daemon, "--json")
    assert code == EXIT_REFUSED, err
    error = json.loads(out)["error"]
    assert error["reason"] == "BUDGET_EXCEEDED"
    assert "requested 0.020000 USD" in error["message"]
    # the structured figures stay exact atomic units
    assert error["details"] == {
        "window": "per_request", "limit": "10000", "spent": "0", "requested": "20000",
    }  # fmt: skip
    assert json.loads(err) == json.loads(out)


def test_since_and_until_out_of_range_are_usage_errors_not_tracebacks(books: Books) -> None:
    for args in (
        ("--since", "99999999d"),
        ("--until", "99999999w"),
        ("--since", "1969-12-31"),
        ("--since", "bogus"),
    ):
        proc = walletd("spend-report", "--db-url", books.url, *args)
        assert proc.returncode == EXIT_USAGE, (args, proc.stderr)
        assert "Traceback" not in proc.stderr
        assert args[0] in proc.stderr


def test_since_after_until_is_a_usage_error(books: Books) -> None:
    proc = walletd("spend-report", "--db-url", books.url, "--since", "1d", "--until", "2d")
    assert proc.returncode == EXIT_USAGE, proc.stderr
    assert "--since" in proc.stderr


def test_a_url_that_is_not_one_is_a_usage_error(tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text("x\n")
    for argv in (
        ("spend-report", "--db-url", "not-a-url"),
        ("payment", "list", "--db-url", "not-a-url"),
        ("client", "list", "--db-url", "mysql://127.0.0.1/walletd"),
        ("reconcile", "--rpc-url", "127.0.0.1:8545"),
        ("pay", "--token-file", str(token), "--url", "api.example/v1/chat",
         "--payment-required", "x"),
        ("models", "--base-url", "localhost/v1"),
    ):  # fmt: skip
        proc = walletd(*argv)
        assert proc.returncode == EXIT_USAGE, (argv, proc.returncode, proc.stderr)
        assert "Traceback" not in proc.stderr
        assert "not" in proc.stderr
