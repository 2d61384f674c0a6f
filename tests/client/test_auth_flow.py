"""WalletdAuth flow details, on httpx.MockTransport with a fake wallet (no chain, no daemon)."""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import json
from typing import Any

import httpx
import openai
import pytest

from tests.plugins.daemon import demand_header
from walletd.client import (
    ClusterClient,
    ClusterError,
    PaymentRejectedError,
    PayReceipt,
    RetryPolicy,
    WalletdAuth,
    WalletdPaymentError,
    async_http_client,
    http_client,
    openai_http_client,
    payment_attempt,
)
from walletd.client._api_errors import CLUSTER_ERRORS
from walletd.errors import BudgetExceededError, DaemonUnavailableError, WalletdError

BASE = "http://api.test"
OTHER = "http://evil.test"
SETTLED = base64.b64encode(json.dumps({"success": True, "transaction": "0xabc"}).encode()).decode()


class FakeWallet:
    """Pay returns a header derived from the key; remembers every call."""

    def __init__(self, refuse: WalletdError | None = None, report_fails: bool = False) -> None:
        self.pays: list[dict[str, Any]] = []
        self.reports: list[tuple[str, int, str]] = []
        self.refuse = refuse
        self.report_fails = report_fails

    def pay(self, idempotency_key, method, url, *, payment_required="", body=b"", labels=None):
        self.pays.append({"key": idempotency_key, "url": url, "pr": payment_required, "body": body})
        if self.refuse is not None:
            raise self.refuse
        name = "PAYMENT-SIGNATURE" if payment_required else "X-PAYMENT"
        reused = any(p["key"] == idempotency_key for p in self.pays[:-1])
        return PayReceipt(f"pay_{idempotency_key}", name, f"sig-{idempotency_key}", 3000,
                          "0xpayee", "eip155:8453", 0, reused)  # fmt: skip

    def report_outcome(self, payment_id, http_status, payment_response=""):
        if self.report_fails:
            raise DaemonUnavailableError("down")
        self.reports.append((payment_id, http_status, payment_response))
        return "signed"


class AsyncFakeWallet(FakeWallet):
    async def pay(self, *args, **kwargs):
        return FakeWallet.pay(self, *args, **kwargs)  # type: ignore[no-untyped-call]

    async def report_outcome(self, *args, **kwargs):
        return FakeWallet.report_outcome(self, *args, **kwargs)  # type: ignore[no-untyped-call]


class Server:
    """A paid endpoint: 402 without a payment header, 200 (+ PAYMENT-RESPONSE) with one."""

    def __init__(self, paid_status: int = 200, v1: bool = False, redirect_to: str = "") -> None:
        self.seen: list[httpx.Request] = []
        self.paid_status = paid_status
        self.v1 = v1
        self.redirect_to = redirect_to

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.seen.append(request)
        if request.url.host != "api.test":
            return httpx.Response(200, json={"other": True})
        paid = "payment-signature" in request.headers or "x-payment" in request.headers
        if not paid:
            if self.v1:
                body = {"x402Version": 1, "error": "pay", "accepts": [{"scheme": "exact"}]}
                return httpx.Response(402, json=body)
            return httpx.Response(402, headers={"PAYMENT-REQUIRED": demand_header()}, json={})
        if self.redirect_to:
            return httpx.Response(307, headers={"Location": self.redirect_to})
        return httpx.Response(self.paid_status, headers={"PAYMENT-RESPONSE": SETTLED}, json={})


def _client(server: Server, wallet: FakeWallet, **auth_kwargs) -> httpx.Client:
    auth = WalletdAuth(base_url=BASE, wallet=wallet, **auth_kwargs)  # type: ignore[arg-type]
    return http_client(auth=auth, transport=httpx.MockTransport(server))


def _auth_of(http: httpx.Client) -> WalletdAuth:
    auth = http.auth
    assert isinstance(auth, WalletdAuth)
    return auth


def test_pays_a_402_once_and_reports_the_settlement() -> None:
    server, wallet = Server(), FakeWallet()
    with _client(server, wallet) as http:
        response = http.post(BASE + "/v1/chat", json={})
        assert _auth_of(http).flush_reports()
    assert response.status_code == 200
    assert len(wallet.pays) == 1
    key = wallet.pays[0]["key"]
    assert key.startswith("req_") and len(key) == 36
    assert [r.headers["Idempotency-Key"] for r in server.seen] == [key, key]
    assert server.seen[1].headers["PAYMENT-SIGNATURE"] == f"sig-{key}"
    assert wallet.reports == [(f"pay_{key}", 200, SETTLED)]
    attempt = payment_attempt(response)
    assert attempt is not None and attempt.settlement["transaction"] == "0xabc"


