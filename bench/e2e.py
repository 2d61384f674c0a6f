"""(d) A paid chat request end to end, against an unpaid (API-key) one to the same server.

Everything is real and local: anvil, the reference x402 middleware and a
facilitator that settles each payment on chain, `walletd serve`, and the thin
client. Paid requests are measured with and without pre-pay.
"""

from __future__ import annotations

import time
from pathlib import Path

from bench.pay_load import daemon
from bench.stats import Result
from walletd.client import ClusterClient, WalletClient
from walletd.devnet import chain as devchain
from walletd.devnet.servers import Devnet

API_KEY = "bench-key"  # a loopback test server's key
MODEL = "llama-3.3-70b"
MESSAGES = [{"role": "user", "content": "benchmark"}]


def _timed(api: ClusterClient, n: int, name: str) -> Result:
    api.chat(MODEL, MESSAGES, max_tokens=8)  # warm-up (and, with pre-pay, learn the terms)
    latencies = []
    start = time.perf_counter()
    for _ in range(n):
        t0 = time.perf_counter_ns()
        api.chat(MODEL, MESSAGES, max_tokens=8)
        latencies.append((time.perf_counter_ns() - t0) / 1000)
    return Result(name, n, time.perf_counter() - start, latencies)


def run(n: int) -> list[Result]:
    """Unpaid, paid, and paid with pre-pay, ``n`` sequential chats each."""
    with Devnet(api_keys=[API_KEY]) as net, daemon() as target:
        address = _wallet_address(target.data_dir)
        devchain.mint(net.w3, address, 1_000_000_000)
        base = f"{net.api.base_url}/v1"
        results = []
        with ClusterClient(base, api_key=API_KEY) as api:
            results.append(_timed(api, n, "(d) chat, API key (unpaid)"))
        for prepay in (False, True):
            label = "with pre-pay" if prepay else "402 round trip"
            with (
                WalletClient(socket=target.socket, token_file=Path(target.token_file)) as wallet,
                ClusterClient(base, wallet=wallet, prepay=prepay) as api,
            ):
                results.append(_timed(api, n, f"(d) chat, paid via walletd, {label}"))
        return results


def _wallet_address(data_dir: Path) -> str:
    from walletd.keys.keystore import read_address

    return read_address(data_dir / "key.json")
