"""The local paid API behaves like Cluster Protocol: x402 v2 demands, real settlement, errors."""

from __future__ import annotations

import base64
import json
import struct
import zlib
from typing import Any

import httpx
import pytest
from eth_account.signers.local import LocalAccount
from x402.http import x402HTTPClientSync

from tests.plugins.chain import Chain
from tests.plugins.devnet import DevnetApi, paid_request, payment_client_sync
from walletd.devnet import chain as devchain
from walletd.devnet.api import (
    CHAT_ROUTE,
    IMAGES_ROUTE,
    MODELS,
    PNG_EDGE_PIXELS,
    PNG_SIGNATURE,
    canned_reply,
    count_tokens,
)
from walletd.devnet.servers import Devnet

BASE_USDC = "0x833589fCD6eDb6E08f4c7C32D4f71b54bdA02913"
CHAT_PATH = "/v1/chat/completions"
IMAGES_PATH = "/v1/images/generations"
CHAT_BODY: dict[str, Any] = {
    "model": "llama-3.3-70b",
    "messages": [{"role": "user", "content": "Say something about local devnets"}],
}
IMAGE_BODY: dict[str, Any] = {"model": "flux-dev", "prompt": "a lighthouse", "n": 2}
PRICED = [
    pytest.param(CHAT_PATH, CHAT_BODY, 3000, id="chat"),
    pytest.param(IMAGES_PATH, IMAGE_BODY, 20000, id="images"),
]


def decode_header(value: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(base64.b64decode(value))
    return data


def assert_error(response: httpx.Response, status: int, code: str | None = None) -> None:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "code"}
    if code is not None:
        assert error["code"] == code


def balances(api: DevnetApi, chain: Chain, payer: LocalAccount) -> tuple[int, int]:
    return chain.usdc_balance(payer.address), chain.usdc_balance(api.pay_to)


def sse_events(text: str) -> list[str]:
    return [line.removeprefix("data: ") for line in text.split("\n\n") if line]


def png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == PNG_SIGNATURE
    length, tag = struct.unpack(">I4s", data[8:16])
    assert (length, tag) == (13, b"IHDR")
    assert struct.unpack(">I", data[29:33])[0] == zlib.crc32(data[12:29])
    width, height = struct.unpack(">II", data[16:24])
    return width, height


# ------------------------------------------------------------------ the 402 demand


@pytest.mark.parametrize(("path", "body", "amount"), PRICED)
def test_unpaid_request_gets_402_with_v2_payment_required(devnet_api, path, body, amount):
    response = httpx.post(devnet_api.url(path), json=body)

    assert_error(response, 402, "payment_required")
    demand = decode_header(response.headers["PAYMENT-REQUIRED"])
    assert demand["x402Version"] == 2
    assert demand["resource"]["url"] == devnet_api.url(path)
    [accept] = demand["accepts"]
    assert accept["scheme"] == "exact"
    assert accept["network"] == "eip155:8453"
    assert accept["asset"] == BASE_USDC
    assert accept["amount"] == str(amount)
    assert accept["payTo"] == devnet_api.pay_to
    assert accept["extra"] == {"name": "USD Coin", "version": "2"}
    route = devnet_api.stats.route(f"POST {path}")
    assert (route.requests, route.without_payment_header, route.payment_required) == (1, 1, 1)


def test_facilitator_supports_exact_on_base(devnet_api):
    supported = httpx.get(devnet_api.facilitator_url + "/supported").json()

    assert {"x402Version": 2, "scheme": "exact", "network": "eip155:8453"} in supported["kinds"]
    assert devnet_api.facilitator_address in supported["signers"]["eip155:*"]


# ------------------------------------------------------------------ paying


@pytest.mark.parametrize(("path", "body", "amount"), PRICED)
def test_paying_with_sdk_client_moves_exactly_the_price(
    devnet_api, chain, devnet_payer, path, body, amount
):
    before = balances(devnet_api, chain, devnet_payer)

    response = paid_request(devnet_payer, "POST", devnet_api.url(path), json=body)

    assert response.status_code == 200, response.text
    receipt = decode_header(response.headers["PAYMENT-RESPONSE"])
    assert receipt["success"] is True
    assert receipt["payer"] == devnet_payer.address
    assert receipt["network"] == "eip155:8453"
    payer_after, pay_to_after = balances(devnet_api, chain, devnet_payer)
    assert (before[0] - payer_after, pay_to_after - before[1]) == (amount, amount)
    assert devnet_api.stats.transactions == [receipt["transaction"]]
    route = devnet_api.stats.route(f"POST {path}")
    assert (route.paid, route.payment_required, route.with_payment_header) == (1, 1, 1)


