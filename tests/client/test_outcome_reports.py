"""Outcome reports leave the paid request's path: sent in the background, in order, retried.

A paid request returns as soon as its answer is read; the ReportOutcome that
records the answer follows from a reporter (a thread for the blocking clients,
a task for the asyncio ones). While the daemon is unreachable the head report
is retried and none overtakes it; closing the payer sends what is queued. A
refusal is still reported at once (PaidAnswerLostError depends on its answer,
tests/client/test_answer_lost.py), after the reports queued before it.
"""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import httpx

from tests.client.test_auth_flow import BASE, SETTLED, AsyncFakeWallet, FakeWallet, Server
from walletd.client import WalletdAuth, async_http_client, http_client
from walletd.errors import DaemonUnavailableError


class SlowWallet(FakeWallet):
    """Reports block until ``gate`` is set; the first ``down`` reports find the daemon away."""

    def __init__(self, down: int = 0) -> None:
        super().__init__()
        self.gate = threading.Event()
        self.down = down
        self.attempts = 0

    def report_outcome(self, payment_id: str, http_status: int, payment_response: str = "") -> str:
        self.gate.wait(10)
        self.attempts += 1
        if self.attempts <= self.down:
            raise DaemonUnavailableError("restarting")
        return super().report_outcome(payment_id, http_status, payment_response)  # type: ignore[no-untyped-call,no-any-return]


class AsyncSlowWallet(AsyncFakeWallet):
    def __init__(self) -> None:
        super().__init__()
        self.gate = asyncio.Event()

    async def report_outcome(self, *args: Any, **kwargs: Any) -> str:
        await asyncio.wait_for(self.gate.wait(), 10)
        return FakeWallet.report_outcome(self, *args, **kwargs)  # type: ignore[no-untyped-call,no-any-return]


def _http(server: Server, wallet: FakeWallet) -> tuple[httpx.Client, WalletdAuth]:
    auth = WalletdAuth(base_url=BASE, wallet=wallet)  # type: ignore[arg-type]
    return http_client(auth=auth, transport=httpx.MockTransport(server)), auth


def test_a_paid_request_returns_before_its_outcome_is_reported() -> None:
    server, wallet = Server(), SlowWallet()
    http, auth = _http(server, wallet)
    with http:
        t0 = time.monotonic()
        response = http.post(BASE + "/v1/chat")
        returned_in = time.monotonic() - t0
        assert response.status_code == 200 and wallet.reports == []
        wallet.gate.set()
        auth.close()
    assert returned_in < 5  # the report was blocked for 10 s
    key = wallet.pays[0]["key"]
    assert wallet.reports == [(f"pay_{key}", 200, SETTLED)]


def test_reports_wait_out_an_unreachable_daemon_and_arrive_in_order() -> None:
    server, wallet = Server(), SlowWallet(down=3)
    wallet.gate.set()
    http, auth = _http(server, wallet)
    with http:
        for _ in range(3):
            assert http.post(BASE + "/v1/chat").status_code == 200
        assert auth.flush_reports(timeout=10)
    assert [r[0] for r in wallet.reports] == [f"pay_{p['key']}" for p in wallet.pays]
    assert wallet.attempts == 3 + 3


def test_a_refusal_is_reported_at_once_after_the_queued_reports() -> None:
    server, wallet = Server(), SlowWallet(down=2)
    wallet.gate.set()
    http, auth = _http(server, wallet)
    with http:
        assert http.post(BASE + "/v1/chat").status_code == 200
        server.paid_status = 402
        assert http.post(BASE + "/v1/chat").status_code == 402
        assert [r[1] for r in wallet.reports] == [200, 402]  # before the request returned
        auth.close()


def test_the_async_flow_returns_before_its_outcome_is_reported() -> None:
    server, wallet = Server(), AsyncSlowWallet()

    async def run() -> float:
        auth = WalletdAuth(base_url=BASE, async_wallet=wallet)  # type: ignore[arg-type]
        async with async_http_client(auth=auth, transport=httpx.MockTransport(server)) as http:
            t0 = time.monotonic()
            assert (await http.post(BASE + "/v1/chat")).status_code == 200
            returned_in = time.monotonic() - t0
            assert wallet.reports == []
            wallet.gate.set()
            await auth.aclose()
        return returned_in

    assert asyncio.run(run()) < 5
    assert [r[1] for r in wallet.reports] == [200]


class TimedWallet(FakeWallet):
    """Pays take 50 ms; every Pay's start and end and every report go to one log."""

    def __init__(self) -> None:
        super().__init__()
        self.log: list[str] = []

    def pay(self, *args: Any, **kwargs: Any) -> Any:
        self.log.append("pay")
        time.sleep(0.05)
        receipt = super().pay(*args, **kwargs)  # type: ignore[no-untyped-call]
        self.log.append("paid")
        return receipt

    def report_outcome(self, *args: Any, **kwargs: Any) -> str:
        self.log.append("report")
        return super().report_outcome(*args, **kwargs)  # type: ignore[no-untyped-call,no-any-return]


def test_a_report_waits_for_the_payers_next_pay_instead_of_competing_with_it() -> None:
    server, wallet = Server(), TimedWallet()
    http, auth = _http(server, wallet)
    with http:
        for _ in range(2):
            assert http.post(BASE + "/v1/chat").status_code == 200
        auth.close()
    assert wallet.log == ["pay", "paid", "pay", "paid", "report", "report"]
