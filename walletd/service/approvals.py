"""Human approval above a threshold: holding a Pay, signing it once approved, and the desk.

Two halves:

* ``ApprovalGate`` runs inside the Pay transaction (``walletd.service.wallet``).
  A Pay above a threshold that passed every rule, budget and funds check is
  *held*: its payment row is written unsigned (``awaiting_approval``), so it
  counts in every window exactly and concurrent Pays cannot overspend while
  it waits; its approval row and a ``held`` decision go with it, and Pay
  answers ``ApprovalRequiredError``. A retry under the same idempotency key
  answers the same while it waits; once approved, the retry checks the
  freeze switch, the approval's expiry and the policy rules again, signs,
  and writes the signature onto the same row (``approved`` -> ``signed``):
  one authorization, ever, because that move is a compare-and-set under the
  writer lock. Denied or expired: ``ApprovalDeniedError``, nothing signed.
* ``ApprovalDesk`` is the approver's side (scope ``approve``): list, approve,
  deny (never one's own payments), watch; the payer's wait for a decision;
  and the sweep that expires approvals nobody decided (or collected) in time,
  releasing their reservations.

``ApprovalBell`` wakes waiting watchers in this process; other replicas'
decisions are seen by polling the ledger every ``POLL_S``.
"""

from __future__ import annotations

import logging
import os
import secrets
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace

from walletd.db.approvals import SignedHeld, decided
from walletd.db.ledger import (
    ClientRecord,
    LedgerTx,
    NewDecision,
    NewPayment,
    Store,
    StoredPayment,
    WalletState,
)
from walletd.domain import approval as ap, policy
from walletd.domain.approval import Approval, ApprovalStatus
from walletd.domain.demand import Demand, Requirement
from walletd.domain.direct import KIND_UPTO
from walletd.domain.networks import find_network
from walletd.domain.payment import Caller, PayCommand, PaymentStatus, PayReceipt
from walletd.errors import (
    ApprovalRequiredError,
    FrozenError,
    IdempotencyConflictError,
    InvalidRequestError,
    NotFoundError,
    PermissionDeniedError,
    PolicyDeniedError,
    StorageError,
    WalletdError,
)
from walletd.service.clock import now_ms

log = logging.getLogger("walletd.approvals")

POLL_S = 0.5
"""How often a watcher or a waiting payer re-reads the ledger (decisions of other replicas)."""
MAX_AWAIT_S = 60.0
"""The longest one AwaitApproval call waits (the client calls again to wait longer)."""
SWEEP_EVERY_S = 1.0
"""How often the daemon expires approvals past their expiry."""
SWEEP_BATCH = 100

HELD_CAUSE, APPROVED_CAUSE, DENIED_CAUSE, EXPIRED_CAUSE = (
    "approval_required",
    "approved",
    "denied",
    "approval_expired",
)
"""The causes of a held payment's events."""