def test_paid_stream_is_sse_ending_in_done(devnet_api, chain, devnet_payer):
    body = {**CHAT_BODY, "stream": True}

    response = paid_request(devnet_payer, "POST", devnet_api.url(CHAT_PATH), json=body)

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    assert decode_header(response.headers["PAYMENT-RESPONSE"])["success"] is True
    events = sse_events(response.text)
    assert events[-1] == "[DONE]"
    chunks = [json.loads(event) for event in events[:-1]]
    assert {chunk["object"] for chunk in chunks} == {"chat.completion.chunk"}


def test_stream_deltas_match_the_unstreamed_text_and_report_usage(devnet_api):
    url, headers = devnet_api.url(CHAT_PATH), devnet_api.key_headers()
    plain = httpx.post(url, json=CHAT_BODY, headers=headers).json()

    streamed = httpx.post(url, json={**CHAT_BODY, "stream": True}, headers=headers)

    chunks = [json.loads(event) for event in sse_events(streamed.text)[:-1]]
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"])
    assert text == plain["choices"][0]["message"]["content"]
    assert chunks[-2]["choices"][0]["finish_reason"] == plain["choices"][0]["finish_reason"]
    assert chunks[-1]["choices"] == []
    assert chunks[-1]["usage"] == plain["usage"]


def test_paid_request_with_bad_body_is_400_and_settles_nothing(devnet_api, chain, devnet_payer):
    before = balances(devnet_api, chain, devnet_payer)

    response = paid_request(devnet_payer, "POST", devnet_api.url(CHAT_PATH), json={"model": 1})

    assert_error(response, 400)
    assert "PAYMENT-RESPONSE" not in response.headers
    assert balances(devnet_api, chain, devnet_payer) == before
    assert devnet_api.stats.paid == 0


def test_replayed_payment_header_is_refused_and_moves_nothing(devnet_api, chain, devnet_payer):
    url = devnet_api.url(CHAT_PATH)
    demand = httpx.post(url, json=CHAT_BODY)
    http_client = x402HTTPClientSync(payment_client_sync(devnet_payer))
    required = http_client.get_payment_required_response(demand.headers.get)
    payload = http_client.create_payment_payload(required)
    payment_headers = http_client.encode_payment_signature_header(payload)
    first = httpx.post(url, json=CHAT_BODY, headers=payment_headers)
    assert first.status_code == 200
    after_first = balances(devnet_api, chain, devnet_payer)

    replay = httpx.post(url, json=CHAT_BODY, headers=payment_headers)

    assert_error(replay, 402, "payment_required")
    reason = decode_header(replay.headers["PAYMENT-REQUIRED"])["error"]
    assert reason == "invalid_exact_evm_nonce_already_used"
    assert balances(devnet_api, chain, devnet_payer) == after_first
    assert devnet_api.stats.paid == 1


def test_payments_still_settle_after_a_chain_revert(devnet_api, chain, devnet_payer):
    snap = chain.snapshot()
    first = paid_request(devnet_payer, "POST", devnet_api.url(CHAT_PATH), json=CHAT_BODY)
    assert first.status_code == 200
    chain.revert(snap)  # the facilitator's settle transaction is forgotten by the chain

    again = paid_request(devnet_payer, "POST", devnet_api.url(CHAT_PATH), json=CHAT_BODY)

    assert again.status_code == 200, again.text
    assert chain.usdc_balance(devnet_payer.address) == 1_000_000 - 3000


# ------------------------------------------------------------------ content


def test_chat_reply_honours_max_tokens_and_counts_words(devnet_api):
    body = {**CHAT_BODY, "max_tokens": 5}

    reply = httpx.post(devnet_api.url(CHAT_PATH), json=body, headers=devnet_api.key_headers())

    data = reply.json()
    content = data["choices"][0]["message"]["content"]
    assert count_tokens(content) == 5
    assert data["choices"][0]["finish_reason"] == "length"
    prompt_tokens = count_tokens(CHAT_BODY["messages"][0]["content"])
    assert data["usage"] == {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": 5,
        "total_tokens": prompt_tokens + 5,
    }


