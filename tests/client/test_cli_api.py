"""`walletd chat`, `walletd image`, `walletd models` end to end (subprocess, real daemon)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.client.conftest import CHAT_MODEL, CHAT_PRICE, IMAGE_MODEL, IMAGE_PRICE, Wallet
from walletd.devnet.api import PNG_SIGNATURE


def walletd(wallet: Wallet, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        [sys.executable, "-m", "walletd", *args],
        capture_output=True, text=True, env=wallet.env(), timeout=60, check=False,
    )  # fmt: skip
    if check:
        assert proc.returncode == 0, proc.stderr
    return proc


def test_chat_prints_the_answer_and_pays_once(wallet: Wallet) -> None:
    out = walletd(wallet, "chat", "--base-url", wallet.api.base_url, "--model", CHAT_MODEL,
                  "--max-tokens", "30", "hello cli")  # fmt: skip
    assert out.stdout.startswith("Devnet reply to: hello cli")
    (row,) = wallet.new_payments()
    assert row.amount == CHAT_PRICE


def test_chat_stream_and_json(wallet: Wallet) -> None:
    streamed = walletd(wallet, "chat", "--base-url", wallet.api.base_url, "--model", CHAT_MODEL,
                       "--stream", "same prompt")  # fmt: skip
    as_json = walletd(wallet, "chat", "--base-url", wallet.api.base_url, "--model", CHAT_MODEL,
                      "--json", "same prompt")  # fmt: skip
    doc = json.loads(as_json.stdout)
    assert streamed.stdout.strip() == doc["text"]
    assert doc["payment"]["amount"] == str(CHAT_PRICE)
    assert doc["payment"]["transaction"].startswith("0x")
    assert len(wallet.new_payments()) == 2


def test_image_writes_numbered_pngs_and_pays_once(wallet: Wallet, tmp_path: Path) -> None:
    out = walletd(wallet, "image", "--base-url", wallet.api.base_url, "--model", IMAGE_MODEL,
                  "--n", "2", "--size", "256x256", "--out", str(tmp_path / "pic.png"),
                  "a lighthouse")  # fmt: skip
    files = [tmp_path / "pic-1.png", tmp_path / "pic-2.png"]
    assert all(f.read_bytes().startswith(PNG_SIGNATURE) for f in files)
    assert all(str(f) in out.stdout for f in files)
    (row,) = wallet.new_payments()
    assert row.amount == IMAGE_PRICE


def test_models_and_api_key_mode_need_no_payment(wallet: Wallet, tmp_path: Path) -> None:
    listed = walletd(wallet, "models", "--base-url", wallet.api.base_url, "--json")
    assert CHAT_MODEL in [m["id"] for m in json.loads(listed.stdout)["models"]]
    key_file = tmp_path / "key"
    key_file.write_text(wallet.api.api_key + "\n")
    keyed = walletd(wallet, "chat", "--base-url", wallet.api.base_url, "--model", CHAT_MODEL,
                    "--api-key-file", str(key_file), "keyed")  # fmt: skip
    assert keyed.stdout.startswith("Devnet reply to: keyed")
    assert wallet.new_payments() == []


def test_unknown_model_fails_with_the_server_code(wallet: Wallet) -> None:
    out = walletd(wallet, "chat", "--base-url", wallet.api.base_url, "--model", "nope",
                  "--json", "hi", check=False)  # fmt: skip
    assert out.returncode == 1
    error = json.loads(out.stderr)["error"]
    assert error["reason"] == "API_NOT_FOUND"
    assert error["details"]["code"] == "model_not_found"
