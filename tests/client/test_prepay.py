"""Pre-pay: after a route's first 402, pay up front and save the round trip."""

from __future__ import annotations

from tests.client.conftest import CHAT_MODEL, CHAT_PRICE, Wallet
from tests.plugins.daemon import demand_header
from walletd.client import ClusterClient, Demand, RetryPolicy
from walletd.devnet.api import CHAT_ROUTE

REQUESTS = 3


def _chat_n_times(wallet: Wallet, *, prepay: bool) -> ClusterClient:
    api = ClusterClient(
        wallet.api.base_url, walletd=wallet.settings(prepay=prepay),
        retry=RetryPolicy(max_retries=0),
    )  # fmt: skip
    for i in range(REQUESTS):
        assert api.chat(CHAT_MODEL, f"question {i}").text
    return api


def test_prepay_saves_the_402_round_trip_counted_at_the_server(wallet: Wallet) -> None:
    _chat_n_times(wallet, prepay=False).close()
    plain = wallet.api.stats.route(CHAT_ROUTE)
    wallet.api.stats.reset()
    _chat_n_times(wallet, prepay=True).close()
    prepaid = wallet.api.stats.route(CHAT_ROUTE)

    assert (plain.requests, plain.payment_required) == (2 * REQUESTS, REQUESTS)
    assert (prepaid.requests, prepaid.payment_required) == (REQUESTS + 1, 1)
    assert prepaid.paid == REQUESTS
    rows = wallet.new_payments()
    assert [r.amount for r in rows] == [CHAT_PRICE] * (2 * REQUESTS)


def test_refused_prepayment_is_reported_and_falls_back_once(wallet: Wallet) -> None:
    url = wallet.api.url("/v1/chat/completions")
    with ClusterClient(wallet.api.base_url, walletd=wallet.settings(prepay=True)) as api:
        assert api.auth is not None
        request = api._http.build_request("POST", url)
        stale = demand_header("2999", url=url, payTo=wallet.api.pay_to)  # terms that changed
        api.auth.remember_demand(request, Demand(payment_required=stale))
        before = wallet.balances()
        result = api.chat(CHAT_MODEL, "after a price change")
    assert result.payment is not None and not result.payment.prepaid
    assert result.payment.idempotency_key.endswith(".fallback")
    refused, paid = wallet.new_payments()
    assert (refused.amount, refused.status) == (2999, "rejected")
    assert (paid.amount, paid.status) == (CHAT_PRICE, "settlement_pending")
    assert before[0] - wallet.balances()[0] == CHAT_PRICE
    route = wallet.api.stats.route(CHAT_ROUTE)
    assert (route.requests, route.payment_required, route.paid) == (2, 1, 1)
