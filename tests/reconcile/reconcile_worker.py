"""One reconciler replica for the race test: its own process, engines and (fake) chain.

Run as ``python -m tests.reconcile.reconcile_worker DB_URL READY_DIR WORKERS INDEX``.
The fake chain is far past every validBefore and judges each nonce by a fixed
rule (``outcome``), so every replica reaches the same decisions. On its first
chain read after loading the open payments, each replica waits until all
WORKERS replicas have loaded them too: every replica then tries to move every
payment, the worst case for the compare-and-set. Passes repeat until one finds
nothing open. Prints one JSON object: the moves, the passes and any error.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from walletd.db.engine import make_engines
from walletd.db.ledger import Store
from walletd.domain.networks import BASE, Network
from walletd.service.ports import ChainReceipt
from walletd.service.reconcile import Reconciler

FAR_FUTURE_S = 4_000_000_000
BARRIER_TIMEOUT_S = 120.0


def outcome(nonce: str) -> str:
    """What the fake chain says happened to an authorization: expired, settled or cancelled."""
    return ("expired", "settled", "cancelled")[int(nonce, 16) % 3]


class RaceChain:
    """A ChainReader whose answers follow ``outcome``; waits at the barrier on first use."""

    def __init__(self, ready_dir: Path, workers: int, index: int) -> None:
        self._ready_dir, self._workers, self._index = ready_dir, workers, index
        self._waited = False

    @property
    def network(self) -> Network:
        return BASE

    def _barrier(self) -> None:
        if self._waited:
            return
        self._waited = True
        (self._ready_dir / f"{self._index}.ready").touch()
        deadline = time.monotonic() + BARRIER_TIMEOUT_S
        while len(list(self._ready_dir.glob("*.ready"))) < self._workers:
            if time.monotonic() > deadline:
                raise RuntimeError("the other replicas never arrived")
            time.sleep(0.01)

    def block_timestamp(self) -> int:
        return FAR_FUTURE_S

    def receipt(self, tx_hash: str) -> ChainReceipt | None:
        return None

    def authorization_state(self, wallet: str, nonce: str, token: str = "") -> bool:
        self._barrier()
        return outcome(nonce) != "expired"

    def permit2_nonce_used(self, wallet: str, nonce: str) -> bool:
        return False

    def find_authorization_used(
        self, wallet: str, nonce: str, not_before: int, token: str = ""
    ) -> str | None:
        return "0x" + nonce[2:][::-1] if outcome(nonce) == "settled" else None

    def find_authorization_canceled(
        self, wallet: str, nonce: str, not_before: int, token: str = ""
    ) -> str | None:
        return "0x" + nonce[2:][::-1] if outcome(nonce) == "cancelled" else None

    def usdc_balance(self, address: str) -> int:
        return 0

    def eth_balance(self, address: str) -> int:
        return 0

    def transaction_count(self, address: str) -> int:
        return 0


def main() -> None:
    db_url, ready_dir, workers, index = sys.argv[1:5]
    engines = make_engines(db_url)
    chain = RaceChain(Path(ready_dir), int(workers), int(index))
    moved: dict[str, int] = {}
    out: dict[str, object] = {"moved": moved, "passes": 0, "errors": []}
    try:
        for _ in range(5):
            report = Reconciler(Store(engines), chain, margin_s=30).run_once()
            out["passes"] = int(str(out["passes"])) + 1
            for target, count in report.moved.items():
                moved[target] = moved.get(target, 0) + count
            if report.checked == 0:
                break
    except Exception as exc:  # reported to the test, which fails on any
        out["errors"] = [f"{type(exc).__name__}: {exc}"]
    finally:
        engines.dispose()
    print(json.dumps(out))


if __name__ == "__main__":
    main()