class ApprovalBell:
    """Wakes everyone waiting for a change of an approval in this process."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self.generation = 0

    def ring(self) -> None:
        """Something changed: wake every waiter."""
        with self._cond:
            self.generation += 1
            self._cond.notify_all()

    def wait(self, seen: int, timeout: float) -> None:
        """Wait until a ring after ``seen`` (a ``generation`` read earlier), or ``timeout``."""
        with self._cond:
            self._cond.wait_for(lambda: self.generation != seen, timeout)


def is_held(row: StoredPayment) -> bool:
    """Whether a payment was held for approval and never signed (signed rows have a header)."""
    return row.header_value == "" and row.status in (
        PaymentStatus.AWAITING_APPROVAL,
        PaymentStatus.APPROVED,
        PaymentStatus.DENIED,
        PaymentStatus.EXPIRED,
    )


Sign = Callable[[int, PayCommand, str, str, policy.Choice, Demand, int], NewPayment]
"""``WalletService._sign``: the signed NewPayment for a choice (its id is not used here)."""


@dataclass(frozen=True)
class HeldPay:
    """One Pay as the gate needs it: who asks, for what, under which key."""

    caller: Caller
    cmd: PayCommand
    host: str
    demand: Demand
    fingerprint: str


class ApprovalGate:
    """The Pay transaction's side of approvals (see the module docstring)."""

    def __init__(
        self, limits: policy.Limits, payer: str, max_wait_s: int, bell: ApprovalBell
    ) -> None:
        self._limits = limits
        self._payer = payer
        self._max_wait_s = max_wait_s
        self.bell = bell

    def hold(
        self,
        tx: LedgerTx,
        pay: HeldPay,
        choice: policy.Choice,
        hit: tuple[str, int],
        now: int,
    ) -> ApprovalRequiredError:
        """Record the payment unsigned with its approval; what Pay answers."""
        req, net = choice.requirement, choice.network
        expires = ap.expiry_ms(now, req.max_timeout_seconds, self._max_wait_s)
        cmd = pay.cmd
        new = NewPayment(
            id="pay_" + secrets.token_hex(12), client_id=pay.caller.client_id,
            idempotency_key=cmd.idempotency_key, fingerprint=pay.fingerprint, amount=choice.amount,
            payee=req.pay_to, network=net.caip2, asset=choice.asset.address, payer=self._payer,
            method=cmd.method.upper(), url=cmd.url, host=pay.host,
            nonce="0x" + os.urandom(32).hex(), valid_after=0, valid_before=expires // 1000,
            header_name="", header_value="", labels=dict(cmd.labels), created_at_ms=now,
            kind=choice.kind, authorized=choice.amount if choice.kind == KIND_UPTO else 0,
        )  # fmt: skip
        held = Approval(
            approval_id="apr_" + secrets.token_hex(12), payment_id=new.id,
            client=pay.caller.name, status=ApprovalStatus.PENDING, amount=new.amount,
            payee=new.payee, url=new.url, network=new.network, created_at_ms=now,
            expires_at_ms=expires, threshold=hit[1], threshold_scope=hit[0],
            labels=dict(cmd.labels),
        )  # fmt: skip
        error = ap.required_error(held)
        tx.add_payment(new, PaymentStatus.AWAITING_APPROVAL, HELD_CAUSE, held.state())
        tx.add_approval(held, pay.caller.client_id)
        tx.add_decision(_decision(pay, new, "held", error, now))
        log.info(
            "held client=%s id=%s approval=%s amount=%d payee=%s",
            pay.caller.name, new.id, held.approval_id, new.amount, new.payee,
        )  # fmt: skip
        return error

    def retry(
        self,
        tx: LedgerTx,
        pay: HeldPay,
        earlier: StoredPayment,
        client: ClientRecord,
        state: WalletState,
        now: int,
        sign: Sign,
    ) -> PayReceipt | WalletdError:
        """A Pay under the key of a held payment: the signature once approved, else why not.

        Returns (not raises) an error it wrote for (an expiry), so the group
        commit keeps the write; raises the refusals that wrote nothing.
        """
        if earlier.fingerprint != pay.fingerprint:
            raise IdempotencyConflictError(
                "idempotency key already used for a different demand", {"payment_id": earlier.id}
            )
        held = tx.approval_of_payment(earlier.id)
        if held is None:
            raise StorageError(f"payment {earlier.id} is held but has no approval")
        if earlier.status in (PaymentStatus.DENIED, PaymentStatus.EXPIRED):
            raise ap.denied_error(held)
        if now >= held.expires_at_ms:
            return ap.denied_error(expire(tx, held, earlier.status, now))
        if earlier.status == PaymentStatus.AWAITING_APPROVAL:
            return ap.required_error(held)
        if state.frozen:
            raise FrozenError("payments are frozen by the operator (`walletd unfreeze`)")
        choice = self._choice(pay.demand, earlier, client, state, pay.host)
        new = sign(client.id, pay.cmd, pay.host, pay.fingerprint, choice, pay.demand, now)
        signed = SignedHeld(
            new.nonce, new.header_name, new.header_value, new.valid_after, new.valid_before,
            new.payer,
        )  # fmt: skip
        tx.sign_held(earlier.id, signed, now, {"approval_id": held.approval_id})
        tx.add_decision(_decision(pay, replace(new, id=earlier.id), "paid", None, now))
        log.info(
            "paid client=%s id=%s approval=%s amount=%d payee=%s (approved by %s)",
            pay.caller.name, earlier.id, held.approval_id, earlier.amount, earlier.payee,
            held.decided_by,
        )  # fmt: skip
        return PayReceipt(
            earlier.id, new.header_name, new.header_value, earlier.amount, earlier.payee,
            earlier.network, new.valid_before, reused=False,
        )  # fmt: skip

    def _choice(
        self,
        demand: Demand,
        row: StoredPayment,
        client: ClientRecord,
        state: WalletState,
        host: str,
    ) -> policy.Choice:
        """The demand's entry that was held, checked against the rules as they are now."""
        ctx = policy.Context(
            url_host=host, budget=client.budget, global_budget=state.budget, spent={},
            global_spent={}, limits=self._limits,
        )  # fmt: skip
        for entry in demand.entries:
            if not isinstance(entry, Requirement):
                continue
            net = find_network(entry.network, self._limits.networks)
            same = (entry.pay_to, net.caip2 if net else "", entry.asset.lower())
            if same != (row.payee, row.network, row.asset.lower()):
                continue
            choice = policy.check_requirement(entry, ctx, demand.version)  # a rule changed: refused
            if choice.amount == row.amount:
                return choice
        raise PolicyDeniedError(
            "policy held_entry: the demand no longer holds the approved entry",
            {"rule": "held_entry"},
        )


