"""The README's first command: walletd paying a local paid API, for real, on a local chain.

``make demo`` runs ``python -m walletd.devnet.demo``. It starts anvil with our
test USDC at Base's address, the reference x402 facilitator and a
Cluster-Protocol-style paid API, then sets up walletd exactly as an operator
would (``walletd init``, ``client add``, ``budget set``, ``serve --rpc-url``),
funds the wallet, makes a paid chat, a streamed chat and an image generation,
runs one reconcile pass (``walletd reconcile``: each payment is checked on
chain), prints the on-chain balances before and after and the ledger, checks
that the ledger's settled payments add up to what moved on chain, and stops
everything it started. Nothing leaves loopback.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from walletd.client import DaemonUnavailableError, PaymentView, Tally, WalletClient
from walletd.devnet import chain as devchain
from walletd.devnet.servers import Devnet
from walletd.domain.money import format_usd

FUNDING = 5_000_000  # 5 USDC
MODEL = "llama-3.3-70b"
IMAGE_MODEL = "flux-dev"
_PROBE = "health-probe"  # health checks need no valid token


@dataclass
class Walletd:
    """A data dir, its client token, and the running daemon."""

    root: Path
    address: str
    token_file: Path
    proc: subprocess.Popen[bytes]
    env: dict[str, str]
    rpc_url: str

    @property
    def data(self) -> Path:
        """This wallet's data dir (keystore, ledger, socket)."""
        return self.root / "data"

    @property
    def socket(self) -> Path:
        """The daemon's Unix socket in this wallet's data dir."""
        return self.data / "walletd.sock"

    def reconcile(self) -> str:
        """One reconcile pass, as an operator runs it (the daemon also runs one every 30 s)."""
        print(f"$ walletd reconcile --data-dir {self.data} --rpc-url {self.rpc_url}")
        out = _cli("reconcile", "--data-dir", str(self.data), "--rpc-url", self.rpc_url,
                   env=self.env).strip()  # fmt: skip
        print(f"  {out}")
        if out.startswith("checked 0 "):
            print("  (the daemon's own reconcile pass, every 30 s, had already checked them)")
        return out


def _cli(*args: str, env: dict[str, str]) -> str:
    out = subprocess.run(
        [sys.executable, "-m", "walletd", *args], env=env, capture_output=True, text=True
    )
    if out.returncode != 0:
        raise SystemExit(f"walletd {args[0]} failed: {out.stderr.strip()}")
    return out.stdout


def _step(text: str) -> None:
    print(f"\n== {text}", flush=True)


@contextmanager
def _walletd(root: Path, rpc_url: str) -> Iterator[Walletd]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("WALLETD_")}
    data = root / "data"
    passfile = root / "passphrase"
    passfile.write_text("demo passphrase, not for real money\n")
    passfile.chmod(0o600)
    print(f"$ walletd init --data-dir {data} --passphrase-file {passfile}")
    address = _cli("init", "--data-dir", str(data), "--passphrase-file", str(passfile), env=env)
    address = address.strip().splitlines()[-1]
    print(f"  wallet address {address}")
    token = _cli("client", "add", "demo-app", "--data-dir", str(data), env=env)
    token_file = root / "demo-app.token"
    token_file.write_text(token.strip().splitlines()[-1] + "\n")
    print("$ walletd client add demo-app   (token saved to a 0600 file)")
    print("$ walletd budget set demo-app --per-request 0.05 --daily 1")
    _cli("budget", "set", "demo-app", "--per-request", "0.05", "--daily", "1",
         "--data-dir", str(data), env=env)  # fmt: skip
    log = (root / "walletd.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "walletd", "serve", "--data-dir", str(data),
         "--passphrase-file", str(passfile), "--rpc-url", rpc_url],
        env=env, stdout=log, stderr=log,
    )  # fmt: skip
    running = Walletd(root, address, token_file, proc, env, rpc_url)
    try:
        _wait_ready(running)
        print(f"$ walletd serve --rpc-url {rpc_url}   (pid {proc.pid}, socket {running.socket})")
        yield running
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=20)
        log.close()
        print(f"  walletd stopped (exit {proc.returncode})")


