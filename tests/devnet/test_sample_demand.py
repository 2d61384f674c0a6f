"""``python -m walletd.devnet sample-demand`` prints the demand the devnet API really sends."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
from typing import Any

import httpx

from tests.plugins.devnet import DevnetApi
from walletd.devnet.sample import DEVNET_PAY_TO, sample_demand


def _decode(value: str) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(base64.b64decode(value, validate=True))
    return doc


def test_sample_demand_is_the_devnet_apis_chat_demand(devnet_api: DevnetApi) -> None:
    url = devnet_api.url("/v1/chat/completions")
    answer = httpx.post(url, json={"model": "llama-3.3-70b", "messages": []}, timeout=30)
    assert answer.status_code == 402
    real = _decode(answer.headers["PAYMENT-REQUIRED"])
    sample = _decode(sample_demand(url))
    assert sample["x402Version"] == real["x402Version"] == 2
    assert sample["accepts"] == real["accepts"]
    assert sample["resource"]["url"] == real["resource"]["url"]
    assert devnet_api.pay_to == DEVNET_PAY_TO


def test_sample_demand_command_takes_url_and_amount() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "walletd.devnet", "sample-demand", "--url", "https://x.test/v1/a",
         "--amount", "0.02"],
        capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    doc = _decode(out.stdout.strip())
    assert doc["resource"]["url"] == "https://x.test/v1/a"
    assert [e["amount"] for e in doc["accepts"]] == ["20000"]


def test_sample_demand_refuses_a_zero_amount() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "walletd.devnet", "sample-demand", "--amount", "0"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert out.returncode == 2
    assert "above 0" in out.stderr
