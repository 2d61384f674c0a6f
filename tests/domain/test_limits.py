"""Scoped limits, pure: selectors, the check of one payment, the contradictions shown."""

from __future__ import annotations

import pytest

from walletd.domain.budget import Budget
from walletd.domain.limits import (
    ALL,
    GLOBAL_OWNER,
    LimitUsage,
    ScopedLimit,
    Subject,
    check_limits,
    contradictions,
    parse_selector,
)
from walletd.errors import BudgetExceededError, InvalidRequestError, RateLimitedError

PAYEE = "0x" + "ab" * 20
PAID = Subject(7, {"tool": "summarize"}, "api.example.com", "0x" + "AB" * 20)


def test_selectors_are_canonical_and_match_what_pay_records() -> None:
    assert parse_selector("label:tool=summarize").text == "label:tool=summarize"
    assert parse_selector("host=API.Example.com").text == "host=api.example.com"
    assert parse_selector("payee=0x" + "AB" * 20).text == f"payee={PAYEE}"
    assert parse_selector("label:a=b=c").value == "b=c"  # the first = splits
    for text in ("label:tool=summarize", "host=api.example.com", f"payee={PAYEE}"):
        assert parse_selector(text).matches(PAID), text
    for text in (
        "label:tool=draw",
        "label:model=summarize",
        "host=example.com",
        "payee=0x" + "0" * 40,
    ):
        assert not parse_selector(text).matches(PAID), text
    assert ALL.matches(PAID) and ALL.text == ""


def test_a_limit_applies_to_its_owner_or_to_everyone() -> None:
    mine = ScopedLimit(1, 7, parse_selector("host=api.example.com"))
    theirs = ScopedLimit(2, 8, parse_selector("host=api.example.com"))
    everyone = ScopedLimit(3, GLOBAL_OWNER, ALL)
    assert mine.applies(PAID) and everyone.applies(PAID) and not theirs.applies(PAID)
    assert (mine.amount_scope, mine.count_scope) == (-2, -3)


def test_amounts_are_checked_before_rates_and_each_names_its_window() -> None:
    tool = ScopedLimit(1, 7, parse_selector("label:tool=summarize"), Budget(daily=10),
                       {"minute": 1})  # fmt: skip
    rates = ScopedLimit(2, GLOBAL_OWNER, ALL, payments={"hour": 5})
    full = [LimitUsage(tool, {"daily": 8}, {"minute": 1}), LimitUsage(rates, {}, {"hour": 5})]
    with pytest.raises(BudgetExceededError) as amount:
        check_limits(full, 3)
    assert amount.value.details["window"] == "daily[label:tool=summarize]"
    with pytest.raises(RateLimitedError) as rate:
        check_limits(full, 2)
    assert rate.value.details == {
        "window": "payments_per_minute[label:tool=summarize]", "limit": "1", "count": "1",
        "per": "minute",
    }  # fmt: skip
    with pytest.raises(RateLimitedError) as shared:
        check_limits([LimitUsage(rates, {}, {"hour": 5})], 1)
    assert (shared.value.window, shared.value.limit, shared.value.count) == (
        "global_payments_per_hour", 5, 5
    )  # fmt: skip
    check_limits([LimitUsage(tool, {"daily": 8}, {"minute": 0})], 2)  # fits exactly


def test_a_rate_limit_of_zero_refuses_every_payment() -> None:
    zero = ScopedLimit(1, 7, ALL, payments={"day": 0})
    with pytest.raises(RateLimitedError):
        check_limits([LimitUsage(zero, {}, {})], 1)


@pytest.mark.parametrize(
    "bad",
    ["", "label:", "label:k", "label:k k=v", "label:k=" + "v" * 513, "host=", "host=a..b",
     "host=-a.com", "payee=", "payee=0x" + "1" * 39, "payee=1x" + "1" * 40, "tool=x", "=x"],
)  # fmt: skip
def test_malformed_selectors_name_the_bad_part(bad: str) -> None:
    with pytest.raises(InvalidRequestError) as err:
        parse_selector(bad)
    assert err.value.details["field"] == "selector" and err.value.details["part"]


def test_contradictions_between_owners_windows_and_allowlists() -> None:
    own = Budget(daily=5, monthly=4, hosts=frozenset({"a.example"}))
    limits = [
        ScopedLimit(1, 7, ALL, payments={"hour": 10, "day": 50}),
        ScopedLimit(2, 7, parse_selector("host=b.example"), Budget(hourly=1)),
        ScopedLimit(3, 7, parse_selector("label:t=x"), payments={"hour": 20}),
    ]
    outer = Budget(daily=3)
    outer_limits = [ScopedLimit(4, GLOBAL_OWNER, ALL, payments={"day": 40})]
    assert contradictions("client c", own, limits, outer, outer_limits) == [
        "client c: daily is above monthly, so daily never applies",
        "client c: daily is above the global daily, so it never applies",
        "client c: 50 payments per day is above the global 40, so it never applies",
        "client c [host=b.example]: the host is not in the host allowlist, so it never applies",
        "client c [label:t=x]: 20 payments per hour is above the own 10, so it never applies",
    ]
    assert contradictions("global", Budget(daily=1), []) == []
