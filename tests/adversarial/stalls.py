"""Stalled HTTP/2 connections and oversized requests against a daemon while a real client pays.

A stalled connection is a raw socket that sends the HTTP/2 preface, an empty
SETTINGS frame and a HEADERS frame opening a Pay call, then nothing: no token,
no request message. ``run_stalls`` holds ``stalls`` of them (re-opening a call on
each every ``RESTALL_S``, and the connection itself when the daemon closed it),
sends oversized Pays (over the gRPC receive limit, and over the label and URL
limits) from another thread, and has a real ``WalletClient`` pay in a loop the
whole time. ``make stress`` runs it at 1,200 connections (``stress.py --stalls``);
the test suite at a few hundred (``test_stress_smoke.py``, ``tests/rpc/test_limits.py``).
"""

from __future__ import annotations

import resource
import shutil
import socket
import sqlite3
import struct
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from tests.plugins.daemon import Daemon
from walletd.client import WalletClient
from walletd.domain.payment import MAX_LABELS, MAX_URL_BYTES
from walletd.errors import WalletdError
from walletd.rpc.intake import REQUEST_WAIT_S

PAY_PATH = "/walletd.v1.WalletService/Pay"
PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
RESTALL_S = REQUEST_WAIT_S + 0.5
"""How often each held connection opens a new stalled call: one is stalled on each at a time.

More per connection would pass the daemon's call limit (``MAX_CONCURRENT_RPCS``):
what that does is in docs/reliability.md."""
URL = "http://127.0.0.1:9/v1/chat/completions"


def _frame(kind: int, flags: int, stream: int, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload))[1:] + bytes([kind, flags]) + struct.pack(">I", stream)


def _literal(text: str) -> bytes:
    raw = text.encode()
    return bytes([len(raw)]) + raw  # shorter than 127 bytes, no Huffman


def stalled_headers(stream: int, path: str = PAY_PATH) -> bytes:
    """A HEADERS frame (END_HEADERS, no END_STREAM) opening a gRPC call on ``stream``."""
    block = (
        b"\x83\x86"  # :method POST, :scheme http (static table)
        + b"\x04" + _literal(path)  # :path, literal without indexing
        + b"\x01" + _literal("localhost")  # :authority
        + b"\x0f\x10" + _literal("application/grpc")  # content-type
        + b"\x00" + _literal("te") + _literal("trailers")
    )  # fmt: skip
    return _frame(1, 0x4, stream, block) + block


def stall_opening() -> bytes:
    """Preface, empty SETTINGS, and the first stalled call (stream 1)."""
    return PREFACE + _frame(4, 0, 0, b"") + stalled_headers(1)


def raise_fd_limit(wanted: int) -> int:
    """Raise this process's soft RLIMIT_NOFILE towards ``wanted`` (up to the hard limit)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft != resource.RLIM_INFINITY and soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        soft = target
    return int(soft)


class Stall:
    """One held connection; ``poke`` opens the next stalled call, re-connecting if closed."""

    def __init__(self, socket_path: Path) -> None:
        self._path = socket_path
        self.sock: socket.socket | None = None
        self.stream = 1
        self.reconnects = 0
        self.connect()

    def connect(self) -> None:
        """Open the connection and its first stalled call; ``sock`` stays None if refused."""
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.settimeout(2.0)
            sock.connect(str(self._path))
            sock.sendall(stall_opening())
        except OSError:
            sock.close()
            return
        self.sock, self.stream = sock, 1

    def poke(self) -> None:
        """Open the next stalled call, or re-connect when the daemon closed the connection."""
        if self.sock is not None:
            self.stream += 2
            try:
                self.sock.sendall(stalled_headers(self.stream))
                return
            except OSError:
                self.close()
        self.reconnects += 1
        self.connect()

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None


@dataclass
class StallFigures:
    """What one run saw; ``render`` prints it for docs/reliability.md."""

    stalls: int = 0
    seconds: float = 0.0
    reconnects: int = 0
    pays: Counter[str] = field(default_factory=Counter)
    latencies: list[float] = field(default_factory=list)
    oversized: Counter[str] = field(default_factory=Counter)
    answered: int = 0
    """The real client's Pays the service decided (each writes one decision row)."""
    extra_decisions: int | None = None
    daemon_fds: int = 0
    daemon_fd_limit: str = ""
    daemon_rss_mb: float = 0.0

    def paid(self) -> int:
        return self.pays["paid"]

    def quantile(self, q: float) -> float:
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else 0.0

    def problems(self) -> list[str]:
        found = []
        if not self.paid() or set(self.pays) - {"paid"}:
            found.append(f"the real client's Pays: {dict(self.pays)}")
        if self.oversized.get("accepted"):
            found.append(f"oversized requests accepted: {self.oversized['accepted']}")
        if self.extra_decisions:
            found.append(f"decision rows beyond the real client's: {self.extra_decisions}")
        return found

    def render(self) -> str:
        return (
            f"stalled connections held: {self.stalls} for {self.seconds:.0f} s "
            f"(re-opened after the daemon closed or refused them: {self.reconnects})\n"
            f"real client Pays: {dict(self.pays)}; latency p50 {self.quantile(0.5) * 1000:.0f} ms, "
            f"p99 {self.quantile(0.99) * 1000:.0f} ms, max {max(self.latencies or [0]) * 1000:.0f} ms\n"
            f"oversized requests: {dict(self.oversized)}; decision rows they wrote: "
            f"{self.extra_decisions if self.extra_decisions is not None else 'n/a'}\n"
            f"daemon: peak {self.daemon_fds} fds (limit {self.daemon_fd_limit}), "
            f"peak RSS {self.daemon_rss_mb:.0f} MB"
        )


