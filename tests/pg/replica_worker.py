"""A caller process for the replica race: threads spread over several daemons' sockets.

Run as ``python -m tests.pg.replica_worker SOCKETS TOKEN_FILE THREADS ATTEMPTS PREFIX SHARED
OFFSET`` where SOCKETS is comma-separated. Every thread first pays the SHARED keys
``shared-0..`` (the same keys in every thread and process of this client, on
different replicas at once), then ATTEMPTS keys of its own. Thread t uses socket
``(OFFSET + t) % len(SOCKETS)``. Prints one JSON object: every receipt (with the
key and socket), the refusals, and any other error.
"""

from __future__ import annotations

import json
import sys
import threading
from pathlib import Path

from tests.plugins.daemon import demand_header
from walletd.client import (
    BudgetExceededError,
    DaemonUnavailableError,
    RateLimitedError,
    WalletClient,
)
from walletd.domain.payment import PayReceipt

URL = "http://127.0.0.1:9/v1/chat"
RETRIES = 3


def _pay(wallet: WalletClient, key: str, header: str) -> PayReceipt:
    """Pay once; an unavailable daemon is retried under the same key, as the client contract says."""
    for attempt in range(RETRIES):
        try:
            return wallet.pay(key, "POST", URL, payment_required=header)
        except DaemonUnavailableError:
            if attempt == RETRIES - 1:
                raise
    raise AssertionError("unreachable")


def main() -> None:
    sockets_arg, token_file, threads, attempts, prefix, shared, offset = sys.argv[1:8]
    sockets = sockets_arg.split(",")
    header = demand_header()
    lock = threading.Lock()
    out: dict[str, list[object]] = {"receipts": [], "refused": [], "errors": []}
    start = threading.Barrier(int(threads))

    def run(t: int) -> None:
        socket = sockets[(int(offset) + t) % len(sockets)]
        keys = [f"shared-{j}" for j in range(int(shared))]
        keys += [f"{prefix}-{t}-{i}" for i in range(int(attempts))]
        with WalletClient(socket=socket, token_file=Path(token_file), timeout=120) as wallet:
            start.wait()
            for key in keys:
                try:
                    r = _pay(wallet, key, header)
                except (BudgetExceededError, RateLimitedError) as exc:
                    with lock:
                        out["refused"].append({"key": key, "socket": socket, "reason": exc.reason})
                    continue
                except Exception as exc:
                    with lock:
                        out["errors"].append(f"{key}: {type(exc).__name__}: {exc}")
                    continue
                with lock:
                    out["receipts"].append(
                        {"key": key, "socket": socket, "id": r.payment_id, "amount": r.amount,
                         "header": r.header_value, "reused": r.reused}
                    )  # fmt: skip

    workers = [threading.Thread(target=run, args=(t,)) for t in range(int(threads))]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    print(json.dumps(out))


if __name__ == "__main__":
    main()
