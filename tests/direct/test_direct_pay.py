"""Direct transfers on anvil through an in-process WalletService: money, ledger, proof, refusals."""

from __future__ import annotations

import base64
import json

import httpx
import pytest

from tests.direct.conftest import (
    CHAT,
    PRICE,
    RECIPIENT,
    DirectApi,
    DirectWallet,
    WalletFactory,
    direct_header,
)
from walletd.domain.direct import KIND_TRANSFER
from walletd.domain.networks import BASE_SEPOLIA
from walletd.domain.payment import PayCommand, PaymentStatus as S
from walletd.errors import (
    BudgetExceededError,
    ChainError,
    FrozenError,
    IdempotencyConflictError,
    InvalidDemandError,
    PolicyDeniedError,
    WalletdError,
)
from walletd.service import admin


def test_a_direct_transfer_moves_exactly_the_amount_and_its_proof_is_accepted(
    direct_wallet: DirectWallet, direct_api: DirectApi, http: httpx.Client
) -> None:
    wallet, chain = direct_wallet, direct_wallet.chain
    first = http.post(direct_api.url(), json=CHAT)
    assert first.status_code == 402
    demand = json.loads(base64.b64decode(first.headers["payment-required"]))
    assert (demand["recipient"], demand["amount"]) == (direct_api.pay_to, "0.003")
    before = (chain.usdc_balance(wallet.address), chain.usdc_balance(direct_api.pay_to))
    cmd_url = direct_api.url()
    receipt = wallet.pay("k1", first.headers["payment-required"], url=cmd_url)
    assert (receipt.header_name, receipt.amount, receipt.reused) == ("X-Payment-Tx", PRICE, False)
    after = (chain.usdc_balance(wallet.address), chain.usdc_balance(direct_api.pay_to))
    assert after == (before[0] - PRICE, before[1] + PRICE)
    row = wallet.row(receipt.payment_id)
    assert (row.kind, row.status, row.settled_tx) == (
        KIND_TRANSFER,
        S.SETTLED,
        receipt.header_value,
    )
    assert (row.nonce, row.amount, row.payee) == (receipt.header_value, PRICE, direct_api.pay_to)
    assert wallet.spent() == PRICE
    paid = http.post(cmd_url, json=CHAT, headers={receipt.header_name: receipt.header_value})
    assert paid.status_code == 200, paid.text
    assert paid.json()["object"] == "chat.completion"
    again = http.post(cmd_url, json=CHAT, headers={receipt.header_name: receipt.header_value})
    assert again.status_code == 402  # a proof pays for one request
    assert wallet.reconcile() == {}  # nothing left open


def test_an_idempotent_retry_returns_the_same_hash_and_sends_nothing(
    direct_wallet: DirectWallet,
) -> None:
    wallet = direct_wallet
    first = wallet.pay("same-key")
    again = wallet.pay("same-key")
    assert (again.payment_id, again.header_value, again.reused) == (
        first.payment_id, first.header_value, True,
    )  # fmt: skip
    assert wallet.sent_count() == 1
    assert wallet.chain.usdc_balance(wallet.address) == 1_000_000 - PRICE
    with pytest.raises(IdempotencyConflictError):
        wallet.pay("same-key", direct_header("0.004"))
    with pytest.raises(IdempotencyConflictError):
        wallet.pay("same-key", url="http://api.example/v1/other")
    assert wallet.sent_count() == 1
    assert len(wallet.rows()) == 1


def test_a_reworded_description_is_the_same_demand(direct_wallet: DirectWallet) -> None:
    first = direct_wallet.pay("k", direct_header(description="chat"))
    again = direct_wallet.pay("k", direct_header(description="chat, reworded"))
    assert again.header_value == first.header_value
    assert direct_wallet.sent_count() == 1


def test_a_reverted_transfer_is_recorded_failed_and_releases_the_budget(
    make_wallet: WalletFactory,
) -> None:
    wallet = make_wallet(usdc=0)  # gas but no USDC: the token's transfer reverts
    with pytest.raises(ChainError) as refused:
        wallet.pay("k1")
    payment_id = refused.value.details["payment_id"]
    assert refused.value.details["status"] == S.FAILED
    row = wallet.row(payment_id)
    assert (row.kind, row.status, row.released) == (KIND_TRANSFER, S.FAILED, True)
    mined = wallet.chain.w3.eth.get_transaction_receipt(row.nonce)  # type: ignore[arg-type]
    assert mined["status"] == 0  # it really went to the chain and reverted there
    assert wallet.spent() == 0
    with pytest.raises(ChainError):  # a retry of the failed payment sends nothing new
        wallet.pay("k1")
    assert wallet.sent_count() == 1
    wallet.chain.mint(wallet.address, 10_000)
    receipt = wallet.pay("k2")  # a new key pays, with the next account nonce
    assert wallet.row(receipt.payment_id).status == S.SETTLED
    assert wallet.tx_nonce(receipt.header_value) == 1
    assert wallet.spent() == PRICE


