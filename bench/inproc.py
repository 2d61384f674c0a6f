"""Pay without the transport: WalletService.pay called by threads inside one process.

The same ledger, client, budget and demand as the Pay-over-the-socket lines, the
same checks, records, signature and durable (group) commit, but no gRPC, no
caller processes and no token over the wire (each call still authenticates).
Against "gRPC alone" and "Pay over the socket" in the same run, it splits a
Pay's cost between walletd's own work and the transport: the daemon runs both
in one process under one GIL, so its Pay rate cannot pass this line either.
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

from bench.pay_load import URL, Target
from bench.stats import Result
from tests.plugins.daemon import demand_header
from walletd.db.engine import make_engines, sqlite_url
from walletd.db.ledger import Store
from walletd.domain import policy
from walletd.domain.payment import PayCommand
from walletd.keys.signer import LocalSigner
from walletd.service.wallet import WalletService


def run(target: Target, threads: int, calls: int, label: str) -> Result:
    """``threads`` threads x ``calls`` sequential Pays on the target's ledger."""
    engines = make_engines(target.db_url or sqlite_url(target.data_dir))
    try:
        service = WalletService(
            Store(engines), LocalSigner(os.urandom(31) + b"\1"), policy.Limits()
        )
        token = Path(target.token_file).read_text().strip()
        header = demand_header()

        def pay(key: str) -> None:
            command = PayCommand(key, "POST", URL, header, b"", {})
            service.pay(service.authenticate(token), command)

        for i in range(10):
            pay(f"inproc-warm-{i}-{time.time_ns()}")
        latencies: list[list[float]] = [[] for _ in range(threads)]
        start_line = threading.Barrier(threads + 1)

        def worker(index: int) -> None:
            start_line.wait()
            for i in range(calls):
                t0 = time.perf_counter_ns()
                pay(f"inproc-{index}-{i}-{t0}")
                latencies[index].append((time.perf_counter_ns() - t0) / 1000)

        workers = [threading.Thread(target=worker, args=(i,)) for i in range(threads)]
        for w in workers:
            w.start()
        start_line.wait()
        cpu, start = time.process_time(), time.perf_counter()
        for w in workers:
            w.join()
        seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    finally:
        engines.dispose()
    name = f"{label} Pay in-process, {threads} threads"
    return Result(name, threads * calls, seconds, [x for part in latencies for x in part], cpu)