def test_the_callers_idempotency_key_is_used() -> None:
    server, wallet = Server(), FakeWallet()
    with _client(server, wallet) as http:
        http.post(BASE + "/v1/chat", headers={"Idempotency-Key": "mine-123"})
    assert wallet.pays[0]["key"] == "mine-123"


def test_a_402_after_paying_is_returned_not_paid_again() -> None:
    server, wallet = Server(paid_status=402), FakeWallet()
    with _client(server, wallet) as http:
        response = http.post(BASE + "/v1/chat")
    assert response.status_code == 402
    assert len(wallet.pays) == 1
    assert wallet.reports[0][1] == 402


def test_placeholder_authorization_is_stripped() -> None:
    server, wallet = Server(), FakeWallet()
    with _client(server, wallet) as http:
        http.post(BASE + "/v1/chat", headers={"Authorization": "Bearer x402"})
    assert all("authorization" not in r.headers for r in server.seen)


def test_other_origins_are_never_paid() -> None:
    server, wallet = Server(), FakeWallet()
    auth = WalletdAuth(base_url="http://elsewhere.test", wallet=wallet)  # type: ignore[arg-type]
    with http_client(auth=auth, transport=httpx.MockTransport(server)) as http:
        response = http.post(BASE + "/v1/chat")
    assert response.status_code == 402
    assert wallet.pays == []


def test_v1_body_demand_is_paid_with_x_payment() -> None:
    server, wallet = Server(v1=True), FakeWallet()
    with _client(server, wallet) as http:
        assert http.post(BASE + "/v1/chat").status_code == 200
    assert json.loads(wallet.pays[0]["body"])["x402Version"] == 1
    assert "X-PAYMENT" in server.seen[1].headers


def test_cross_origin_redirect_does_not_carry_the_payment_header() -> None:
    server, wallet = Server(redirect_to=OTHER + "/steal"), FakeWallet()
    with _client(server, wallet) as http:
        response = http.post(BASE + "/v1/chat")
        # The helper's client does not follow; the ready-made next request lost the header.
        assert response.status_code == 307
        assert response.next_request is not None
        assert "payment-signature" not in response.next_request.headers
        assert [r.url.host for r in server.seen] == ["api.test", "api.test"]
        # Even a client told to follow redirects drops it on the hop to the other host.
        http.follow_redirects = True
        http.post(BASE + "/v1/chat")
    to_other = [r for r in server.seen if r.url.host == "evil.test"]
    assert len(to_other) == 1
    assert "payment-signature" not in to_other[0].headers
    assert len(wallet.pays) == 2


def test_paid_streaming_response_is_not_read_by_the_flow() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if "payment-signature" not in request.headers:
            return httpx.Response(402, headers={"PAYMENT-REQUIRED": demand_header()}, json={})
        return httpx.Response(200, content=iter([b"data: 1\n\n", b"data: [DONE]\n\n"]))

    wallet = FakeWallet()
    auth = WalletdAuth(base_url=BASE, wallet=wallet)  # type: ignore[arg-type]
    with http_client(auth=auth, transport=httpx.MockTransport(handler)) as http:
        response = http.send(http.build_request("POST", BASE + "/v1/chat"), stream=True)
        assert not response.is_stream_consumed
        lines = list(response.iter_lines())
        assert lines[0] == "data: 1"
        response.close()


def test_a_failed_report_never_reaches_the_app() -> None:
    server, wallet = Server(), FakeWallet(report_fails=True)
    with _client(server, wallet) as http:
        assert http.post(BASE + "/v1/chat").status_code == 200
        _auth_of(http)._reports.close(timeout=0.1)  # the daemon stays "down": do not wait


def test_refusal_is_a_walletd_error_not_an_httpx_request_error() -> None:
    server, wallet = Server(), FakeWallet(refuse=BudgetExceededError("over", {"limit": "1"}))
    with _client(server, wallet) as http, pytest.raises(BudgetExceededError) as info:
        http.post(BASE + "/v1/chat")
    assert not isinstance(info.value, httpx.RequestError)


