"""Rate limits and scoped budgets are covered by ``walletd audit verify`` (both backends).

Every change is a hash-chained ``limit-set`` admin event; verify replays them
and compares the ``scoped_limits`` rows, and recomputes the limits' running
totals (amounts and signature counts) from the payments. Edits are made with
plain SQL outside walletd.
"""

from __future__ import annotations

from sqlalchemy import text

from tests.report.conftest import Books, walletd
from walletd.domain.payment import PayReceipt
from walletd.errors import BudgetExceededError, RateLimitedError
from walletd.service import admin


def _sql(books: Books, statement: str) -> None:
    with books.store.engines.write.begin() as conn:
        conn.execute(text(statement))


def _limits(books: Books) -> None:
    admin.set_budget(books.store, "alpha", admin.BudgetChange(rates={"minute": 3}))
    admin.set_budget(
        books.store, "alpha", admin.BudgetChange(selector="label:model=llama", daily=6_000)
    )
    admin.set_budget(
        books.store, None, admin.BudgetChange(selector="host=api.example", total=10**6)
    )


def _problems(books: Books, table: str) -> dict[str, str]:
    return {b.subject or "": b.problem for b in books.verify().breaks if b.table == table}


def test_an_edited_rate_limit_or_scoped_budget_fails_verify_naming_it(books: Books) -> None:
    _limits(books)
    assert isinstance(books.pay("alpha", "a1"), PayReceipt)
    assert isinstance(books.pay("alpha", "a2"), PayReceipt)
    assert isinstance(books.pay("alpha", "a3"), BudgetExceededError)  # the llama daily: 6000
    assert isinstance(books.pay("alpha", "a4", model="mistral"), PayReceipt)
    assert isinstance(books.pay("alpha", "a5", model="mistral"), RateLimitedError)
    assert books.verify().ok

    # The attack: lift the limits behind walletd's back.
    _sql(books, "UPDATE scoped_limits SET payments_minute = 1000 WHERE selector = ''")
    _sql(books, "UPDATE scoped_limits SET daily = 10000000 WHERE selector = 'label:model=llama'")
    assert isinstance(books.pay("alpha", "a6"), PayReceipt)  # what verify must expose
    problems = _problems(books, "scoped_limits")
    assert problems["client alpha limit []"] == (
        "limit edited: payments_minute is 1000, the admin events say 3"
    )
    assert problems["client alpha limit [label:model=llama]"] == (
        "limit edited: daily is 10000000, the admin events say 6000"
    )
    proc = walletd("audit", "verify", "--db-url", books.url)
    assert proc.returncode == 1
    assert "scoped_limits" in proc.stdout and "payments_minute" in proc.stdout


def test_removed_added_limits_and_zeroed_limit_totals_fail_verify(books: Books) -> None:
    _limits(books)
    for key in ("a1", "a2"):
        assert isinstance(books.pay("alpha", key), PayReceipt)
    _sql(books, "DELETE FROM scoped_limits WHERE selector = 'host=api.example'")
    _sql(
        books, "INSERT INTO scoped_limits (owner, selector, daily) VALUES (2, 'host=x.example', 5)"
    )
    _sql(books, "UPDATE spend_buckets SET amount = 0 WHERE scope < 0")
    problems = _problems(books, "scoped_limits")
    assert problems["global limit [host=api.example]"] == (
        "limit row is missing (the admin events set it)"
    )
    assert problems["client beta limit [host=x.example]"] == (
        "limit is not in the admin events (added outside walletd)"
    )
    totals = _problems(books, "spend_buckets")
    assert "client alpha limit [label:model=llama] amount lifetime" in totals
    assert "client alpha limit [] signatures lifetime" in totals
