"""`walletd chat`, `walletd image`, `walletd models` end to end (subprocess, real daemon)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
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


def test_paid_commands_print_what_was_paid_on_stderr(wallet: Wallet, tmp_path: Path) -> None:
    chat = walletd(wallet, "chat", "--base-url", wallet.api.base_url, "--model", CHAT_MODEL, "hi")
    streamed = walletd(wallet, "chat", "--base-url", wallet.api.base_url, "--model", CHAT_MODEL,
                       "--stream", "hi")  # fmt: skip
    image = walletd(wallet, "image", "--base-url", wallet.api.base_url, "--model", IMAGE_MODEL,
                    "--size", "256x256", "--out", str(tmp_path / "p.png"), "x")  # fmt: skip
    rows = wallet.new_payments()
    assert [r.amount for r in rows] == [CHAT_PRICE, CHAT_PRICE, IMAGE_PRICE]
    usds = ("0.003000", "0.003000", "0.020000")
    for proc, row, usd in zip((chat, streamed, image), rows, usds, strict=True):
        (line,) = proc.stderr.splitlines()
        assert line.startswith(f"walletd: paid {usd} USD to {row.payee}, payment {row.payment_id}")
        assert ", tx 0x" in line
        assert row.payment_id not in proc.stdout  # stdout is the answer alone


def test_quiet_and_json_print_nothing_on_stderr(wallet: Wallet) -> None:
    quiet = walletd(wallet, "chat", "--base-url", wallet.api.base_url, "--model", CHAT_MODEL,
                    "--quiet", "hi")  # fmt: skip
    as_json = walletd(wallet, "chat", "--base-url", wallet.api.base_url, "--model", CHAT_MODEL,
                      "--json", "hi")  # fmt: skip
    free = walletd(wallet, "models", "--base-url", wallet.api.base_url)
    assert (quiet.stderr, as_json.stderr, free.stderr) == ("", "", "")
    assert len(wallet.new_payments()) == 2


def test_timeout_gives_up_on_a_stuck_api(wallet: Wallet) -> None:
    wallet.api.faults.answer_delay_seconds = 3.0
    started = time.monotonic()
    out = walletd(wallet, "models", "--base-url", wallet.api.base_url, "--timeout", "0.3",
                  "--json", check=False)  # fmt: skip
    elapsed = time.monotonic() - started
    assert out.returncode == 1, out.stderr
    error = json.loads(out.stderr)["error"]
    assert error["reason"] == "API_CONNECTION"
    assert "ReadTimeout" in error["message"]
    assert elapsed < 15  # four attempts of 0.3 s and their backoff, not the 120 s default
    assert wallet.new_payments() == []
