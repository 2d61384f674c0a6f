"""Client bearer tokens: made once, shown once, stored only as a hash."""

from __future__ import annotations

import hashlib
import secrets

TOKEN_PREFIX = "wdt_"  # noqa: S105 - a visible prefix, not a secret


def new_token() -> str:
    """A fresh random bearer token (256 bits)."""
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def hash_token(token: str) -> str:
    """The stored form of a token.

    A plain sha256 is enough: the token is 256 random bits, so there is nothing
    to brute-force, and a fast hash keeps authentication off the hot path.
    """
    return hashlib.sha256(token.encode("utf-8")).hexdigest()
