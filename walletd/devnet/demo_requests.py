"""The demo's three paid requests, made the way any service can: httpx plus `Pay`.

Each request is sent once unpaid; the 402's demand goes to walletd under one
idempotency key; the request is sent again with the header walletd returns,
and the outcome is reported back so the ledger knows what the server said.
"""

from __future__ import annotations

import base64
import json
import uuid
from pathlib import Path
from typing import Any

import httpx

from walletd.client import WalletClient
from walletd.domain.money import format_usd


def _paid(
    http: httpx.Client, wallet: WalletClient, url: str, body: dict[str, Any], label: str
) -> tuple[httpx.Response, str]:
    first = http.post(url, json=body)
    if first.status_code != 402:
        raise SystemExit(f"expected a 402 from {url}, got {first.status_code}")
    receipt = wallet.pay(
        "req_" + uuid.uuid4().hex, "POST", url,
        payment_required=first.headers["payment-required"], labels={"model": label},
    )  # fmt: skip
    print(f"  402 → walletd paid {format_usd(receipt.amount)} USDC to {receipt.payee}")
    headers = {receipt.header_name: receipt.header_value}
    request = http.build_request("POST", url, json=body, headers=headers)
    return http.send(request, stream=True), receipt.payment_id


def _settled(wallet: WalletClient, payment_id: str, response: httpx.Response) -> str:
    header = response.headers.get("payment-response", "")
    wallet.report_outcome(payment_id, response.status_code, header)
    if not header:
        return "no receipt"
    doc = json.loads(base64.b64decode(header))
    return f"settled in tx {doc.get('transaction', '')[:18]}…"


def run(base_url: str, wallet: WalletClient, model: str, image_model: str, out: Path) -> None:
    """A paid chat, a streamed chat and an image generation."""
    chat = f"{base_url}/v1/chat/completions"
    with httpx.Client(timeout=60) as http:
        messages = [{"role": "user", "content": "What does walletd do?"}]
        response, pid = _paid(http, wallet, chat, {"model": model, "messages": messages}, model)
        response.read()
        answer = response.json()["choices"][0]["message"]["content"]
        print(
            f"  chat → {response.status_code}: {answer[:70]!r}; {_settled(wallet, pid, response)}"
        )
        body = {"model": model, "messages": messages, "stream": True, "max_tokens": 12}
        response, pid = _paid(http, wallet, chat, body, model)
        print("  streamed chat → ", end="", flush=True)
        for line in response.iter_lines():
            if line.startswith("data: ") and line != "data: [DONE]":
                for choice in json.loads(line[6:]).get("choices", []):
                    print(choice.get("delta", {}).get("content", ""), end="", flush=True)
        response.close()
        print(f"\n    {_settled(wallet, pid, response)}")
        body = {"model": image_model, "prompt": "a lighthouse", "n": 1, "size": "256x256",
                "response_format": "b64_json"}  # fmt: skip
        response, pid = _paid(http, wallet, f"{base_url}/v1/images/generations", body, image_model)
        response.read()
        png = base64.b64decode(response.json()["data"][0]["b64_json"])
        (out / "image.png").write_bytes(png)
        settled = _settled(wallet, pid, response)
        print(f"  image → {response.status_code}: {len(png)}-byte PNG; {settled}")
