"""A caller process for the race tests: N threads hammer Pay with fresh keys.

Run as ``python -m tests.e2e.race_worker SOCKET TOKEN_FILE THREADS ATTEMPTS PREFIX [SCHEME]``
(SCHEME: ``eip3009`` by default, ``permit2`` or ``upto``); prints one JSON object: the
receipts it got and how many refusals.
"""

from __future__ import annotations

import json
import sys
import threading
from pathlib import Path
from typing import Any

from tests.plugins.daemon import demand_header
from walletd.client import BudgetExceededError, WalletClient

SCHEME_DEMANDS: dict[str, dict[str, Any]] = {
    "eip3009": {},
    "permit2": {"extra": {"name": "USD Coin", "version": "2", "assetTransferMethod": "permit2"}},
    "upto": {
        "scheme": "upto",
        "extra": {"name": "USD Coin", "version": "2", "facilitatorAddress": "0x" + "fa" * 20},
    },
}
"""The same $0.003 demand paid as EIP-3009 exact, Permit2 exact, or upto (a $0.003 maximum)."""


def main() -> None:
    socket, token_file, threads, attempts, prefix = sys.argv[1:6]
    header = demand_header(**SCHEME_DEMANDS[sys.argv[6] if len(sys.argv) > 6 else "eip3009"])
    lock = threading.Lock()
    accepted: list[dict[str, object]] = []
    refused = [0]
    start = threading.Barrier(int(threads))

    def run(t: int) -> None:
        with WalletClient(socket=socket, token_file=Path(token_file), timeout=120) as wallet:
            start.wait()
            for i in range(int(attempts)):
                try:
                    r = wallet.pay(f"{prefix}-{t}-{i}", "POST", "http://127.0.0.1:9/v1/chat",
                                   payment_required=header)  # fmt: skip
                except BudgetExceededError:
                    with lock:
                        refused[0] += 1
                    continue
                with lock:
                    accepted.append({"id": r.payment_id, "amount": r.amount,
                                     "header": r.header_value})  # fmt: skip

    workers = [threading.Thread(target=run, args=(t,)) for t in range(int(threads))]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    print(json.dumps({"accepted": accepted, "refused": refused[0]}))


if __name__ == "__main__":
    main()
