from __future__ import annotations

import pytest
from hypothesis import given, strategies as st

from walletd.domain.money import MAX_AMOUNT, format_usd, parse_usd
from walletd.errors import InvalidRequestError


@pytest.mark.parametrize(
    ("text", "atomic"),
    [("0.003", 3000), ("$5", 5_000_000), ("12.5", 12_500_000), ("0.000001", 1), (" 1 ", 1_000_000),
     ("0", 0), ("$0.02", 20_000)],
)  # fmt: skip
def test_parses_usd_strings_to_atomic_units(text: str, atomic: int) -> None:
    assert parse_usd(text) == atomic


@pytest.mark.parametrize(
    "text",
    ["-1", "0.0000001", "1e3", "abc", "", "$", "1.", ".5", "1,5", "NaN", "inf", "+1", "0x10",
     "1.2.3", "$-1", "99999999999999999999"],
)  # fmt: skip
def test_rejects_negatives_excess_decimals_and_non_numbers(text: str) -> None:
    with pytest.raises(InvalidRequestError):
        parse_usd(text)


@given(st.integers(min_value=0, max_value=MAX_AMOUNT))
def test_format_then_parse_round_trips_exactly(atomic: int) -> None:
    assert parse_usd(format_usd(atomic)) == atomic


def test_formats_with_six_decimals() -> None:
    assert format_usd(3000) == "0.003000"
    assert format_usd(-1) == "-0.000001"