def test_canned_reply_is_deterministic_and_bounded():
    first = canned_reply("llama-3.3-70b", "hello world", None)

    assert first == canned_reply("llama-3.3-70b", "hello world", None)
    assert first != canned_reply("llama-3.3-70b", "goodbye world", None)
    assert 12 <= count_tokens(first.text) <= 24
    assert first.finish_reason == "stop"


def test_images_are_valid_small_pngs(devnet_api):
    url, headers = devnet_api.url(IMAGES_PATH), devnet_api.key_headers()
    body = {**IMAGE_BODY, "n": 3, "size": "512x512", "response_format": "b64_json"}

    data = httpx.post(url, json=body, headers=headers).json()["data"]

    images = [base64.b64decode(item["b64_json"]) for item in data]
    assert len(images) == 3
    assert len(set(images)) == 3
    assert {png_size(image) for image in images} == {(PNG_EDGE_PIXELS, PNG_EDGE_PIXELS)}
    assert images[-1].endswith(b"IEND\xaeB`\x82")
    again = httpx.post(url, json=body, headers=headers).json()["data"]
    assert [item["b64_json"] for item in again] == [item["b64_json"] for item in data]


def test_models_are_listed_free(devnet_api):
    response = httpx.get(devnet_api.url("/v1/models"))

    assert response.status_code == 200
    listing = response.json()
    assert listing["object"] == "list"
    assert {(m["id"], m["type"]) for m in listing["data"]} == {(m.id, m.type) for m in MODELS}
    assert {m["type"] for m in listing["data"]} == {"text", "image"}
    assert devnet_api.stats.payment_required == 0


# ------------------------------------------------------------------ errors


@pytest.mark.parametrize(("path", "model"), [(CHAT_PATH, "gpt-4o"), (IMAGES_PATH, "dall-e-3")])
def test_unknown_model_is_404_model_not_found(devnet_api, path, model):
    body = {**(CHAT_BODY if path == CHAT_PATH else IMAGE_BODY), "model": model}

    response = httpx.post(devnet_api.url(path), json=body, headers=devnet_api.key_headers())

    assert_error(response, 404, "model_not_found")


def test_image_model_for_chat_is_400(devnet_api):
    body = {**CHAT_BODY, "model": "flux-dev"}

    response = httpx.post(devnet_api.url(CHAT_PATH), json=body, headers=devnet_api.key_headers())

    assert_error(response, 400, "model_type_mismatch")


@pytest.mark.parametrize(
    ("body", "code"),
    [
        pytest.param({"model": "llama-3.3-70b"}, "invalid_messages", id="no-messages"),
        pytest.param({**CHAT_BODY, "messages": []}, "invalid_messages", id="empty-messages"),
        pytest.param(
            {**CHAT_BODY, "messages": [{"role": "robot", "content": "x"}]},
            "invalid_messages",
            id="bad-role",
        ),
        pytest.param({**CHAT_BODY, "max_tokens": 0}, "invalid_max_tokens", id="max-tokens-0"),
        pytest.param({**CHAT_BODY, "temperature": 3}, "invalid_temperature", id="temperature"),
        pytest.param({**CHAT_BODY, "stream": "yes"}, "invalid_stream", id="stream-string"),
        pytest.param({**CHAT_BODY, "provider": "openai"}, "invalid_provider", id="provider"),
    ],
)
def test_bad_chat_body_is_400(devnet_api, body, code):
    response = httpx.post(devnet_api.url(CHAT_PATH), json=body, headers=devnet_api.key_headers())

    assert_error(response, 400, code)
    assert response.json()["error"]["type"] == "invalid_request_error"


def test_malformed_json_is_400(devnet_api):
    headers = {**devnet_api.key_headers(), "Content-Type": "application/json"}

    response = httpx.post(devnet_api.url(CHAT_PATH), content=b"{not json", headers=headers)

    assert_error(response, 400, "invalid_json")


@pytest.mark.parametrize(
    ("change", "code"),
    [
        ({"n": 5}, "invalid_n"),
        ({"n": 0}, "invalid_n"),
        ({"size": "300x300"}, "invalid_size"),
        ({"response_format": "url"}, "invalid_response_format"),
    ],
)
def test_bad_image_body_is_400(devnet_api, change, code):
    body = {**IMAGE_BODY, **change}

    response = httpx.post(devnet_api.url(IMAGES_PATH), json=body, headers=devnet_api.key_headers())

    assert_error(response, 400, code)