def _oversized_pays(client: WalletClient, n: int) -> Counter[str]:
    """Over the gRPC receive limit, over the label count, a label value, the URL."""
    demand = "e30="  # never decoded: the size check comes first
    shapes: list[tuple[str, dict[str, str]]] = [
        (URL, {"blob": "x" * (3_800_000)}),
        (URL, {f"k{i}": "v" for i in range(MAX_LABELS + 1)}),
        (URL, {"model": "m" * 4096}),
        (URL + "?" + "q" * MAX_URL_BYTES, {}),
    ]
    seen: Counter[str] = Counter()
    for i in range(n):
        url, labels = shapes[i % len(shapes)]
        try:
            client.pay(f"oversized-{i}", "POST", url, payment_required=demand, labels=labels)
            seen["accepted"] += 1
        except WalletdError as err:
            seen[err.details.get("grpc_code", err.reason)] += 1
    return seen


def _decisions(ledger: Path | None) -> int | None:
    if ledger is None or not ledger.exists():
        return None
    with sqlite3.connect(f"file:{ledger}?mode=ro", uri=True) as db:
        return int(db.execute("SELECT count(*) FROM decisions").fetchone()[0])


def _daemon_sample(pid: int | None, figures: StallFigures) -> None:
    if pid is None:
        return
    try:
        fds = len(list(Path(f"/proc/{pid}/fd").iterdir()))
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return
    rss = next((int(line.split()[1]) for line in status.splitlines()
                if line.startswith("VmRSS:")), 0)  # fmt: skip
    figures.daemon_fds = max(figures.daemon_fds, fds)
    figures.daemon_rss_mb = max(figures.daemon_rss_mb, rss / 1024)


def _fd_limit(pid: int | None) -> str:
    if pid is None:
        return "n/a"
    for line in Path(f"/proc/{pid}/limits").read_text().splitlines():
        if line.startswith("Max open files"):
            return "/".join(line.split()[3:5])
    return "n/a"


def run_stalls(
    socket_path: Path,
    token: str,
    demand: str,
    *,
    stalls: int,
    seconds: float,
    oversized: int = 40,
    pid: int | None = None,
    ledger: Path | None = None,
) -> StallFigures:
    """Hold ``stalls`` stalled connections for ``seconds`` while a real client pays ``demand``."""
    raise_fd_limit(stalls + 256)
    figures = StallFigures(stalls=stalls, daemon_fd_limit=_fd_limit(pid))
    payer = WalletClient(socket=socket_path, token=token, timeout=10)
    payer.pay("stall-warmup", "POST", URL, payment_required=demand)  # connected before the stalls
    before = _decisions(ledger)
    held = [Stall(socket_path) for _ in range(stalls)]
    stop = threading.Event()
    started = time.monotonic()

    def pay_loop() -> None:
        n = 0
        while not stop.is_set():
            n += 1
            t0 = time.monotonic()
            try:
                payer.pay(f"stall-pay-{n}", "POST", URL, payment_required=demand)
                figures.pays["paid"] += 1
                figures.answered += 1
            except WalletdError as err:
                figures.pays[err.details.get("grpc_code", err.reason)] += 1
                figures.answered += "grpc_code" not in err.details
            figures.latencies.append(time.monotonic() - t0)
            time.sleep(0.05)

    def oversized_loop() -> None:
        with WalletClient(socket=socket_path, token=token, timeout=10) as attacker:
            figures.oversized.update(_oversized_pays(attacker, oversized))

    threads = [threading.Thread(target=pay_loop), threading.Thread(target=oversized_loop)]
    for thread in threads:
        thread.start()
    try:
        while time.monotonic() - started < seconds:
            _daemon_sample(pid, figures)
            for stall in held:  # spread out, so the daemon ends old calls as new ones come
                if time.monotonic() - started >= seconds:
                    break
                stall.poke()
                time.sleep(RESTALL_S / len(held))
    finally:
        stop.set()
        for thread in threads:
            thread.join()
        figures.seconds = time.monotonic() - started
        figures.reconnects = sum(stall.reconnects for stall in held)
        for stall in held:
            stall.close()
        payer.close()
    after = _decisions(ledger)
    if before is not None and after is not None:
        figures.extra_decisions = after - before - figures.answered
    return figures


@contextmanager
def own_daemon(nofile: int | None = None) -> Iterator[tuple[Daemon, str]]:
    """A fresh data dir and ``walletd serve`` on it (as the daemon fixture); and a pay token.

    ``nofile`` caps the daemon's open files (soft and hard), as a host with a low limit would.
    """
    from tests.plugins.daemon import init_home

    home = init_home(Path(tempfile.mkdtemp(prefix="wd-", dir="/tmp")))
    token = home.add_client("payer").read_text().strip()
    home.admin("budget", "set", "payer", "--per-request", "0.01", "--daily", "1000")
    daemon = Daemon(home, nofile=nofile)
    try:
        yield daemon, token
    finally:
        daemon.stop()
        shutil.rmtree(home.root, ignore_errors=True)


def run_against_own_daemon(
    stalls: int, seconds: float, oversized: int = 40, nofile: int | None = None
) -> StallFigures:
    """``run_stalls`` against a daemon of its own, on its SQLite ledger."""
    from tests.plugins.daemon import demand_header

    with own_daemon(nofile) as (daemon, token):
        home = daemon.home
        return run_stalls(
            home.socket, token, demand_header("1000"), stalls=stalls, seconds=seconds,
            oversized=oversized, pid=daemon.proc.pid, ledger=home.data_dir / "walletd.db",
        )  # fmt: skip