def _decision(
    pay: HeldPay, new: NewPayment, outcome: str, err: WalletdError | None, now: int
) -> NewDecision:
    return NewDecision(
        at_ms=now, client_id=pay.caller.client_id, client=pay.caller.name, outcome=outcome,
        reason=err.reason if err else "", rule=err.details.get("threshold", "") if err else "",
        message="", idempotency_key=new.idempotency_key, host=new.host, payee=new.payee,
        amount=new.amount, labels=new.labels, payment_id=new.id,
    )  # fmt: skip


def expire(tx: LedgerTx, held: Approval, payment_status: str, now: int) -> Approval:
    """Expire a held payment's approval and release its reservation; the approval as left."""
    gone = replace(held, status=ApprovalStatus.EXPIRED)
    if not tx.decide_approval(
        held, gone, payment_status, PaymentStatus.EXPIRED, EXPIRED_CAUSE, now
    ):
        raise StorageError(f"approval {held.approval_id} changed while it expired")
    log.info("approval %s expired (payment %s released)", held.approval_id, held.payment_id)
    return gone


class ApprovalDesk:
    """The approver's side, the payer's wait, and the expiry sweep (see the module docstring)."""

    def __init__(self, store: Store, bell: ApprovalBell, clock: Callable[[], int] = now_ms) -> None:
        self._store = store
        self.bell = bell
        self._clock = clock

    def list(self, status: str | None, limit: int) -> list[Approval]:
        """Approvals newest first (all clients'), optionally in one status."""
        if status is not None and status not in tuple(ApprovalStatus):
            raise InvalidRequestError(
                f"unknown approval status {status!r}: one of {', '.join(ApprovalStatus)}"
            )
        with self._store.read() as tx:
            return tx.list_approvals(status, max(1, min(limit, 1000)))

    def decide(self, approver: Caller, approval_id: str, approve: bool, note: str) -> Approval:
        """Approve or deny one pending approval; exactly one decision ever applies.

        Raises:
            NotFoundError: no such approval.
            PermissionDeniedError: it holds the approver's own payment.
            ApprovalClosedError: it is already decided, or past its expiry (then it is expired
                now, its reservation released).
        """
        note = ap.check_note(note)
        now = self._clock()
        outcome: Approval
        with self._store.write() as tx:
            tx.lock_state()  # serialise with every other decision, replica or sweep
            held, payment_status, owner = tx.approval(approval_id)
            if owner == approver.client_id:
                raise PermissionDeniedError(
                    f"client {approver.name!r} cannot approve or deny its own payments",
                    {"approval_id": approval_id},
                )
            if held.status != ApprovalStatus.PENDING:
                raise ap.closed_error(held)
            if now >= held.expires_at_ms:
                outcome = expire(tx, held, payment_status, now)
            else:
                status = ApprovalStatus.APPROVED if approve else ApprovalStatus.DENIED
                outcome = decided(held, status, now, approver.name, note)
                target = PaymentStatus.APPROVED if approve else PaymentStatus.DENIED
                cause = APPROVED_CAUSE if approve else DENIED_CAUSE
                if not tx.decide_approval(held, outcome, payment_status, target, cause, now):
                    raise ap.closed_error(tx.approval(approval_id)[0])
        self.bell.ring()
        if outcome.status == ApprovalStatus.EXPIRED:
            raise ap.closed_error(outcome)
        log.info(
            "approval %s %s by %s (payment %s)",
            approval_id, outcome.status, approver.name, held.payment_id,
        )  # fmt: skip
        return outcome

    def await_decision(self, caller: Caller, approval_id: str, timeout_s: float) -> Approval:
        """The caller's own approval once it is no longer pending, or as it is at the timeout."""
        deadline = time.monotonic() + max(0.0, min(timeout_s, MAX_AWAIT_S))
        while True:
            seen = self.bell.generation
            with self._store.read() as tx:
                held, _, owner = tx.approval(approval_id)
            if owner != caller.client_id:
                raise NotFoundError(f"no approval {approval_id!r}", {"approval_id": approval_id})
            left = deadline - time.monotonic()
            over = self._clock() >= held.expires_at_ms
            if held.status != ApprovalStatus.PENDING or over or left <= 0:
                return held
            self.bell.wait(seen, min(left, POLL_S))

    def watch(self, active: Callable[[], bool]) -> Iterator[tuple[str, Approval]]:
        """("pending", approval) for each waiting approval, then ("decided", ...) as each ends."""
        known: set[str] = set()
        while active():
            seen = self.bell.generation
            with self._store.read() as tx:
                waiting = tx.list_approvals(ApprovalStatus.PENDING, 1000)
                gone = known - {a.approval_id for a in waiting}
                ended = [tx.approval(i)[0] for i in sorted(gone)]
            for held in reversed(waiting):  # oldest first
                if held.approval_id not in known:
                    yield "pending", held
            for held in ended:
                yield "decided", held
            known = {a.approval_id for a in waiting}
            self.bell.wait(seen, POLL_S)

    def sweep(self) -> int:
        """Expire every approval past its expiry (releasing its reservation); how many."""
        now = self._clock()
        with self._store.read() as tx:
            if not tx.due_approvals(now, 1):
                return 0
        count = 0
        with self._store.write() as tx:
            tx.lock_state()
            for held, payment_status in tx.due_approvals(now, SWEEP_BATCH):
                expire(tx, held, payment_status, now)
                count += 1
        if count:
            self.bell.ring()
        return count

    def pending_count(self) -> int:
        """Approvals waiting for a decision (the metrics gauge)."""
        with self._store.read() as tx:
            return tx.pending_count()


class SweepLoop(threading.Thread):
    """The daemon's thread that runs ``ApprovalDesk.sweep`` every ``SWEEP_EVERY_S``."""

    def __init__(self, desk: ApprovalDesk, stop: threading.Event) -> None:
        super().__init__(name="walletd-approvals", daemon=True)
        self._desk = desk
        self._stop_event = stop

    def run(self) -> None:
        """Sweep until stopped; a failing ledger is logged and tried again."""
        while not self._stop_event.wait(SWEEP_EVERY_S):
            try:
                self._desk.sweep()
            except WalletdError as err:
                log.warning("expiring approvals failed: %s", err.message)