def test_unknown_path_is_404_in_error_shape(devnet_api):
    assert_error(httpx.get(devnet_api.url("/v1/nothing")), 404, "not_found")


# ------------------------------------------------------------------ API keys


def test_api_key_bypasses_payment(devnet_api):
    response = httpx.post(
        devnet_api.url(CHAT_PATH), json=CHAT_BODY, headers=devnet_api.key_headers()
    )

    assert response.status_code == 200
    assert "PAYMENT-RESPONSE" not in response.headers
    route = devnet_api.stats.route(CHAT_ROUTE)
    assert (route.with_api_key, route.payment_required, route.paid) == (1, 0, 0)


@pytest.mark.parametrize("authorization", ["Bearer wrong-key", "Basic abc", "Bearer"])
def test_wrong_api_key_is_401(devnet_api, authorization):
    headers = {"Authorization": authorization}

    response = httpx.post(devnet_api.url(IMAGES_PATH), json=IMAGE_BODY, headers=headers)

    assert_error(response, 401, "invalid_api_key")
    assert "PAYMENT-REQUIRED" not in response.headers


# ------------------------------------------------------------------ faults


def test_fail_after_settle_status_answers_error_after_money_moved(devnet_api, chain, devnet_payer):
    devnet_api.faults.fail_after_settle_status = 503
    before = balances(devnet_api, chain, devnet_payer)

    failed = paid_request(devnet_payer, "POST", devnet_api.url(CHAT_PATH), json=CHAT_BODY)

    assert_error(failed, 503, "service_unavailable")
    assert "PAYMENT-RESPONSE" not in failed.headers
    assert balances(devnet_api, chain, devnet_payer) == (before[0] - 3000, before[1] + 3000)
    assert devnet_api.stats.paid == 1
    assert devnet_api.stats.route(CHAT_ROUTE).statuses == {402: 1, 503: 1}
    again = paid_request(devnet_payer, "POST", devnet_api.url(CHAT_PATH), json=CHAT_BODY)
    assert again.status_code == 200  # the fault fires once


def test_drop_connection_after_settle_closes_without_body(devnet_api, chain, devnet_payer):
    devnet_api.faults.drop_connection_after_settle = True
    before = balances(devnet_api, chain, devnet_payer)

    with pytest.raises(httpx.RemoteProtocolError):
        paid_request(devnet_payer, "POST", devnet_api.url(CHAT_PATH), json=CHAT_BODY)

    assert balances(devnet_api, chain, devnet_payer) == (before[0] - 3000, before[1] + 3000)
    assert devnet_api.stats.paid == 1


def test_status_before_payment_is_returned_n_times_first(devnet_api):
    devnet_api.faults.status_before_payment = 429
    devnet_api.faults.status_before_payment_times = 2
    devnet_api.faults.retry_after_seconds = 7
    url = devnet_api.url(CHAT_PATH)

    first, second, third = (httpx.post(url, json=CHAT_BODY) for _ in range(3))

    for limited in (first, second):
        assert_error(limited, 429, "rate_limit_exceeded")
        assert limited.headers["Retry-After"] == "7"
    assert_error(third, 402, "payment_required")


def test_stats_are_served_free(devnet_api):
    httpx.post(devnet_api.url(CHAT_PATH), json=CHAT_BODY)

    stats = httpx.get(devnet_api.url("/_devnet/stats")).json()

    assert stats["routes"][CHAT_ROUTE]["payment_required"] == 1
    assert stats["routes"][CHAT_ROUTE]["statuses"] == {"402": 1}
    assert IMAGES_ROUTE not in stats["routes"]


# ------------------------------------------------------------------ the whole devnet


@pytest.mark.chain
def test_devnet_starts_everything_and_stops_it():
    with Devnet() as devnet:
        api, rpc_url = devnet.api, devnet.rpc_url
        assert devchain.usdc_contract(devnet.w3).functions.name().call() == "USD Coin"
        assert httpx.get(api.base_url + "/v1/models").status_code == 200
        assert api.pay_to == devchain.dev_account(3).address

    for url in (api.base_url + "/v1/models", api.facilitator_url + "/supported", rpc_url):
        with pytest.raises(httpx.ConnectError):
            httpx.get(url)