def test_a_transfer_the_node_refuses_is_failed_and_the_nonce_is_reused(
    make_wallet: WalletFactory,
) -> None:
    wallet = make_wallet(eth=0)  # no ETH for gas: the node refuses the raw transaction
    with pytest.raises(ChainError) as refused:
        wallet.pay("k1")
    row = wallet.row(refused.value.details["payment_id"])
    assert (row.status, row.released, wallet.spent(), wallet.sent_count()) == (
        S.FAILED, True, 0, 0,
    )  # fmt: skip
    wallet.chain.set_eth_balance(wallet.address, 10**18)
    receipt = wallet.pay("k2")
    assert wallet.row(receipt.payment_id).status == S.SETTLED
    assert wallet.tx_nonce(receipt.header_value) == 0  # no gap left by the refused one


BAD_DEMANDS = {
    "wrong-token": (direct_header(token=BASE_SEPOLIA.usdc), PolicyDeniedError, "asset"),
    "look-alike-token": (
        direct_header(token="0x" + "33" * 20), PolicyDeniedError, "asset",
    ),
    "disabled-chain": (direct_header(chainId=BASE_SEPOLIA.chain_id), PolicyDeniedError, "network"),
    "unknown-chain": (direct_header(chainId=1), PolicyDeniedError, "network"),
    "chain-as-string": (direct_header(chainId="8453"), InvalidDemandError, ""),
    "exponent": (direct_header("1e3"), InvalidDemandError, ""),
    "negative": (direct_header("-1"), InvalidDemandError, ""),
    "too-precise": (direct_header("0.0000001"), InvalidDemandError, ""),
    "float": (direct_header(0.003), InvalidDemandError, ""),  # type: ignore[arg-type]
    "dollar-sign": (direct_header("$0.003"), InvalidDemandError, ""),
    "zero": (direct_header("0"), PolicyDeniedError, "amount_positive"),
    "zero-recipient": (direct_header(recipient="0x" + "0" * 40), PolicyDeniedError, "payee_zero"),
    "unknown-key": (direct_header(memo="x"), InvalidDemandError, ""),
    "missing-token": (direct_header(token=None), InvalidDemandError, ""),
    "over-budget": (direct_header("0.2"), BudgetExceededError, "daily"),
}  # fmt: skip


@pytest.mark.parametrize(("header", "error", "rule"), BAD_DEMANDS.values(), ids=BAD_DEMANDS)
def test_a_refused_direct_demand_signs_and_sends_nothing(
    direct_wallet: DirectWallet, header: str, error: type[WalletdError], rule: str
) -> None:
    with pytest.raises(error) as refused:
        direct_wallet.pay("k1", header)
    if rule:
        assert rule in (refused.value.details.get("rule"), refused.value.details.get("window"))
    assert direct_wallet.rows() == []
    assert direct_wallet.sent_count() == 0
    assert direct_wallet.chain.usdc_balance(direct_wallet.address) == 1_000_000


def test_allowlists_and_freeze_apply_to_direct_demands(direct_wallet: DirectWallet) -> None:
    store = direct_wallet.store
    admin.set_budget(store, "svc", admin.BudgetChange(payees=frozenset({"0x" + "44" * 20})))
    with pytest.raises(PolicyDeniedError, match="payee_allowlist"):
        direct_wallet.pay("k1")
    admin.set_budget(store, "svc", admin.BudgetChange(payees=frozenset({RECIPIENT.lower()})))
    admin.set_budget(store, None, admin.BudgetChange(hosts=frozenset({"other.example"})))
    with pytest.raises(PolicyDeniedError, match="host_allowlist"):
        direct_wallet.pay("k1")
    admin.set_budget(store, None, admin.BudgetChange(hosts=frozenset({"api.example"})))
    admin.set_frozen(store, True)
    with pytest.raises(FrozenError):
        direct_wallet.pay("k1")
    assert (direct_wallet.rows(), direct_wallet.sent_count()) == ([], 0)
    admin.set_frozen(store, False)
    assert direct_wallet.row(direct_wallet.pay("k1").payment_id).status == S.SETTLED


def test_without_an_rpc_a_direct_demand_is_chain_unavailable_and_nothing_is_recorded(
    make_wallet: WalletFactory,
) -> None:
    wallet = make_wallet(rpc=False)
    with pytest.raises(ChainError) as refused:
        wallet.pay("k1")
    assert refused.value.reason == "CHAIN_UNAVAILABLE"
    assert (wallet.rows(), wallet.sent_count(), wallet.spent()) == ([], 0, 0)


def test_an_x402_payment_and_a_direct_one_share_the_budget(direct_wallet: DirectWallet) -> None:
    from tests.plugins.daemon import demand_header

    direct_wallet.pay("direct")
    x402 = direct_wallet.service.pay(
        direct_wallet.caller,
        PayCommand("exact", "POST", "http://api.example/v1/chat", demand_header("97000")),
    )
    assert direct_wallet.row(x402.payment_id).kind == "exact"
    assert direct_wallet.spent() == 100_000
    with pytest.raises(BudgetExceededError):
        direct_wallet.pay("one-more")
    with pytest.raises(IdempotencyConflictError):
        direct_wallet.pay("exact")  # the x402 payment's key, now with a direct demand
    assert direct_wallet.sent_count() == 1
