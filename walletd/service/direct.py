"""Pay a direct-transfer demand: send the USDC ourselves and hand back the transaction hash.

The order is what makes it safe (see ``walletd.domain.direct`` for the demand):

1. Outside the ledger lock: read fee fields; take the wallet's nonce sequence
   (``TransferChain.hold_nonce``: a process-wide lock, the node's pending count
   as the floor) and read the next nonce.
2. One write transaction, as for x402: idempotency, freeze, the same policy
   and budgets (``policy.choose`` over a synthetic requirement), funds; then
   *sign* the transaction, whose hash is known before it is sent, and record
   the row (``kind`` transfer, ``nonce`` = the hash, status ``signed``) with the
   account nonce and the raw transaction in a ``transfer_signed`` event; commit.
3. Only then broadcast, still holding the nonce sequence, so the next payment
   takes the next nonce only once this one's fate at the node is known.
4. Wait for the receipt and record the outcome in a second transaction:
   mined with the exact ``Transfer`` → ``settled``; reverted, or refused
   outright by the node → ``failed`` (budget released). No receipt in time
   (``receipt_timeout_s``, or sooner when the caller's deadline comes first) →
   still ``signed``: the hash is returned and the reconciler finishes it.

A crash anywhere leaves a ``signed`` row whose raw transaction is in the
ledger: a retry under the same idempotency key re-broadcasts the very same
transaction (it cannot pay twice: one hash, one nonce), and the reconciler
fails it once another transaction has taken its nonce.
"""

from __future__ import annotations

import logging
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from walletd.db.ledger import (
    LedgerTx,
    NewPayment,
    Store,
    StoredPayment,
    TrackedPayment,
    WalletState,
)
from walletd.domain import policy
from walletd.domain.approval import threshold_hit
from walletd.domain.direct import KIND_TRANSFER, DirectDemand, ProofHeaders, as_demand
from walletd.domain.limits import Subject, check_limits
from walletd.domain.payment import Caller, PayCommand, PaymentStatus, PayReceipt
from walletd.errors import (
    ChainError,
    FrozenError,
    IdempotencyConflictError,
    InsufficientFundsError,
    PolicyDeniedError,
    UnauthenticatedError,
)
from walletd.service.clock import now_ms
from walletd.service.ports import (
    BROADCAST_REJECTED,
    BROADCAST_SENT,
    Broadcast,
    Fees,
    SignedTransaction,
    Signer,
    TransferChain,
)
from walletd.service.reconcile import (
    TRANSFER_SIGNED,
    Decision,
    FundsCache,
    apply_decision,
    decide_transfer,
    require_funds,
    transfer_account_nonce,
    transfer_decision,
)

log = logging.getLogger("walletd.direct")

DEFAULT_RECEIPT_TIMEOUT_S = 60.0
ANSWER_MARGIN_S = 1.0
"""A direct Pay stops waiting for its receipt this long before the caller's deadline."""

Recorder = Callable[[LedgerTx, NewPayment], None]
"""Called inside the Pay transaction after the row is added (the decision log)."""


@dataclass(frozen=True)
class DirectRequest:
    """One Pay call whose demand is a direct transfer, as the wallet service read it."""

    caller: Caller
    cmd: PayCommand
    host: str
    demand: DirectDemand
    fingerprint: str
    """sha256 over the demand's terms, the method and the URL (as for x402)."""


@dataclass(frozen=True)
class Pending:
    """A recorded transfer whose broadcast outcome (or retry) the second phase follows up."""

    receipt: PayReceipt
    tx_hash: str
    broadcast: Broadcast | None
    """The fresh broadcast's outcome; None for a replay (then it is re-sent first)."""


def _refuse_replay(row: StoredPayment, fingerprint: str) -> None:
    if row.fingerprint != fingerprint:
        raise IdempotencyConflictError(
            "idempotency key already used for a different demand", {"payment_id": row.id}
        )


def _receipt(row: StoredPayment, reused: bool) -> PayReceipt:
    return PayReceipt(
        row.id, row.header_name, row.header_value, row.amount, row.payee, row.network,
        row.valid_before, reused,
    )  # fmt: skip


def refuse_above_threshold(amount: int, client_threshold: int | None, state: WalletState) -> None:
    """A direct transfer above an approval threshold is refused: it cannot wait for a human.

    It is sent the moment it is signed, so there is nothing to hold; x402
    authorizations above the threshold are held instead (``walletd.service.approvals``).
    """
    hit = threshold_hit(amount, client_threshold, state.approve_above)
    if hit is not None:
        raise PolicyDeniedError(
            f"policy approve_above: a direct transfer above the {hit[0]} approval threshold "
            "cannot wait for approval; it is refused",
            {"rule": "approve_above"},
        )


def _failed_error(payment_id: str, tx_hash: str, why: str) -> ChainError:
    return ChainError(
        f"direct transfer {tx_hash} {why}; payment {payment_id} is failed and its budget "
        "released (pay again under a new idempotency key)",
        {"payment_id": payment_id, "tx": tx_hash, "status": PaymentStatus.FAILED},
    )


