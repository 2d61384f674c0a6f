"""`budget set` and `budget show` for rate limits and scoped budgets, in process.

The CLI runs against the report tests' SQLite ledger (clients alpha and beta)
through click's runner: each command is the real one, without a subprocess.
"""

from __future__ import annotations

import json
from typing import Any

from click.testing import CliRunner, Result

from tests.plugins.daemon import PAY_TO
from tests.report.conftest import Books
from walletd.cli import main

OTHER = "0x" + "ab" * 20


def _cli(books: Books, *args: str) -> Result:
    return CliRunner().invoke(main, [*args, "--db-url", books.url], catch_exceptions=False)


def _show(books: Books, *who: str) -> dict[str, Any]:
    result = _cli(books, "budget", "show", *who, "--json")
    assert result.exit_code == 0, result.output
    doc: dict[str, Any] = json.loads(result.output)
    return doc


def test_budget_show_warns_about_limits_that_contradict_each_other(books: Books) -> None:
    settings = [
        ("--global", "--daily", "5", "--max-payments", "100", "--per", "day"),
        ("alpha", "--per-request", "2", "--daily", "1", "--payee", PAY_TO,
         "--max-payments", "50", "--per", "minute"),
        ("alpha", "--max-payments", "20", "--per", "hour"),
        ("alpha", "--for", "label:tool=x", "--daily", "3"),
        ("alpha", "--for", f"payee={OTHER}", "--daily", "0.5"),
        ("beta", "--daily", "6", "--max-payments", "200", "--per", "day"),
    ]  # fmt: skip
    for args in settings:
        assert _cli(books, "budget", "set", *args).exit_code == 0
    assert _show(books, "alpha")["warnings"] == [
        "client alpha: per_request is above daily, so per_request never applies",
        "client alpha: 50 payments per minute is above 20 per hour, so the minute limit "
        "never applies",
        "client alpha [label:tool=x]: daily is above the own daily, so it never applies",
        f"client alpha [payee={OTHER}]: the payee is not in the payee allowlist, "
        "so it never applies",
    ]
    assert _show(books, "beta")["warnings"] == [
        "client beta: daily is above the global daily, so it never applies",
        "client beta: 200 payments per day is above the global 100, so it never applies",
    ]
    text = _cli(books, "budget", "show", "alpha").output
    assert "  warning: client alpha: per_request is above daily" in text
    assert "  payments_per_minute  limit 50  signed 0  remaining 50" in text
    assert "  for label:tool=x:" in text
    assert _show(books, "--global")["warnings"] == []


MALFORMED = {
    "label:tool": "needs KEY=VALUE",
    "label:=x": "label key ''",
    "label:tool=": "label 'tool' value",
    "payee=0x12": "payee '0x12'",
    "payee=0x" + "g" * 40: "payee '0x" + "g" * 40 + "'",
    "host=bad host": "host 'bad host'",
    "tool=summarize": "kind 'tool'",
}
"""Selector -> the part its usage error must name."""


def test_malformed_selectors_and_rates_are_usage_errors_naming_the_bad_part(
    books: Books,
) -> None:
    for selector, named in MALFORMED.items():
        result = _cli(books, "budget", "set", "alpha", "--for", selector, "--daily", "1")
        assert result.exit_code == 2, (selector, result.output)
        assert named in result.output and "--for" in result.output, (selector, result.output)
    for args in (
        ["--max-payments", "3"],
        ["--per", "minute"],
        ["--max-payments", "-1", "--per", "day"],
        ["--max-payments", "3", "--per", "week"],
        ["--for", "host=a.example", "--host", "a.example"],
    ):
        result = _cli(books, "budget", "set", "alpha", *args)
        assert result.exit_code == 2, (args, result.output)
    shown = _show(books, "alpha")
    assert (shown["scoped"], shown["rates"]) == ([], {})


def test_a_scoped_budget_is_changed_in_place_and_removed_with_clear(books: Books) -> None:
    _cli(books, "budget", "set", "alpha", "--for", "host=API.example", "--daily", "1")
    _cli(books, "budget", "set", "alpha", "--for", "host=api.example", "--max-payments", "4",
         "--per", "hour")  # fmt: skip
    (scoped,) = _show(books, "alpha")["scoped"]
    assert scoped["for"] == "host=api.example"
    assert scoped["windows"]["daily"]["limit"] == 1_000_000
    assert scoped["rates"]["payments_per_hour"]["limit"] == 4
    _cli(books, "budget", "set", "alpha", "--for", "host=api.example", "--clear")
    assert _show(books, "alpha")["scoped"] == []
    assert books.verify().ok