def _wait_ready(running: Walletd, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if running.proc.poll() is not None:
            raise SystemExit("walletd serve exited early; see walletd.log")
        if running.socket.exists():
            try:  # the socket file exists a moment before it accepts
                probe = WalletClient(socket=running.socket, token=_PROBE, timeout=2)
            except DaemonUnavailableError:
                probe = None
            if probe is not None:
                with probe:
                    if probe.health():
                        return
        time.sleep(0.05)
    raise SystemExit("walletd serve did not become ready")


def _balances(net: Devnet, wallet: str) -> tuple[int, int]:
    return (
        devchain.usdc_balance(net.w3, wallet),
        devchain.usdc_balance(net.w3, net.api.pay_to),
    )


def _print_balances(label: str, net: Devnet, wallet: str) -> tuple[int, int]:
    mine, theirs = _balances(net, wallet)
    print(f"  {label}: wallet {format_usd(mine)} USDC, payee {format_usd(theirs)} USDC")
    return mine, theirs


def _print_ledger(rows: list[PaymentView]) -> None:
    print(f"  {'payment':<28} {'status':<10} {'amount':>10}  {'model':<14} url")
    for row in reversed(rows):
        model = row.labels.get("model", "")
        print(f"  {row.payment_id:<28} {row.status:<10} {format_usd(row.amount):>10}  "
              f"{model:<14} {row.url}")  # fmt: skip


def _check_settled(rows: list[PaymentView], confirmed: Tally, moved: int) -> None:
    """Every payment settled, confirmed on chain by its transaction, adding up to ``moved``."""
    print(f"  confirmed on chain: {confirmed.count} payments, {format_usd(confirmed.amount)} USDC")
    open_rows = [r.payment_id for r in rows if r.status != "settled"]
    if open_rows:
        raise SystemExit(f"payments not settled after reconciling: {', '.join(open_rows)}")
    if (confirmed.count, confirmed.amount) != (len(rows), moved):
        raise SystemExit("the ledger's confirmed payments and the chain disagree")


def main() -> None:
    """Run the whole demo; exit non-zero if any step fails."""
    from walletd.devnet import demo_requests

    started = time.monotonic()
    root = Path(tempfile.mkdtemp(prefix="walletd-demo-", dir="/tmp"))
    try:
        _step("starting a local Base (anvil, chain 8453), test USDC, facilitator and paid API")
        with Devnet() as net:
            print(f"  anvil {net.rpc_url} (pid {net.anvil.pid})")
            print(f"  paid API {net.api.base_url}  (chat $0.003, image $0.02)")
            _step("setting up walletd (SQLite ledger)")
            with _walletd(root, net.rpc_url) as wd:
                devchain.mint(net.w3, wd.address, FUNDING)
                _step("balances before")
                before = _print_balances("before", net, wd.address)
                _step("paying for requests through walletd")
                with WalletClient(socket=wd.socket, token_file=wd.token_file) as wallet:
                    demo_requests.run(net.api.base_url, wallet, MODEL, IMAGE_MODEL, root)
                    _step("checking every payment on chain")
                    wd.reconcile()
                    rows = wallet.list_payments()
                    confirmed = wallet.get_spend_report().totals.confirmed
                _step("balances after")
                after = _print_balances("after", net, wd.address)
                spent = before[0] - after[0]
                print(f"  moved on chain: {format_usd(spent)} USDC; "
                      f"ledger says {format_usd(sum(r.amount for r in rows))} USDC")  # fmt: skip
                _step("the ledger")
                _print_ledger(rows)
                if spent != sum(r.amount for r in rows) or after[1] - before[1] != spent:
                    raise SystemExit("on-chain transfers and the ledger disagree")
                _check_settled(rows, confirmed, spent)
        _step(f"done in {time.monotonic() - started:.1f} s; everything started has stopped")
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
