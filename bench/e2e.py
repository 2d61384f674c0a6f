"""(d) A paid chat end to end: the reference x402 client against walletd, interleaved.

Everything is real and local: anvil, the paid API (the reference x402 middleware,
with a facilitator that verifies and settles each payment on chain before the API
answers), `walletd serve`, and the clients, all asyncio:

* **reference**: the x402 SDK's ``x402HttpxClient`` with ``ExactEvmClientScheme``
  and an in-process eth-account key (its own funded address);
* **walletd**: ``AsyncClusterClient`` paying through the daemon after each 402;
* **walletd pre-pay**: the same with ``WalletdSettings(prepay=True)``: the route's
  known terms are paid before the request is sent (no 402 round trip);
* **free route**: the same chat with an API key, no payment.

The lines take turns request by request, each round in another order (all
orders in turn), so a slow phase of the machine falls on all of them alike and
each line follows each other line as often. The same is run once on
loopback and once through :class:`bench.delay.DelayProxy`, which holds every
chunk 20 ms each way between the clients and the API (walletd's own socket is
local either way, as it is in a deployment).
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from statistics import median
from typing import Any

import httpx
from eth_account import Account
from x402 import x402Client
from x402.http.clients import x402HttpxClient
from x402.mechanisms.evm import EthAccountSigner
from x402.mechanisms.evm.exact import ExactEvmClientScheme

from bench.delay import DelayProxy
from bench.pay_load import Target, daemon
from bench.stats import process_cpu
from walletd.client import AsyncClusterClient, AsyncWalletClient, WalletdSettings
from walletd.devnet import chain as devchain
from walletd.devnet.api.settings import BASE_NETWORK
from walletd.devnet.servers import Devnet

API_KEY = "bench-key"  # a loopback test server's key
MODEL = "llama-3.3-70b"
MESSAGES = [{"role": "user", "content": "benchmark"}]
BODY = {"model": MODEL, "messages": MESSAGES, "max_tokens": 8}
DELAY_S = 0.020
REFERENCE = "reference x402 client (x402HttpxClient)"
WALLETD = "walletd AsyncClusterClient"
PREPAY = "walletd AsyncClusterClient, pre-pay"
FREE = "free route (API key, no payment)"
LINES = (REFERENCE, WALLETD, PREPAY, FREE)


class _TimedWallet(AsyncWalletClient):
    """An AsyncWalletClient that keeps how long each Pay and ReportOutcome RPC took (µs)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.pay_us: list[float] = []
        self.report_us: list[float] = []

    async def pay(self, *args: Any, **kwargs: Any) -> Any:
        t0 = time.perf_counter_ns()
        try:
            return await super().pay(*args, **kwargs)
        finally:
            self.pay_us.append((time.perf_counter_ns() - t0) / 1000)

    async def report_outcome(self, *args: Any, **kwargs: Any) -> str:
        t0 = time.perf_counter_ns()
        try:
            return await super().report_outcome(*args, **kwargs)
        finally:
            self.report_us.append((time.perf_counter_ns() - t0) / 1000)


@dataclass
class Line:
    """One client's latencies (µs) over a run, and its walletd RPC times when it has them."""

    name: str
    latencies_us: list[float] = field(default_factory=list)
    wallet: _TimedWallet | None = None

    def quantile(self, q: float) -> float:
        """Nearest-rank quantile of the latencies (µs)."""
        ordered = sorted(self.latencies_us)
        return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))] if ordered else 0.0

    @property
    def p50(self) -> float:
        """Median latency, µs."""
        return median(self.latencies_us) if self.latencies_us else 0.0


@dataclass
class Run:
    """The four lines of one path (loopback or delayed), and the client process's CPU."""

    path: str
    lines: dict[str, Line]
    reports_in_background: bool


def _reference_client(account: Any) -> x402HttpxClient:
    payer = x402Client()
    payer.register(BASE_NETWORK, ExactEvmClientScheme(EthAccountSigner(account)))
    payer.set_spend_controls(False)
    return x402HttpxClient(payer, timeout=60)


async def _reference_chat(client: x402HttpxClient, url: str) -> None:
    response = await client.post(url, json=BODY)
    if response.status_code != 200:
        raise RuntimeError(f"reference client: HTTP {response.status_code} {response.text[:200]}")
    response.json()


