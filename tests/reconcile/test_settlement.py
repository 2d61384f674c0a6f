"""Every transition on anvil, through the in-process service and the real chain adapter."""

from __future__ import annotations

import logging
import threading

import httpx
import pytest

from tests.reconcile.conftest import MARGIN_S, Wallet, fake_response, settled_tx
from walletd.chain.reader import Web3ChainReader
from walletd.db.ledger import NewPayment
from walletd.domain.payment import PaymentStatus as S, PayReceipt
from walletd.errors import ChainError, InvalidRequestError
from walletd.service import reconcile
from walletd.service.reconcile import cancel_payment


def _trail(wallet: Wallet, payment_id: str) -> list[tuple[str, str]]:
    return [(e.status, e.cause) for e in wallet.events(payment_id)]


def test_a_server_that_settles_is_confirmed_settled_with_its_event_trail(
    wallet: Wallet, http: httpx.Client
) -> None:
    receipt = wallet.pay(http, "k1")
    paid = wallet.send(http, receipt)
    assert paid.status_code == 200, paid.text
    tx_hash = settled_tx(paid)
    assert wallet.report(receipt, 200, paid.headers["payment-response"]) == S.SETTLEMENT_PENDING
    assert wallet.reconcile() == {S.SETTLED: 1}
    row = wallet.row(receipt.payment_id)
    assert (row.status, row.settled_tx, row.reported_tx) == (S.SETTLED, tx_hash, tx_hash)
    assert not row.released
    assert wallet.spent() == 3000
    assert _trail(wallet, receipt.payment_id) == [
        (S.SIGNED, "pay"),
        (S.SETTLEMENT_PENDING, "client_report"),
        (S.SETTLED, "confirmed_on_chain"),
    ]
    assert all(e.at_ms > 0 for e in wallet.events(receipt.payment_id))
    assert wallet.reconcile() == {}


def test_a_payment_never_sent_is_released_only_after_valid_before_and_margin(
    wallet: Wallet, http: httpx.Client
) -> None:
    receipt = wallet.pay(http, "k1")
    assert wallet.chain.timestamp() < receipt.valid_before
    assert wallet.reconcile() == {}
    assert wallet.spent() == 3000
    wallet.travel_to(receipt.valid_before + 1)  # past validBefore, inside the margin
    assert wallet.reconcile() == {}
    assert (wallet.row(receipt.payment_id).status, wallet.spent()) == (S.SIGNED, 3000)
    wallet.travel_to(receipt.valid_before + MARGIN_S)
    assert wallet.reconcile() == {S.EXPIRED: 1}
    row = wallet.row(receipt.payment_id)
    assert (row.status, row.released, wallet.spent()) == (S.EXPIRED, True, 0)
    assert _trail(wallet, receipt.payment_id)[-1] == (
        S.EXPIRED,
        "authorization_unused_after_expiry",
    )


def test_a_rejected_payment_that_never_settles_expires_and_is_released(
    wallet: Wallet, http: httpx.Client
) -> None:
    receipt = wallet.pay(http, "k1")
    assert wallet.report(receipt, 402) == S.REJECTED
    wallet.travel_to(receipt.valid_before + MARGIN_S)
    assert wallet.reconcile() == {S.EXPIRED: 1}
    assert wallet.spent() == 0


def test_a_settled_but_unreported_payment_is_found_settled_after_expiry(
    wallet: Wallet, http: httpx.Client
) -> None:
    receipt = wallet.pay(http, "k1")
    paid = wallet.send(http, receipt)
    assert paid.status_code == 200, paid.text
    assert wallet.reconcile() == {}  # nothing reported, not yet expired: wait
    wallet.travel_to(receipt.valid_before + MARGIN_S)
    assert wallet.reconcile() == {S.SETTLED: 1}
    row = wallet.row(receipt.payment_id)
    assert (row.status, row.settled_tx, row.released) == (S.SETTLED, settled_tx(paid), False)
    assert wallet.spent() == 3000


def test_a_fake_transaction_hash_is_disputed_once_expired_and_stays_counted(
    wallet: Wallet, http: httpx.Client
) -> None:
    receipt = wallet.pay(http, "k1")
    lie = fake_response("0x" + "ab" * 32, wallet.address)
    assert wallet.report(receipt, 200, lie) == S.SETTLEMENT_PENDING
    assert wallet.reconcile() == {}  # maybe not mined yet
    wallet.travel_to(receipt.valid_before + MARGIN_S)
    assert wallet.reconcile() == {S.DISPUTED: 1}
    row = wallet.row(receipt.payment_id)
    assert (row.status, row.released, wallet.spent()) == (S.DISPUTED, False, 3000)
    last = wallet.events(receipt.payment_id)[-1]
    assert (last.cause, last.data["authorization_used"]) == ("reported_tx_not_on_chain", False)
    wallet.travel_to(receipt.valid_before + 10 * MARGIN_S)
    assert wallet.reconcile() == {}


