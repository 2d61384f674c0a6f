"""End to end on anvil: what the report calls settled is exactly what left the wallet on chain.

A real daemon pays the local paid API (which settles through its facilitator
on anvil), its reconciler follows every payment to an end, and the operator's
spend-report, read from the database while the daemon runs, must equal the
sum of the USDC ``Transfer`` logs from the wallet.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import httpx
import pytest

from tests.plugins.chain import Chain
from tests.plugins.daemon import Daemon, WalletHome, demand_header
from tests.plugins.devnet import DevnetApi
from tests.reconcile.conftest import CHAT, MARGIN_S
from walletd.client import WalletClient
from walletd.domain.payment import PaymentStatus as S
from walletd.errors import PolicyDeniedError

OPEN = {S.SIGNED, S.SETTLEMENT_PENDING, S.REJECTED}


@pytest.fixture
def home(chain: Chain, wallet_home: WalletHome) -> WalletHome:
    (wallet_home.data_dir / "walletd.toml").write_text(
        f'[chain]\nrpc_url = "{chain.rpc_url}"\n'
        f"reconcile_interval_seconds = 0.2\nexpiry_margin_seconds = {MARGIN_S}\n"
    )
    chain.mint(wallet_home.address, 1_000_000)
    wallet_home.add_client("svc")
    wallet_home.admin("budget", "set", "svc", "--daily", "1")
    return wallet_home


@pytest.fixture
def http() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=30) as client:
        yield client


def _transfers_from(chain: Chain, address: str) -> list[int]:
    logs = chain.usdc.events.Transfer().get_logs(from_block=0, argument_filters={"from": address})
    return [int(log["args"]["value"]) for log in logs]


def test_report_totals_equal_the_on_chain_transfers_from_the_wallet(
    chain: Chain, devnet_api: DevnetApi, home: WalletHome, http: httpx.Client
) -> None:
    url = devnet_api.url("/v1/chat/completions")
    daemon = Daemon(home)
    try:
        with WalletClient(socket=home.socket, token_file=home.root / "svc.token") as wallet:
            receipts = []
            for key in ("reported", "unreported", "never-sent"):
                demand = http.post(url, json=CHAT).headers["payment-required"]
                receipts.append(wallet.pay(key, "POST", url, payment_required=demand,
                                           labels={"model": str(CHAT["model"])}))  # fmt: skip
            responses = []
            for receipt in receipts[:2]:
                paid = http.post(
                    url, json=CHAT, headers={receipt.header_name: receipt.header_value}
                )
                assert paid.status_code == 200, paid.text
                responses.append(paid.headers["payment-response"])
            wallet.report_outcome(receipts[0].payment_id, 200, responses[0])
            with pytest.raises(PolicyDeniedError):
                wallet.pay(
                    "refused", "POST", url, payment_required=demand_header(scheme="exact-v9")
                )
            latest = max(r.valid_before for r in receipts)
            chain.increase_time(latest + MARGIN_S - chain.timestamp())
            deadline = time.monotonic() + 90
            while {p.status for p in wallet.list_payments()} & OPEN:
                assert time.monotonic() < deadline, wallet.list_payments()
                time.sleep(0.2)
            statuses = {p.payment_id: p.status for p in wallet.list_payments()}
        assert [statuses[r.payment_id] for r in receipts] == [S.SETTLED, S.SETTLED, S.EXPIRED]
        proc = home.admin("spend-report", "--format", "json")  # the daemon is still running
        assert proc.returncode == 0, proc.stderr
        report = json.loads(proc.stdout)
    finally:
        assert daemon.stop() == 0, daemon.logs()
    transfers = _transfers_from(chain, home.address)
    assert len(transfers) == 2
    totals = report["totals"]
    assert totals["statuses"]["settled"] == {
        "count": len(transfers), "amount": sum(transfers), "usdc": f"0.{sum(transfers):06d}",
    }  # fmt: skip
    assert totals["chain"]["confirmed"]["amount"] == sum(transfers)
    assert totals["statuses"]["expired"]["count"] == 1
    assert totals["statuses"]["refused"]["count"] == 1
    assert totals["statuses"]["pending"]["count"] == 0
    assert report["audit"]["ok"] is True
    assert chain.usdc_balance(home.address) == 1_000_000 - sum(transfers)
