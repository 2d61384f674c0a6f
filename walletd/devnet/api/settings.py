"""The settings of one local paid API.

They live apart so that every other module (pricing, the direct-transfer paywall, the app
factory) can read them without importing the web stack that builds the app.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["BASE_NETWORK", "LOOPBACK_PREFIXES", "ApiSettings"]

BASE_NETWORK = "eip155:8453"
LOOPBACK_PREFIXES = ("http://127.0.0.1", "http://localhost")


@dataclass(frozen=True)
class ApiSettings:
    """Everything that differs between one local paid API and another.

    Prices are the SDK's money strings (``"$0.003"``); the SDK turns them into the atomic
    amount of the network's default asset (USDC, 6 decimals), so ``"$0.003"`` is 3000 units.
    """

    facilitator_url: str
    pay_to: str
    network: str = BASE_NETWORK
    chat_price: str = "$0.003"
    image_price: str = "$0.02"
    api_keys: frozenset[str] = frozenset()
    max_timeout_seconds: int = 300
    direct_rpc_url: str = ""
    """When set, ``/direct/...`` serves the same routes paid by direct transfer."""
    direct_proof_header: str = "X-Payment-Tx"
    upto_max_price: str = "$0.01"
    """The maximum the upto chat route asks authorized."""
    upto_atomic_per_token: int = 10
    """What the upto chat route charges per token used, in atomic units ($0.00001)."""

    def __post_init__(self) -> None:
        """Refuse settings that could make the SDK talk to a public facilitator."""
        if not self.facilitator_url.startswith(LOOPBACK_PREFIXES):
            raise ValueError(f"facilitator_url must be a loopback URL: {self.facilitator_url!r}")
        if self.max_timeout_seconds <= 0:
            raise ValueError("max_timeout_seconds must be positive")
        if self.direct_rpc_url and not self.direct_rpc_url.startswith(LOOPBACK_PREFIXES):
            raise ValueError(f"direct_rpc_url must be a loopback URL: {self.direct_rpc_url!r}")
