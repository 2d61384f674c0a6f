"""A sample x402 demand, for trying ``walletd pay`` by hand (the README's quick start).

``python -m walletd.devnet sample-demand`` prints the base64 ``PAYMENT-REQUIRED``
value that the devnet's paid API sends for a chat completion: x402 v2, scheme
``exact`` on Base (``eip155:8453``), Base's USDC, $0.003 to anvil's public dev
account 3 (the devnet's payee), valid for 300 s. walletd signs it under the quick
start's budgets (0.05 per request); the signature moves money only on a chain
where the signing wallet holds USDC and someone submits it, such as the devnet
(``python -m walletd.devnet``), whose facilitator settles on anvil.

Only walletd's domain tables are used here, so it needs no devnet extras.
"""

from __future__ import annotations

import argparse
import base64
import json
from collections.abc import Sequence
from typing import Any

from walletd.domain.money import format_usd, parse_usd
from walletd.domain.networks import BASE
from walletd.errors import InvalidRequestError

DEVNET_PAY_TO = "0x90F79bf6EB2c4f870365E785982E1f101E93b906"
"""anvil's public dev account 3: the devnet paid API's default payee."""
DEFAULT_URL = "https://api.example/v1/chat/completions"
DEFAULT_AMOUNT = "0.003"
MAX_TIMEOUT_SECONDS = 300


def sample_demand(
    url: str = DEFAULT_URL,
    *,
    amount: int = 3000,
    pay_to: str = DEVNET_PAY_TO,
    description: str = "Chat completion (walletd sample demand)",
) -> str:
    """A v2 PAYMENT-REQUIRED value shaped like the devnet API's, for ``amount`` atomic USDC."""
    entry: dict[str, Any] = {
        "scheme": "exact",
        "network": BASE.caip2,
        "asset": BASE.usdc,
        "amount": str(amount),
        "payTo": pay_to,
        "maxTimeoutSeconds": MAX_TIMEOUT_SECONDS,
        "extra": {"name": BASE.eip712_name, "version": BASE.eip712_version},
    }
    doc = {
        "x402Version": 2,
        "error": "Payment required",
        "resource": {"url": url, "description": description, "mimeType": "application/json"},
        "accepts": [entry],
    }
    return base64.b64encode(json.dumps(doc, separators=(",", ":")).encode()).decode()


def main(argv: Sequence[str] | None = None) -> int:
    """Print one sample demand (see the module docstring)."""
    parser = argparse.ArgumentParser(
        prog="python -m walletd.devnet sample-demand",
        description="Print a sample base64 PAYMENT-REQUIRED (x402 v2, USDC on Base).",
    )
    parser.add_argument("--url", default=DEFAULT_URL, help="the paid URL (default: %(default)s)")
    parser.add_argument(
        "--amount", default=DEFAULT_AMOUNT, help="USD to ask for (default: %(default)s)"
    )
    parser.add_argument(
        "--pay-to", default=DEVNET_PAY_TO, help="the payee (default: anvil dev account 3)"
    )
    args = parser.parse_args(argv)
    try:
        amount = parse_usd(args.amount)
    except InvalidRequestError as exc:
        parser.error(f"--amount: {exc.message}")
    if amount <= 0:
        parser.error(f"--amount must be above 0, not {format_usd(amount)}")
    print(sample_demand(args.url, amount=amount, pay_to=args.pay_to))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
