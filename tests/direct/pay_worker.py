"""A caller process for the daemon tests: N threads Pay one direct demand with fresh keys.

Run as ``python -m tests.direct.pay_worker SOCKET TOKEN_FILE THREADS PREFIX HEADER``;
prints one JSON object: the transaction hashes it got and how many refusals (by reason).
"""

from __future__ import annotations

import json
import sys
import threading
from pathlib import Path

from walletd.client import WalletClient
from walletd.errors import WalletdError


def main() -> None:
    socket, token_file, threads, prefix, header = sys.argv[1:6]
    lock = threading.Lock()
    paid: list[str] = []
    refused: dict[str, int] = {}
    start = threading.Barrier(int(threads))

    def run(t: int) -> None:
        with WalletClient(socket=socket, token_file=Path(token_file), timeout=120) as wallet:
            start.wait()
            try:
                r = wallet.pay(f"{prefix}-{t}", "POST", "http://127.0.0.1:9/v1/chat",
                               payment_required=header)  # fmt: skip
            except WalletdError as err:
                with lock:
                    refused[err.reason] = refused.get(err.reason, 0) + 1
                return
            with lock:
                paid.append(r.header_value)

    workers = [threading.Thread(target=run, args=(t,)) for t in range(int(threads))]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    print(json.dumps({"paid": paid, "refused": refused}))


if __name__ == "__main__":
    main()
