"""Concurrency and crashes: one nonce sequence, and every transfer left open is finished."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

import pytest

from tests.direct.conftest import PRICE, RECIPIENT, DirectWallet, WalletFactory
from walletd.domain.payment import PaymentStatus as S
from walletd.errors import BudgetExceededError
from walletd.service.ports import BROADCAST_UNKNOWN, Broadcast, ChainReceipt, TransferChain

THREADS = 12


def _pay_all(wallet: DirectWallet, n: int) -> tuple[list[str], int]:
    """``n`` concurrent Pays with distinct keys; the hashes paid and the refusal count."""
    start = threading.Barrier(n)
    paid: list[str] = []
    refused: list[int] = []
    lock = threading.Lock()

    def run(i: int) -> None:
        start.wait()
        try:
            receipt = wallet.pay(f"k{i}")
        except BudgetExceededError:
            with lock:
                refused.append(i)
            return
        with lock:
            paid.append(receipt.header_value)

    workers = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    return paid, len(refused)


def test_concurrent_direct_pays_all_mine_with_consecutive_nonces(
    direct_wallet: DirectWallet,
) -> None:
    wallet = direct_wallet
    before = wallet.chain.usdc_balance(RECIPIENT)
    paid, refused = _pay_all(wallet, THREADS)
    assert (len(paid), refused) == (THREADS, 0)
    assert sorted(wallet.tx_nonce(h) for h in paid) == list(range(THREADS))
    assert {r.status for r in wallet.rows()} == {S.SETTLED}
    assert wallet.chain.usdc_balance(RECIPIENT) == before + THREADS * PRICE
    assert wallet.sent_count() == THREADS


def test_concurrent_direct_pays_past_the_budget_stop_exactly_at_it(
    make_wallet: WalletFactory,
) -> None:
    wallet = make_wallet(daily=8 * PRICE)
    before = wallet.chain.usdc_balance(RECIPIENT)
    paid, refused = _pay_all(wallet, THREADS)
    assert (len(paid), refused) == (8, THREADS - 8)
    assert sorted(wallet.tx_nonce(h) for h in paid) == list(range(8))
    assert wallet.chain.usdc_balance(RECIPIENT) == before + 8 * PRICE
    assert wallet.spent() == 8 * PRICE


@dataclass
class LostBroadcast:
    """A node link that loses the broadcast of the first ``lose`` transfers (a crash stand-in)."""

    inner: TransferChain
    lose: int = 1
    lost: list[str] = field(default_factory=list)

    def __getattr__(self, name: str) -> object:
        return getattr(self.inner, name)

    def broadcast(self, raw: str) -> Broadcast:
        if len(self.lost) < self.lose:
            self.lost.append(raw)
            return Broadcast(BROADCAST_UNKNOWN, "connection lost (test)")
        return self.inner.broadcast(raw)

    def wait_for_receipt(self, tx_hash: str, timeout_s: float) -> ChainReceipt | None:
        return self.inner.wait_for_receipt(tx_hash, min(timeout_s, 0.3))


def test_a_retry_under_the_same_key_resends_the_same_transfer(
    make_wallet: WalletFactory,
) -> None:
    wallet = make_wallet(wrap=lambda chain: LostBroadcast(chain))
    first = wallet.pay("k1")  # recorded, never reached the node: still open, still counted
    assert (wallet.row(first.payment_id).status, wallet.spent(), wallet.sent_count()) == (
        S.SIGNED, PRICE, 0,
    )  # fmt: skip
    assert wallet.reconcile() == {}  # the nonce is still free: it may yet be mined
    again = wallet.pay("k1")
    assert (again.header_value, again.reused) == (first.header_value, True)
    assert wallet.row(first.payment_id).status == S.SETTLED
    assert (wallet.sent_count(), wallet.spent()) == (1, PRICE)


def test_a_transfer_whose_nonce_another_took_is_failed_by_the_reconciler(
    make_wallet: WalletFactory,
) -> None:
    wallet = make_wallet(wrap=lambda chain: LostBroadcast(chain))
    lost = wallet.pay("k1")
    second = wallet.pay("k2")  # the allocator asks the node again: nonce 0 is reused
    assert wallet.tx_nonce(second.header_value) == 0
    assert wallet.row(second.payment_id).status == S.SETTLED
    assert wallet.spent() == 2 * PRICE  # the lost one is counted until the chain rules it out
    assert wallet.reconcile() == {S.FAILED: 1}
    row = wallet.row(lost.payment_id)
    assert (row.status, row.released, wallet.spent()) == (S.FAILED, True, PRICE)
    assert wallet.reconcile() == {}


@pytest.mark.parametrize("status", [S.REJECTED])
def test_a_client_report_does_not_stop_the_chain_deciding(
    make_wallet: WalletFactory, status: str
) -> None:
    wallet = make_wallet(wrap=lambda chain: LostBroadcast(chain))
    lost = wallet.pay("k1")
    assert wallet.service.report_outcome(wallet.caller, lost.payment_id, 402, "") == status
    wallet.pay("k2")
    assert wallet.reconcile() == {S.FAILED: 1}
    assert wallet.row(lost.payment_id).status == S.FAILED