def test_under_openai_a_refusal_is_an_openai_error_the_sdk_does_not_retry() -> None:
    server, wallet = Server(), FakeWallet(refuse=BudgetExceededError("over"))
    http = openai_http_client(BASE, wallet=wallet, transport=httpx.MockTransport(server))  # type: ignore[arg-type]
    client = openai.OpenAI(base_url=BASE + "/v1", api_key="x402", http_client=http)
    with client, pytest.raises(WalletdPaymentError) as info:
        client.chat.completions.create(model="m", messages=[{"role": "user", "content": "x"}])
    assert isinstance(info.value.error, BudgetExceededError)
    assert len(wallet.pays) == 1  # not retried


def test_paid_failure_under_a_generated_key_is_marked_not_to_retry() -> None:
    server, wallet = Server(paid_status=503), FakeWallet()
    with _client(server, wallet) as http:
        generated = http.post(BASE + "/v1/chat")
        keyed = http.post(BASE + "/v1/chat", headers={"Idempotency-Key": "caller-key-1"})
    assert generated.headers["x-should-retry"] == "false"
    assert "x-should-retry" not in keyed.headers


def test_async_flow_pays_once() -> None:
    server, wallet = Server(), AsyncFakeWallet()

    async def run() -> int:
        auth = WalletdAuth(base_url=BASE, async_wallet=wallet)  # type: ignore[arg-type]
        async with async_http_client(auth=auth, transport=httpx.MockTransport(server)) as http:
            status = (await http.post(BASE + "/v1/chat")).status_code
            assert await auth.aflush_reports()
            return status

    assert asyncio.run(run()) == 200
    assert len(wallet.pays) == 1 and len(wallet.reports) == 1


def test_cluster_client_retries_under_one_key_and_raises_payment_rejected() -> None:
    server, wallet = Server(paid_status=503), FakeWallet()
    api = ClusterClient(BASE, wallet=wallet, retry=RetryPolicy(max_retries=1, backoff=0.01),  # type: ignore[arg-type]
                        transport=httpx.MockTransport(server))  # fmt: skip
    with api, pytest.raises(ClusterError) as info:
        api.chat("m", "hi")
    assert info.value.status == 503
    keys = {p["key"] for p in wallet.pays}
    assert len(keys) == 1 and len(wallet.pays) == 2  # the retry asked walletd again: same key


def test_402_after_payment_is_payment_rejected_with_the_reason() -> None:
    refused = base64.b64encode(json.dumps({"success": False, "errorReason": "bad_sig"}).encode())

    def handler(request: httpx.Request) -> httpx.Response:
        if "payment-signature" in request.headers:
            return httpx.Response(402, headers={"PAYMENT-RESPONSE": refused.decode()}, json={})
        return httpx.Response(402, headers={"PAYMENT-REQUIRED": demand_header()}, json={})

    wallet = FakeWallet()
    api = ClusterClient(BASE, wallet=wallet, transport=httpx.MockTransport(handler))  # type: ignore[arg-type]
    with api, pytest.raises(PaymentRejectedError) as info:
        api.chat("m", "hi")
    assert info.value.payment_reason == "bad_sig"
    assert info.value.payment_id == wallet.reports[0][0]


def test_retry_after_is_honoured_and_capped() -> None:
    policy = RetryPolicy(max_retry_after=5)
    assert policy.delay(0, httpx.Response(429, headers={"Retry-After": "2"})) == 2
    assert policy.delay(0, httpx.Response(429, headers={"Retry-After": "9999"})) == 5
    assert 0 < policy.delay(3, httpx.Response(503)) <= 4.0


def test_no_api_error_is_an_httpx_error() -> None:
    for cls in CLUSTER_ERRORS:
        assert issubclass(cls, WalletdError)
        assert not issubclass(cls, httpx.HTTPError)


def test_a_custom_proof_header_is_dropped_on_a_cross_host_redirect() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if request.url.host == "evil.test":
            return httpx.Response(200)
        if "x-payment-tx" in request.headers:
            return httpx.Response(307, headers={"Location": "http://evil.test/collect"})
        return httpx.Response(402, headers={"PAYMENT-REQUIRED": demand_header()}, json={})

    class ProofWallet(FakeWallet):
        def pay(self, *args, **kwargs):
            receipt = super().pay(*args, **kwargs)  # type: ignore[no-untyped-call]
            return dataclasses.replace(receipt, header_name="X-Payment-Tx", header_value="0xabc")

    auth = WalletdAuth(base_url=BASE, wallet=ProofWallet())  # type: ignore[arg-type]
    client = http_client(auth=auth, transport=httpx.MockTransport(handler))
    client.follow_redirects = True
    with client as http:
        http.post(BASE + "/v1/chat", json={})
    assert [r.url.host for r in seen][-1] == "evil.test"
    assert "x-payment-tx" not in seen[-1].headers