class DirectPayments:
    """Direct-transfer payments for the wallet service; see the module docstring."""

    def __init__(
        self,
        store: Store,
        signer: Signer,
        limits: policy.Limits,
        headers: ProofHeaders,
        open_chain: Callable[[], TransferChain] | None,
        *,
        funds: FundsCache | None = None,
        receipt_timeout_s: float = DEFAULT_RECEIPT_TIMEOUT_S,
        clock: Callable[[], int] = now_ms,
    ) -> None:
        self._store = store
        self._signer = signer
        self._limits = limits
        self._headers = headers
        self._open_chain = open_chain
        self._funds = funds
        self._receipt_timeout_s = receipt_timeout_s
        self._clock = clock
        self._chain: TransferChain | None = None
        self._chain_lock = threading.Lock()

    # ---- the chain connection ----------------------------------------------

    def _connected(self) -> TransferChain:
        """The node client, made once; without an RPC URL every direct demand is refused."""
        if self._open_chain is None:
            raise ChainError("direct-transfer demands need a chain RPC ([chain] rpc_url)")
        with self._chain_lock:
            if self._chain is None:
                self._chain = self._open_chain()
            return self._chain

    def _drop_connection(self) -> None:
        with self._chain_lock:
            self._chain = None

    # ---- phase 1: check, sign, record, broadcast ----------------------------

    def start(self, req: DirectRequest, record: Recorder) -> Pending:
        """Record and broadcast the transfer (or find the earlier one under this key).

        Raises:
            ChainError: no RPC, or the node failed before anything was recorded.
            RefusedError subclasses, UnauthenticatedError, StorageError: as for x402.
        """
        try:
            chain = self._connected()
            fees = chain.fees()
        except ChainError:
            self._drop_connection()
            raise
        with chain.hold_nonce(self._signer.address) as slot:
            try:
                nonce = slot.take()
            except ChainError:
                self._drop_connection()
                raise
            try:
                found = self._record(req, chain, fees, nonce, record)
            except InsufficientFundsError:  # judged on a cached balance: read it, judge again
                if self._funds is None or not self._funds.can_refresh():
                    raise
                self._funds.refresh()
                found = self._record(req, chain, fees, nonce, record)
            if isinstance(found, StoredPayment):
                return self._replay(found, chain)
            new, signed = found
            sent = chain.broadcast(signed.raw)
            if sent.outcome == BROADCAST_SENT:
                slot.sent()
            else:
                slot.unsure()
        log.info(
            "direct transfer id=%s tx=%s nonce=%d broadcast=%s", new.id, signed.tx_hash,
            signed.nonce, sent.outcome,
        )  # fmt: skip
        return Pending(_receipt_of(new), signed.tx_hash, sent)

    def _record(
        self, req: DirectRequest, chain: TransferChain, fees: Fees, nonce: int, record: Recorder
    ) -> StoredPayment | tuple[NewPayment, SignedTransaction]:
        """The Pay transaction: the earlier payment under this key, or the new signed row."""
        with self._store.write() as tx:
            state = tx.lock_state()
            client, earlier = tx.client_with_payment(req.caller.client_id, req.cmd.idempotency_key)
            if client.revoked:
                raise UnauthenticatedError("token revoked")
            if earlier is not None:
                _refuse_replay(earlier, req.fingerprint)
                return earlier
            if state.frozen:
                raise FrozenError("payments are frozen by the operator (`walletd unfreeze`)")
            now = self._clock()
            ctx = policy.Context(
                url_host=req.host, budget=client.budget, global_budget=state.budget,
                spent=tx.spent(client.id, now), global_spent=tx.spent(None, now),
                limits=self._limits,
            )  # fmt: skip
            choice = policy.choose(as_demand(req.demand), ctx)
            subject = Subject(client.id, req.cmd.labels, req.host, req.demand.recipient)
            check_limits(tx.limit_usage(subject, now), req.demand.amount)
            refuse_above_threshold(choice.amount, client.approve_above, state)
            if choice.network.caip2 != chain.network.caip2:
                raise ChainError(
                    f"the RPC serves {chain.network.caip2}, the demand is on {choice.network.caip2}"
                )
            if choice.asset != choice.network.default_asset:
                raise PolicyDeniedError(  # the sender transfers the network's first stablecoin
                    f"policy asset: direct transfers pay {choice.network.default_asset.symbol} "
                    f"only on {choice.network.caip2}, not {choice.asset.symbol}",
                    {"rule": "asset"},
                )
            if self._funds is not None:
                require_funds(
                    self._funds, tx.outstanding(self._signer.address)[1], req.demand.amount
                )
            signed = chain.sign_transfer(
                self._signer, fees, nonce, req.demand.recipient, req.demand.amount
            )
            new = self._new_payment(req, client.id, signed, now)
            tx.add_payment(new, PaymentStatus.SIGNED, "pay")
            data = {"account_nonce": nonce, "raw_tx": signed.raw, "tx": signed.tx_hash}
            tx.add_event(new.id, now, PaymentStatus.SIGNED, TRANSFER_SIGNED, data)
            record(tx, new)
        return new, signed

    def _new_payment(
        self, req: DirectRequest, client_id: int, signed: SignedTransaction, now: int
    ) -> NewPayment:
        """The ledger row: the hash is both the proof and the row's unique ``nonce``."""
        return NewPayment(
            id="pay_" + secrets.token_hex(12),
            client_id=client_id,
            idempotency_key=req.cmd.idempotency_key,
            fingerprint=req.fingerprint,
            amount=req.demand.amount,
            payee=req.demand.recipient,
            network=req.demand.network,
            asset=req.demand.token,
            payer=self._signer.address,
            method=req.cmd.method.upper(),
            url=req.cmd.url,
            host=req.host,
            nonce=signed.tx_hash,
            valid_after=0,
            valid_before=0,
            header_name=self._headers.for_host(req.host),
            header_value=signed.tx_hash,
            labels=dict(req.cmd.labels),
            created_at_ms=now,
            kind=KIND_TRANSFER,
        )

    def _replay(self, row: StoredPayment, chain: TransferChain) -> Pending:
        """Same key, same demand: the same transaction, re-sent if it may not have gone out."""
        if row.status == PaymentStatus.FAILED:
            raise _failed_error(row.id, row.header_value, "did not go through")
        pending = Pending(_receipt(row, reused=True), row.header_value, None)
        if row.status in (PaymentStatus.SETTLED, PaymentStatus.DISPUTED):
            return pending
        raw = self._raw_tx(row.id)
        if raw:
            sent = chain.broadcast(raw)  # the same bytes: at most one of them can ever mine
            log.info("direct transfer %s re-sent: %s", row.id, sent.outcome)
        return pending

    def _raw_tx(self, payment_id: str) -> str:
        with self._store.read() as tx:
            events = tx.events(payment_id)
        for event in events:
            raw = event.data.get("raw_tx") if event.cause == TRANSFER_SIGNED else None
            if isinstance(raw, str):
                return raw
        return ""

    # ---- phase 2: the outcome ------------------------------------------------

    def complete(self, pending: Pending, answer_by: float | None = None) -> PayReceipt:
        """Wait for the receipt and record what the chain says; return the proof.

        The wait ends ``ANSWER_MARGIN_S`` before ``answer_by`` (the caller's
        deadline, ``time.monotonic()``): a caller that has given up learns
        nothing from a later answer, and its retry under the same key is a replay.

        Raises:
            ChainError: the transfer failed (reverted, or the node refused it);
                it is recorded ``failed`` and its budget released.
        """
        receipt = pending.receipt
        row = self._tracked(receipt.payment_id)
        if row.status not in (PaymentStatus.SIGNED, PaymentStatus.REJECTED,
                              PaymentStatus.SETTLEMENT_PENDING):  # fmt: skip
            return receipt
        try:
            decision = self._outcome(row, pending, self._receipt_wait(answer_by))
        except ChainError as err:
            log.warning("direct transfer %s: outcome unknown (%s)", row.id, err.message)
            self._drop_connection()
            return receipt
        if decision is None:
            log.warning("direct transfer %s not mined in time; the reconciler follows it", row.id)
            return receipt
        apply_decision(self._store, row, decision, self._clock())
        if decision.target == PaymentStatus.FAILED:
            raise _failed_error(row.id, pending.tx_hash, decision.cause.replace("_", " "))
        return receipt

    def _receipt_wait(self, answer_by: float | None) -> float:
        """Seconds to wait for a receipt: the configured wait, or less before the deadline."""
        if answer_by is None:
            return self._receipt_timeout_s
        left = answer_by - time.monotonic() - ANSWER_MARGIN_S
        return max(0.0, min(self._receipt_timeout_s, left))

    def _outcome(self, row: TrackedPayment, pending: Pending, wait_s: float) -> Decision | None:
        chain = self._connected()
        sent = pending.broadcast
        if sent is None:  # a replay: if the chain already decided, do not wait for a receipt
            known = decide_transfer(chain, row, transfer_account_nonce(self._store, row.id))
            if known is not None:
                return known
        rejected = sent is not None and sent.outcome == BROADCAST_REJECTED
        if rejected and chain.receipt(pending.tx_hash) is None:
            data = {"tx": pending.tx_hash, "error": sent.detail if sent else ""}
            return Decision(PaymentStatus.FAILED, "transfer_rejected_by_node", data)
        mined = (chain.wait_for_receipt(pending.tx_hash, wait_s) if wait_s > 0
                 else chain.receipt(pending.tx_hash))  # fmt: skip
        if mined is not None:
            return transfer_decision(mined, row, chain.network.usdc)
        return decide_transfer(chain, row, transfer_account_nonce(self._store, row.id))

    def _tracked(self, payment_id: str) -> TrackedPayment:
        with self._store.read() as tx:
            return tx.tracked_payment(payment_id)


def _receipt_of(new: NewPayment) -> PayReceipt:
    return PayReceipt(
        new.id, new.header_name, new.header_value, new.amount, new.payee, new.network,
        new.valid_before, reused=False,
    )  # fmt: skip
