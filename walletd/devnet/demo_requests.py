"""The demo's three paid requests, made with walletd's thin client.

Application code calls the API as if it were free; ``ClusterClient`` meets each
402, asks the daemon to pay under one idempotency key, re-sends, and reports
the outcome back so the ledger knows what the server said.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path

from walletd.client import ClusterClient, PaymentAttempt, WalletClient, WalletdSettings
from walletd.domain.money import format_usd

DEMO = WalletdSettings(labels={"app": "demo"})
"""The demo's payments carry ``app=demo`` (the wallet itself is given)."""


def _paid(payment: PaymentAttempt | None) -> str:
    if payment is None:
        return "not paid"
    receipt = payment.receipt
    settled = "no receipt"
    if payment.payment_response:
        doc = json.loads(base64.b64decode(payment.payment_response))
        settled = f"settled in tx {str(doc.get('transaction', ''))[:18]}…"
    return f"paid {format_usd(receipt.amount)} USDC to {receipt.payee}; {settled}"


def run(base_url: str, wallet: WalletClient, model: str, image_model: str, out: Path) -> None:
    """A paid chat, a streamed chat and an image generation."""
    messages = [{"role": "user", "content": "What does walletd do?"}]
    with ClusterClient(f"{base_url}/v1", walletd=DEMO, wallet=wallet) as api:
        result = api.chat(model, messages)
        print(f"  chat → {result.text[:60]!r}")
        print(f"    {_paid(result.payment)}")
        print("  streamed chat → ", end="", flush=True)
        with api.chat_stream(model, messages, max_tokens=12) as stream:
            for delta in stream:
                print(delta, end="", flush=True)
            payment = stream.payment
        print(f"\n    {_paid(payment)}")
        images = api.images_result(image_model, "a lighthouse", n=1, size="256x256")
        (out / "image.png").write_bytes(images.images[0])
        print(f"  image → {len(images.images[0])}-byte PNG")
        print(f"    {_paid(images.payment)}")