def test_a_real_transaction_that_paid_for_something_else_is_disputed_at_once(
    wallet: Wallet, http: httpx.Client
) -> None:
    first = wallet.pay(http, "k1")
    paid = wallet.send(http, first)
    assert paid.status_code == 200, paid.text
    second = wallet.pay(http, "k2")  # same payee and amount, another nonce
    wallet.report(second, 200, fake_response(settled_tx(paid), wallet.address))
    assert wallet.reconcile() == {S.DISPUTED: 1}
    row = wallet.row(second.payment_id)
    assert (row.status, row.released) == (S.DISPUTED, False)
    problems = wallet.events(second.payment_id)[-1].data["problems"]
    assert problems == ["no AuthorizationUsed for this wallet and nonce"]
    assert wallet.spent() == 6000


def test_a_transfer_to_someone_else_is_disputed(wallet: Wallet, http: httpx.Client) -> None:
    other = wallet.chain.dev_account(5)
    wallet.chain.mint(other.address, 3000)
    transfer = wallet.chain.usdc.functions.transfer(wallet.chain.dev_account(6).address, 3000)
    mined = wallet.chain.transact(other, transfer)
    receipt = wallet.pay(http, "k1")
    wallet.report(receipt, 200, fake_response("0x" + bytes(mined["transactionHash"]).hex(), ""))
    assert wallet.reconcile() == {S.DISPUTED: 1}
    problems = wallet.events(receipt.payment_id)[-1].data["problems"]
    assert isinstance(problems, list) and len(problems) == 2


def _rejected_with_gas(wallet: Wallet, http: httpx.Client) -> PayReceipt:
    """A payment the server refused (so cancellable), and ETH for the cancel transaction."""
    receipt = wallet.pay(http, "k1")
    assert wallet.report(receipt, 402) == S.REJECTED
    wallet.chain.set_eth_balance(wallet.address, 10**18)
    return receipt


def test_a_cancelled_authorization_gives_the_budget_back_before_expiry(
    wallet: Wallet, http: httpx.Client
) -> None:
    receipt = _rejected_with_gas(wallet, http)
    status = cancel_payment(wallet.store, wallet.reader, wallet.sender(), wallet.signer,
                            receipt.payment_id)  # fmt: skip
    assert status == S.CANCELLED
    assert wallet.chain.timestamp() < receipt.valid_before
    row = wallet.row(receipt.payment_id)
    assert (row.status, row.released, wallet.spent()) == (S.CANCELLED, True, 0)
    assert wallet.reader.authorization_state(wallet.address, row.nonce)
    assert [c for _, c in _trail(wallet, receipt.payment_id)][-2:] == [
        "cancel_sent", "authorization_canceled_on_chain",
    ]  # fmt: skip
    before = wallet.chain.usdc_balance(wallet.address)
    assert wallet.send(http, receipt).status_code == 402  # the server can no longer settle it
    assert wallet.chain.usdc_balance(wallet.address) == before


def test_cancel_is_refused_for_a_fresh_signed_or_a_pending_payment(
    wallet: Wallet, http: httpx.Client
) -> None:
    fresh = wallet.pay(http, "k1")
    with pytest.raises(InvalidRequestError, match="less than 60 s"):
        cancel_payment(wallet.store, wallet.reader, wallet.sender(), wallet.signer,
                       fresh.payment_id)  # fmt: skip
    pending = wallet.pay(http, "k2")
    wallet.report(pending, 200, fake_response("0x" + "cd" * 32, wallet.address))
    with pytest.raises(InvalidRequestError, match="settlement_pending"):
        cancel_payment(wallet.store, wallet.reader, wallet.sender(), wallet.signer,
                       pending.payment_id)  # fmt: skip


class _RacingReader:
    """The chain reader, but the reconciler moves the payment while cancel checks the chain."""

    def __init__(self, inner: object, race: object) -> None:
        self._inner, self._race = inner, race

    def __getattr__(self, name: str) -> object:
        return getattr(self._inner, name)

    def block_timestamp(self) -> int:
        self._race()  # type: ignore[operator]
        return self._inner.block_timestamp()  # type: ignore[attr-defined,no-any-return]


