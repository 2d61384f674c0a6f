"""Money at the edges: USD strings in, USDC atomic-unit integers inside.

USDC has 6 decimals, so 1 USD is 1_000_000 atomic units. Inside walletd every
amount is an ``int`` of atomic units; ``Decimal`` appears only here, where a
human-typed string is parsed or an amount is printed. Floats never appear.
"""

from __future__ import annotations

import re
from decimal import Decimal

from walletd.errors import InvalidRequestError

DECIMALS = 6
ATOMIC_PER_USD = 10**DECIMALS
MAX_AMOUNT = 2**63 - 1
"""Largest amount a ledger column (signed 64-bit) can hold."""

_USD = re.compile(r"\$?(?P<int>[0-9]+)(?:\.(?P<frac>[0-9]+))?")


def parse_usd(text: str) -> int:
    """Parse ``"0.003"``, ``"$5"`` or ``"12.5"`` into atomic units.

    Refuses negatives, exponents, more than 6 decimals, and anything that is not a
    plain decimal number, because a typo in a budget must never widen it silently.

    Raises:
        InvalidRequestError: the text is not an acceptable amount.
    """
    match = _USD.fullmatch(text.strip())
    if match is None:
        raise InvalidRequestError(f"not a USD amount: {text!r} (use e.g. 0.003 or $5)")
    frac = match.group("frac") or ""
    if len(frac) > DECIMALS:
        raise InvalidRequestError(f"too many decimals in {text!r}: USDC has {DECIMALS}")
    atomic = int(Decimal(f"{match.group('int')}.{frac or '0'}").scaleb(DECIMALS))
    if atomic > MAX_AMOUNT:
        raise InvalidRequestError(f"amount too large: {text!r}")
    return atomic


def format_usd(atomic: int) -> str:
    """Format atomic units as an exact decimal string with 6 decimals, e.g. ``0.003000``."""
    sign = "-" if atomic < 0 else ""
    whole, frac = divmod(abs(atomic), ATOMIC_PER_USD)
    return f"{sign}{whole}.{frac:06d}"
