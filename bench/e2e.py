"""(d) A paid chat request end to end, against an unpaid (API-key) one to the same server.

Everything is real and local: anvil, the reference x402 middleware and a
facilitator that settles each payment on chain, `walletd serve`, and the thin
client. Paid requests are measured with and without pre-pay.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from bench.pay_load import daemon
from bench.stats import Result
from walletd.client import ClusterClient, WalletClient, WalletdSettings
from walletd.devnet import chain as devchain
from walletd.devnet.servers import Devnet

API_KEY = "bench-key"  # a loopback test server's key
MODEL = "llama-3.3-70b"
MESSAGES = [{"role": "user", "content": "benchmark"}]


class _TimedWallet(WalletClient):
    """A WalletClient that adds up the time spent in walletd's RPCs for the current request."""

    spent_us = 0.0

    def pay(self, *args: Any, **kwargs: Any) -> Any:
        t0 = time.perf_counter_ns()
        try:
            return super().pay(*args, **kwargs)
        finally:
            self.spent_us += (time.perf_counter_ns() - t0) / 1000

    def report_outcome(self, *args: Any, **kwargs: Any) -> str:
        t0 = time.perf_counter_ns()
        try:
            return super().report_outcome(*args, **kwargs)
        finally:
            self.spent_us += (time.perf_counter_ns() - t0) / 1000


def _timed(
    api: ClusterClient, n: int, name: str, wallet: _TimedWallet | None = None
) -> tuple[Result, list[float]]:
    api.chat(MODEL, MESSAGES, max_tokens=8)  # warm-up (and, with pre-pay, learn the terms)
    latencies, in_walletd = [], []
    start = time.perf_counter()
    for _ in range(n):
        if wallet is not None:
            wallet.spent_us = 0.0
        t0 = time.perf_counter_ns()
        api.chat(MODEL, MESSAGES, max_tokens=8)
        latencies.append((time.perf_counter_ns() - t0) / 1000)
        in_walletd.append(wallet.spent_us if wallet is not None else 0.0)
    return Result(name, n, time.perf_counter() - start, latencies), in_walletd


def run(n: int) -> tuple[list[Result], list[list[float]]]:
    """Unpaid, paid, and paid with pre-pay, ``n`` sequential chats each.

    Also returns, per paid request, the time spent waiting on walletd (its Pay
    and ReportOutcome RPCs): the rest is the HTTP round trips and the server's
    own work (the reference middleware verifies and settles on chain before it
    answers).
    """
    with Devnet(api_keys=[API_KEY]) as net, daemon() as target:
        address = _wallet_address(target.data_dir)
        devchain.mint(net.w3, address, 1_000_000_000)
        base = f"{net.api.base_url}/v1"
        results, shares = [], []
        with ClusterClient(base, api_key=API_KEY) as api:
            results.append(_timed(api, n, "(d) chat, API key (unpaid)")[0])
        for prepay in (False, True):
            label = "with pre-pay" if prepay else "402 round trip"
            wallet = _TimedWallet(socket=target.socket, token_file=Path(target.token_file))
            with (
                wallet,
                ClusterClient(base, walletd=WalletdSettings(prepay=prepay), wallet=wallet) as api,
            ):
                result, share = _timed(api, n, f"(d) chat, paid via walletd, {label}", wallet)
                results.append(result)
                shares.append(share)
        return results, shares


def _wallet_address(data_dir: Path) -> str:
    from walletd.keys.keystore import read_address

    return read_address(data_dir / "key.json")