def test_a_cancel_racing_a_status_change_sends_nothing_and_records_nothing(
    wallet: Wallet, http: httpx.Client
) -> None:
    receipt = _rejected_with_gas(wallet, http)

    def race() -> None:
        with wallet.store.write() as tx:
            tx.move(receipt.payment_id, S.REJECTED, S.SETTLED, 1, "test_race", {},
                    settled_tx="0x" + "ab" * 32)  # fmt: skip

    reader = _RacingReader(wallet.reader, race)
    with pytest.raises(InvalidRequestError, match="changed status meanwhile"):
        cancel_payment(wallet.store, reader, wallet.sender(), wallet.signer,  # type: ignore[arg-type]
                       receipt.payment_id)  # fmt: skip
    row = wallet.row(receipt.payment_id)
    assert row.status == S.SETTLED
    assert "cancel_sent" not in [c for _, c in _trail(wallet, receipt.payment_id)]
    assert not wallet.reader.authorization_state(wallet.address, row.nonce)  # no cancel on chain


def test_cancelling_an_authorization_the_server_already_used_records_it_settled_and_fails(
    wallet: Wallet, http: httpx.Client
) -> None:
    receipt = wallet.pay(http, "k1")
    paid = wallet.send(http, receipt)
    wallet.report(receipt, 402)  # the client saw a failure, but the server settled
    with pytest.raises(InvalidRequestError, match="already settled on chain") as info:
        cancel_payment(wallet.store, wallet.reader, wallet.sender(), wallet.signer,
                       receipt.payment_id)  # fmt: skip
    assert info.value.details["status"] == S.SETTLED
    assert info.value.details["tx"] == settled_tx(paid)
    row = wallet.row(receipt.payment_id)
    assert (row.status, row.settled_tx) == (S.SETTLED, settled_tx(paid))


def test_without_a_node_nothing_moves_and_the_pass_fails_closed(
    wallet: Wallet, http: httpx.Client
) -> None:
    from walletd.chain.reader import Web3ChainReader
    from walletd.domain.networks import DEFAULT_ENABLED

    receipt = wallet.pay(http, "k1")
    wallet.travel_to(receipt.valid_before + MARGIN_S)
    with pytest.raises(ChainError):
        Web3ChainReader.open("http://127.0.0.1:9", DEFAULT_ENABLED)
    with pytest.raises(ChainError):
        Web3ChainReader.open("", DEFAULT_ENABLED)
    assert (wallet.row(receipt.payment_id).status, wallet.spent()) == (S.SIGNED, 3000)


def test_open_payments_on_other_networks_never_crowd_out_this_one(
    wallet: Wallet, http: httpx.Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A reconciler's batch holds its own network's payments only (here: a batch of 2)."""
    monkeypatch.setattr(reconcile, "BATCH", 2)
    with wallet.store.write() as tx:
        for n in range(3):  # older than any Base payment: first in the due order
            tx.add_payment(_foreign(wallet, n), S.SIGNED, "pay")
    receipt = wallet.pay(http, "k-crowded")
    wallet.travel_to(receipt.valid_before + MARGIN_S)
    report = reconcile.Reconciler(wallet.store, wallet.reader, MARGIN_S).run_once()
    assert report.moved == {S.EXPIRED: 1}
    assert report.elsewhere == {"eip155:137": 3}  # counted, and said: see the next test
    assert wallet.row(receipt.payment_id).status == S.EXPIRED
    assert wallet.row("pay_polygon_0").status == S.SIGNED  # not this reconciler's to judge


def test_the_daemon_warns_once_of_open_payments_its_node_cannot_follow(
    wallet: Wallet, caplog: pytest.LogCaptureFixture
) -> None:
    with wallet.store.write() as tx:
        tx.add_payment(_foreign(wallet, 7), S.SIGNED, "pay")
    stop, passes = threading.Event(), []

    def open_chain() -> Web3ChainReader:
        passes.append(1)
        if len(passes) == 3:
            stop.set()  # this third pass is the last
        return wallet.reader

    loop = reconcile.ReconcileLoop(wallet.store, open_chain, 0.01, MARGIN_S, stop)
    with caplog.at_level(logging.WARNING, logger="walletd.service.reconcile"):
        loop.start()
        loop.join(30)
    warned = [r.getMessage() for r in caplog.records if "not followed" in r.getMessage()]
    assert len(passes) == 3 and len(warned) == 1, warned
    assert "eip155:137 (1)" in warned[0] and "serves eip155:8453" in warned[0]


def _foreign(wallet: Wallet, n: int) -> NewPayment:
    """A signed payment on Polygon, which this reconciler's node does not serve."""
    return NewPayment(
        id=f"pay_polygon_{n}", client_id=wallet.caller.client_id, idempotency_key=f"poly-{n}",
        fingerprint="f" * 64, amount=1, payee="0x" + "1" * 40, network="eip155:137",
        asset="0x3c499c542cef5e3811e1192ce70d8cc03d5c3359", payer=wallet.address,
        method="POST", url="https://x/", host="x", nonce=f"0x{n:064x}", valid_after=0,
        valid_before=1 + n, header_name="PAYMENT-SIGNATURE", header_value="h", labels={},
        created_at_ms=1,
    )  # fmt: skip