async def _path(target: Target, account: Any, root: str, n: int, path: str) -> Run:
    """``n`` rounds of one request per line against the API at ``root``."""
    wallets = [_TimedWallet(socket=target.socket, token_file=Path(target.token_file))
               for _ in range(2)]  # fmt: skip
    lines = {name: Line(name) for name in LINES}
    lines[WALLETD].wallet, lines[PREPAY].wallet = wallets
    url = f"{root}/v1/chat/completions"
    async with (
        _reference_client(account) as reference,
        AsyncClusterClient(f"{root}/v1", walletd=WalletdSettings(), wallet=wallets[0]) as plain,
        AsyncClusterClient(
            f"{root}/v1", walletd=WalletdSettings(prepay=True), wallet=wallets[1]
        ) as prepaid,
        AsyncClusterClient(f"{root}/v1", api_key=API_KEY) as free,
    ):
        calls: dict[str, Callable[[], Awaitable[Any]]] = {
            REFERENCE: lambda: _reference_chat(reference, url),
            WALLETD: lambda: plain.chat(MODEL, MESSAGES, max_tokens=8),
            PREPAY: lambda: prepaid.chat(MODEL, MESSAGES, max_tokens=8),
            FREE: lambda: free.chat(MODEL, MESSAGES, max_tokens=8),
        }
        for call in calls.values():  # warm up: connections, and the pre-pay terms
            await call()
        await _settle_reports(plain, prepaid)
        for wallet in wallets:
            wallet.pay_us.clear()
            wallet.report_us.clear()
        orders = list(itertools.permutations(LINES))  # each line after each other alike
        for i in range(n):
            for name in orders[i % len(orders)]:
                t0 = time.perf_counter_ns()
                await calls[name]()
                lines[name].latencies_us.append((time.perf_counter_ns() - t0) / 1000)
        background = _background(plain)
        await _settle_reports(plain, prepaid)
    for wallet in wallets:
        await wallet.aclose()
    return Run(path, lines, background)


def _background(client: AsyncClusterClient) -> bool:
    """Whether this client sends a success's ReportOutcome off the request's path."""
    return hasattr(client.auth, "aflush_reports")


async def _settle_reports(*clients: AsyncClusterClient) -> None:
    """Let reports still being sent in the background reach the daemon."""
    for client in clients:
        flush = getattr(client.auth, "aflush_reports", None)
        if flush is not None:
            await flush()


def run(n: int, delay: float = DELAY_S) -> tuple[list[Run], float]:
    """The four lines on loopback and through the delaying proxy; also the daemon's CPU/request."""
    with Devnet(api_keys=[API_KEY]) as net, daemon() as target:
        devchain.mint(net.w3, _wallet_address(target.data_dir), 1_000_000_000)
        account = Account.create()
        devchain.mint(net.w3, account.address, 1_000_000_000)
        port = httpx.URL(net.api.base_url).port
        assert port is not None
        cpu = process_cpu(target.pid)
        runs = [asyncio.run(_path(target, account, net.api.base_url, n, "loopback"))]
        with DelayProxy(port, delay) as proxy:
            label = f"{delay * 1000:.0f} ms each way"
            runs.append(asyncio.run(_path(target, account, proxy.url, n, label)))
        paid = sum(len(r.lines[WALLETD].latencies_us) + len(r.lines[PREPAY].latencies_us)
                   for r in runs) + 4  # fmt: skip
        daemon_cpu_us = (process_cpu(target.pid) - cpu) / paid * 1e6
        return runs, daemon_cpu_us


def lines(runs: list[Run], daemon_cpu_us: float) -> list[str]:
    """The table rows of (d): p50, p90 and the ratio to the reference client's p50."""
    out = [f"{'(d) paid chat, sequential':<52} {'p50 ms':>8} {'p90 ms':>8}  ratio to reference p50"]
    for result in runs:
        base = result.lines[REFERENCE].p50
        n = len(result.lines[REFERENCE].latencies_us)
        out.append(f"(d) {result.path}, {n} requests per line, interleaved")
        for name in LINES:
            line = result.lines[name]
            out.append(
                f"  {name:<50} {line.p50 / 1000:>8.1f} {line.quantile(0.9) / 1000:>8.1f}"
                f"  {line.p50 / base:.2f}x"
            )
        for name in (WALLETD, PREPAY):
            wallet = result.lines[name].wallet
            if wallet is None or not wallet.pay_us:
                continue
            where = "in the background" if result.reports_in_background else "on the request path"
            report = f"{median(wallet.report_us):.0f} µs" if wallet.report_us else "none"
            out.append(
                f"    {name}: Pay RPC p50 {median(wallet.pay_us):.0f} µs;"
                f" ReportOutcome p50 {report} ({where})"
            )
    out.append(
        f"  walletd daemon CPU per paid request (Pay + ReportOutcome): {daemon_cpu_us:.0f} µs"
    )
    return out


def _wallet_address(data_dir: Path) -> str:
    from walletd.keys.keystore import read_address

    return read_address(data_dir / "key.json")
