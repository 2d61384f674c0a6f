"""The daemon's use cases: authenticate, pay, report an outcome, read budgets and payments.

Pay follows one rule: the check, the reservation and the record happen in one
durable write transaction, and the header is returned only after it commits.
The signature is made *inside* that transaction (it costs tens of microseconds),
so a crash or a failed commit can never leave a signature in the world that the
ledger does not know; and the header is stored with the row, so a retry under
the same idempotency key gets the very same authorization (same nonce) back.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from urllib.parse import urlsplit

from walletd.db.ledger import LedgerTx, NewDecision, NewPayment, Store, StoredPayment
from walletd.domain import lifecycle, permit2, policy
from walletd.domain.approval import DEFAULT_MAX_WAIT_SECONDS, threshold_hit
from walletd.domain.budget import BudgetState, window_states
from walletd.domain.demand import Demand, InvalidEntry, Requirement, decode_demand
from walletd.domain.direct import (
    KIND_EXACT,
    KIND_PERMIT2,
    KIND_UPTO,
    DirectDemand,
    as_demand,
    parse_direct,
)
from walletd.domain.eip3009 import Authorization, authorization_digest, payment_header
from walletd.domain.limits import Subject, check_limits, limit_states
from walletd.domain.money import MAX_AMOUNT
from walletd.domain.networks import PERMIT2, to_token_units
from walletd.domain.payment import (
    Caller,
    PayCommand,
    PaymentStatus,
    PaymentView,
    PayReceipt,
    check_pay_sizes,
)
from walletd.domain.report import ReportQuery, SpendReport
from walletd.errors import (
    ApprovalDeniedError,
    ApprovalRequiredError,
    AuthError,
    ChainError,
    FrozenError,
    IdempotencyConflictError,
    InvalidRequestError,
    NotFoundError,
    PaidAnswerLostError,
    StorageError,
    UnauthenticatedError,
    WalletdError,
)
from walletd.service import outcome, report
from walletd.service.approvals import ApprovalBell, ApprovalGate, HeldPay, is_held
from walletd.service.clock import now_ms
from walletd.service.direct import DirectPayments, DirectRequest, Pending
from walletd.service.group import GroupCommit
from walletd.service.ports import ChainReader, Signer
from walletd.service.reconcile import Decision, FundsCache, answer_lost_decision, funds_shortfall
from walletd.service.tokens import hash_token

log = logging.getLogger("walletd.pay")

MAX_KNOWN_TOKENS = 4096
"""Live tokens ``identify`` remembers; past this the memory starts over (a cold read each)."""

VALID_AFTER_SLACK_S = 600
"""validAfter lies this far in the past, so a payee's clock that runs slow still accepts it."""

PRUNE_EVERY_MS = 3_600_000
KEEP_FINE_BUCKETS_MS = 2 * 86_400_000
"""Second, minute and hour running totals older than this are deleted (hourly, at most).

The rolling windows reach back a day; a window reaching further (a clock set
back by days) is summed from the rows, so pruning never changes a sum.
"""

_KEY = re.compile(r"[A-Za-z0-9_.:\-]{1,200}")
_METHODS = frozenset({"GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"})
_URL_SCHEMES = frozenset({"http", "https", "mcp+stdio"})
"""http(s) for HTTP resources; ``mcp+stdio://<name>/tools/<tool>`` names a tool of a local
MCP server (walletd.client.PayingMCPSession), whose name is the host policy sees."""


def _request_host(cmd: PayCommand) -> str:
    if not _KEY.fullmatch(cmd.idempotency_key):
        raise InvalidRequestError("idempotency_key must be 1-200 of [A-Za-z0-9_.:-]")
    if cmd.method.upper() not in _METHODS:
        raise InvalidRequestError(f"unsupported method {cmd.method!r:.20}")
    parts = urlsplit(cmd.url)
    if parts.scheme not in _URL_SCHEMES or not parts.hostname:
        raise InvalidRequestError("url must be an absolute http(s) or mcp+stdio URL")
    return parts.hostname.lower()


def _paid_decision(caller: Caller, new: NewPayment) -> NewDecision:
    """The decision-log entry of a signed payment."""
    return NewDecision(
        at_ms=new.created_at_ms,
        client_id=caller.client_id,
        client=caller.name,
        outcome="paid",
        reason="",
        rule="",
        message="",
        idempotency_key=new.idempotency_key,
        host=new.host,
        payee=new.payee,
        amount=new.amount,
        labels=new.labels,
        payment_id=new.id,
    )


_decoded = lru_cache(maxsize=64)(decode_demand)
"""``decode_demand``, remembering the last demands decoded (a route repeats its terms).

Safe because decoding is pure and a Demand is never changed; failures are not kept.
"""


def _fingerprint(demand_fingerprint: str, cmd: PayCommand) -> str:
    text = f"{demand_fingerprint}|{cmd.method.upper()}|{cmd.url}"
    return hashlib.sha256(text.encode()).hexdigest()


@dataclass
class _Attempt:
    """What one Pay learned before it was refused, for the decision log."""

    host: str = ""
    demand: Demand | None = None
    choice: policy.Choice | None = None
    transfer: Pending | None = None
    """A direct transfer recorded by ``_pay``, whose outcome ``pay`` still has to follow."""
    funds_refreshed: bool = False
    """True once the balance was read afresh for this Pay (it is refused on funds only then)."""
    refusal: WalletdError | None = None
    """The refusal the Pay transaction wrote to the decision log (if its commit fails, not)."""
    recorded: bool = False
    """True once the refusal is committed to the decision log."""

    def subject(self, err: WalletdError | None = None) -> tuple[str, int]:
        """The payee and amount walletd was asked to pay, as far as the demand says.

        The amount a budget or funds check refused (``requested``), else the
        chosen entry, else the cheapest well-formed entry, else the cheapest
        amount that could be read from a malformed one; 0 only when none is known.
        """
        requested = err.details.get("requested", "") if err is not None else ""
        if self.choice is not None:
            return self.choice.requirement.pay_to, self.choice.amount
        entries = self.demand.entries if self.demand else ()
        valid = [e for e in entries if isinstance(e, Requirement)]
        if valid:
            usd = {e.index: policy.usd_amount_of(e) for e in valid}
            cheapest = min(valid, key=lambda e: usd[e.index])
            if requested.isdigit():  # the budget judged this amount, not the cheapest overall
                asked = [e for e in valid if usd[e.index] == int(requested)]
                cheapest = asked[0] if asked else cheapest
            return cheapest.pay_to, usd[cheapest.index]
        known = [e.amount for e in entries if isinstance(e, InvalidEntry) and e.amount is not None]
        return "", min(known) if known else 0


class _StaleFunds(Exception):
    """Pay would refuse for funds on a balance not read just now: refresh it and run again.

    Not a WalletdError: the job returns it (it wrote nothing), and ``_pay``
    reads the balance outside the transaction before the second run.
    """


@dataclass(frozen=True)
class _Intent:
    """One Pay as decoded outside the transaction, for the job that runs inside it."""

    caller: Caller
    cmd: PayCommand
    host: str
    demand: Demand
    fingerprint: str
    attempt: _Attempt


MAX_DECISION_MESSAGE = 500
"""Characters of a refusal's message kept in the decision log."""


def _refusal_rule(err: WalletdError) -> str:
    """The policy rule or budget window that refused, when the error names one."""
    return err.details.get("rule") or err.details.get("window") or ""


def _url_host(url: str) -> str:
    """The URL's host for the log, or "" when it does not parse."""
    try:
        return (urlsplit(url).hostname or "")[:255]
    except ValueError:
        return ""


def _receipt(row: StoredPayment, reused: bool) -> PayReceipt:
    return PayReceipt(
        payment_id=row.id,
        header_name=row.header_name,
        header_value=row.header_value,
        amount=row.amount,
        payee=row.payee,
        network=row.network,
        valid_before=row.valid_before,
        reused=reused,
    )


class WalletService:
    """Implements ``walletd.service.ports.WalletApi`` over a Store and a Signer."""

    def __init__(
        self,
        store: Store,
        signer: Signer,
        limits: policy.Limits,
        clock: Callable[[], int] = now_ms,
        funds: FundsCache | None = None,
        direct: DirectPayments | None = None,
        chain: Callable[[], ChainReader] | None = None,
        approval_max_wait_s: int = DEFAULT_MAX_WAIT_SECONDS,
        bell: ApprovalBell | None = None,
    ) -> None:
        self._store = store
        self._approvals = ApprovalGate(
            limits, signer.address, approval_max_wait_s, bell or ApprovalBell()
        )
        """Holds payments above an approval threshold; signs them once approved."""
        self._chain = chain
        """Opens a chain reader (the daemon's RPC); None without one."""
        self._funds = funds
        self._direct = direct
        self._signer = signer
        self._limits = limits
        self._clock = clock
        self._writes = GroupCommit(store)
        self._pruned_at = 0
        self._known: dict[str, Caller] = {}
        """Token hash -> its client, for ``identify``: only tokens once found live."""

    def authenticate(self, token: str) -> Caller:
        """The live client holding ``token``, read from the ledger now.

        Raises:
            UnauthenticatedError: no such token, or it was revoked.
        """
        token_hash = hash_token(token) if token else ""
        client = self._store.client_by_token_hash(token_hash) if token else None
        if client is None or client.revoked:
            self._known.pop(token_hash, None)
            raise UnauthenticatedError("unknown or revoked token")
        caller = Caller(client.id, client.name, client.scopes)
        if len(self._known) >= MAX_KNOWN_TOKENS:
            self._known.clear()
        self._known[token_hash] = caller
        return caller

    def identify(self, token: str) -> Caller:
        """The client holding ``token``, from memory if it authenticated before.

        For Pay and ReportOutcome only. A token's client, name and scopes never
        change once it is issued; only revocation does, and every Pay
        transaction re-reads the client row and refuses a revoked one before it
        signs (``_pay_in``, and ``DirectPayments._record``), as a report's
        transaction does before it writes (``report_outcome``, with the payment
        in the same statement; a refusal's on-chain check reads it first). So
        they skip the separate read every RPC would otherwise make: under 16
        callers that read, a pooled connection and a transaction of its own,
        cost about a sixth of the daemon's CPU per Pay (docs/benchmarks.md).
        Revocation still takes effect at the next call, from this daemon or
        another on the same ledger.

        Raises:
            UnauthenticatedError: no such token, or it was revoked (as ``authenticate``).
        """
        known = self._known.get(hash_token(token)) if token else None
        return known if known is not None else self.authenticate(token)

    def pay(self, caller: Caller, cmd: PayCommand) -> PayReceipt:
        """Check, record and sign one payment; see the module docstring.

        Every decision goes to the decision log: a payment in its own
        transaction; a refusal inside the Pay transaction in that transaction
        (the refused Pay wrote nothing else), one before it (a malformed demand)
        in a small transaction of its own. Authentication failures are not
        recorded, and neither is an oversized request (``check_pay_sizes``):
        it is refused before anything is written. Concurrent Pays may share one
        transaction and its commit (``walletd.service.group``); each still runs
        every check, in order.

        Raises:
            InvalidRequestError, InvalidDemandError, PolicyDeniedError,
            BudgetExceededError, RateLimitedError, InsufficientFundsError, FrozenError,
            IdempotencyConflictError, UnauthenticatedError, StorageError.
        """
        check_pay_sizes(cmd)
        attempt = _Attempt()
        try:
            receipt = self._pay(caller, cmd, attempt)
        except (AuthError, StorageError):
            raise
        except WalletdError as err:
            if not attempt.recorded:
                self._record_refusal(caller, cmd, attempt, err)
            raise
        if attempt.transfer is not None and self._direct is not None:
            # After the commit: what happens on chain is an outcome, not a refusal.
            return self._direct.complete(attempt.transfer, cmd.answer_by)
        return receipt

    def _pay(self, caller: Caller, cmd: PayCommand, attempt: _Attempt) -> PayReceipt:
        attempt.host = _url_host(cmd.url)
        host = _request_host(cmd)
        direct_demand = parse_direct(cmd.payment_required)
        if direct_demand is not None:
            return self._start_direct(caller, cmd, host, direct_demand, attempt)
        demand = attempt.demand = _decoded(cmd.payment_required, cmd.body)
        fingerprint = _fingerprint(demand.fingerprint, cmd)
        intent = _Intent(caller, cmd, host, demand, fingerprint, attempt)
        try:
            result = self._writes.run(lambda tx: self._pay_job(tx, intent))
            if isinstance(result, _StaleFunds) and self._funds is not None:
                self._funds.refresh()  # outside the transaction: the node may be slow
                attempt.funds_refreshed = True
                result = self._writes.run(lambda tx: self._pay_job(tx, intent))
        except StorageError:
            if attempt.refusal is not None:  # refused, but the commit of its record failed
                raise attempt.refusal from None
            raise
        if isinstance(result, _StaleFunds):  # unreachable: the second run has funds_refreshed
            raise RuntimeError("Pay asked twice for a fresh balance")
        if isinstance(result, WalletdError):
            attempt.recorded = True
            if isinstance(result, ApprovalRequiredError | ApprovalDeniedError):
                self._approvals.bell.ring()  # committed: wake the watchers
            raise result
        if not result.reused:
            log.info(
                "paid client=%s id=%s amount=%d payee=%s host=%s",
                caller.name,
                result.payment_id,
                result.amount,
                result.payee,
                host,
            )
        return result

    def _pay_job(self, tx: LedgerTx, intent: _Intent) -> PayReceipt | WalletdError | _StaleFunds:
        """One Pay inside a (group) write transaction; a refusal is logged there and returned."""
        try:
            return self._pay_in(tx, intent)
        except _StaleFunds as stale:  # nothing written, nothing logged: refresh and run again
            return stale
        except (AuthError, StorageError):
            raise
        except WalletdError as err:
            attempt = intent.attempt
            tx.add_decision(self._refusal_decision(intent.caller, intent.cmd, attempt, err))
            attempt.refusal = err
            return err

    def _pay_in(self, tx: LedgerTx, intent: _Intent) -> PayReceipt | WalletdError:
        """Check, choose, sign and record; every refusal is raised before the first write.

        A payment above an approval threshold is held instead of signed, and
        the ApprovalRequiredError is returned (its rows are written); so is the
        ApprovalDeniedError of an approval the retry found expired.
        """
        caller, cmd, demand, attempt = intent.caller, intent.cmd, intent.demand, intent.attempt
        state = tx.lock_state()
        client, earlier = tx.client_with_payment(caller.client_id, cmd.idempotency_key)
        if client.revoked:
            raise UnauthenticatedError("token revoked")
        if earlier is not None:
            if is_held(earlier):
                held = HeldPay(caller, cmd, intent.host, demand, intent.fingerprint)
                return self._approvals.retry(
                    tx, held, earlier, client, state, self._clock(), self._sign
                )
            return self._replay(earlier, intent.fingerprint)
        if state.frozen:
            raise FrozenError("payments are frozen by the operator (`walletd unfreeze`)")
        now = self._clock()
        spent, global_spent = tx.spent_pair(
            client.id, now, client.budget.summed_windows(), state.budget.summed_windows()
        )
        ctx = policy.Context(
            url_host=intent.host,
            budget=client.budget,
            global_budget=state.budget,
            spent=spent,
            global_spent=global_spent,
            limits=self._limits,
        )
        choice = attempt.choice = policy.choose(demand, ctx)
        subject = Subject(client.id, cmd.labels, intent.host, choice.requirement.pay_to)
        check_limits(tx.limit_usage(subject, now), choice.amount)
        if self._funds is not None:
            short = funds_shortfall(
                self._funds, tx.outstanding(self._signer.address)[1], choice.amount
            )
            if short is not None and not attempt.funds_refreshed and self._funds.can_refresh():
                raise _StaleFunds
            if short is not None:
                raise short
        hit = threshold_hit(choice.amount, client.approve_above, state.approve_above)
        if hit is not None:
            held = HeldPay(caller, cmd, intent.host, demand, intent.fingerprint)
            return self._approvals.hold(tx, held, choice, hit, now)
        new = self._sign(client.id, cmd, intent.host, intent.fingerprint, choice, demand, now)
        with tx.pipelined():  # the row, its event, totals and decision: one round trip
            tx.add_payment(new, PaymentStatus.SIGNED, "pay")
            tx.add_decision(_paid_decision(caller, new))
        if now - self._pruned_at >= PRUNE_EVERY_MS:
            tx.prune_spend_buckets(now - KEEP_FINE_BUCKETS_MS)
            self._pruned_at = now
        return PayReceipt(
            new.id,
            new.header_name,
            new.header_value,
            new.amount,
            new.payee,
            new.network,
            new.valid_before,
            reused=False,
        )

    def _start_direct(
        self, caller: Caller, cmd: PayCommand, host: str, demand: DirectDemand, attempt: _Attempt
    ) -> PayReceipt:
        """Phase one of a direct transfer (``walletd.service.direct``); ``pay`` finishes it."""
        attempt.demand = as_demand(demand)
        if self._direct is None:
            raise ChainError("direct-transfer demands need a chain RPC ([chain] rpc_url)")
        fingerprint = _fingerprint(demand.fingerprint, cmd)
        request = DirectRequest(caller, cmd, host, demand, fingerprint)
        pending = self._direct.start(
            request, lambda tx, new: tx.add_decision(_paid_decision(caller, new))
        )
        attempt.transfer = pending
        return pending.receipt

    def _record_refusal(
        self, caller: Caller, cmd: PayCommand, attempt: _Attempt, err: WalletdError
    ) -> None:
        """Write the refusal to the decision log; a ledger failure here is logged, not raised.

        The caller may have been identified from memory (``identify``), so the
        transaction checks revocation first: a revoked token gets
        UnauthenticatedError and writes nothing, as if it had been read now.
        """
        decision = self._refusal_decision(caller, cmd, attempt, err)

        def record(tx: LedgerTx) -> None:
            if tx.client_by_id(caller.client_id).revoked:
                raise UnauthenticatedError("token revoked")
            tx.add_decision(decision)

        try:
            self._writes.run(record)
        except StorageError as exc:
            log.warning("refusal not recorded in the decision log: %s", exc.message)

    def _refusal_decision(
        self, caller: Caller, cmd: PayCommand, attempt: _Attempt, err: WalletdError
    ) -> NewDecision:
        """The decision-log entry of a refusal (logged here too)."""
        payee, amount = attempt.subject(err)
        rule = _refusal_rule(err)
        decision = NewDecision(
            at_ms=self._clock(),
            client_id=caller.client_id,
            client=caller.name,
            outcome="refused",
            reason=err.reason,
            rule=rule[:64],
            message=err.message[:MAX_DECISION_MESSAGE],
            idempotency_key=cmd.idempotency_key[:200],
            host=attempt.host,
            payee=payee[:42],
            amount=amount if 0 <= amount <= MAX_AMOUNT else 0,
            labels=dict(cmd.labels),
            payment_id=None,
        )
        log.info(
            "refused client=%s reason=%s rule=%s host=%s amount=%d",
            caller.name, err.reason, rule or "-", attempt.host or "-", decision.amount,
        )  # fmt: skip
        return decision

    def _replay(self, earlier: StoredPayment, fingerprint: str) -> PayReceipt:
        if earlier.fingerprint != fingerprint:
            raise IdempotencyConflictError(
                "idempotency key already used for a different demand", {"payment_id": earlier.id}
            )
        return _receipt(earlier, reused=True)

    def _sign(
        self,
        client_id: int,
        cmd: PayCommand,
        host: str,
        fingerprint: str,
        choice: policy.Choice,
        demand: Demand,
        now: int,
    ) -> NewPayment:
        req, net = choice.requirement, choice.network
        now_s = now // 1000
        valid_after = max(now_s - VALID_AFTER_SLACK_S, 0)
        valid_before = now_s + choice.validity_seconds
        if choice.method == PERMIT2:
            transfer = permit2.Permit2Transfer(
                from_address=self._signer.address,
                token=choice.asset.address,
                amount=to_token_units(choice.asset, choice.amount),
                spender=permit2.UPTO_PROXY_ADDRESS
                if req.scheme == "upto"
                else (permit2.EXACT_PROXY_ADDRESS),
                nonce=int.from_bytes(os.urandom(32), "big"),
                deadline=valid_before,
                to_address=req.pay_to,
                valid_after=valid_after,
                facilitator=choice.facilitator if req.scheme == "upto" else None,
            )
            signature = self._signer.sign_hash(permit2.permit2_digest(net.chain_id, transfer))
            name, value = permit2.payment_header(
                accepted=req.raw, resource=demand.resource, transfer=transfer, signature=signature
            )
            nonce = "0x" + transfer.nonce.to_bytes(32, "big").hex()
            kind = KIND_UPTO if req.scheme == "upto" else KIND_PERMIT2
        else:
            auth = Authorization(
                from_address=self._signer.address,
                to_address=req.pay_to,
                value=req.amount,
                valid_after=valid_after,
                valid_before=valid_before,
                nonce=os.urandom(32),
            )
            signature = self._signer.sign_hash(authorization_digest(net, auth, choice.asset))
            name, value = payment_header(
                version=demand.version,
                network=net,
                accepted=req.raw,
                resource=demand.resource,
                auth=auth,
                signature=signature,
            )
            nonce, kind = "0x" + auth.nonce.hex(), KIND_EXACT
        return NewPayment(
            id="pay_" + secrets.token_hex(12),
            client_id=client_id,
            idempotency_key=cmd.idempotency_key,
            fingerprint=fingerprint,
            amount=choice.amount,
            payee=req.pay_to,
            network=net.caip2,
            asset=choice.asset.address,
            payer=self._signer.address,
            method=cmd.method.upper(),
            url=cmd.url,
            host=host,
            nonce=nonce,
            valid_after=valid_after,
            valid_before=valid_before,
            header_name=name,
            header_value=value,
            labels=dict(cmd.labels),
            created_at_ms=now,
            kind=kind,
            authorized=choice.amount if kind == KIND_UPTO else 0,
        )

    def report_outcome(
        self, caller: Caller, payment_id: str, http_status: int, payment_response: str
    ) -> str:
        """Record what the client saw after paying; return the payment's status.

        A refusal (a 402 after paying, ``success: false``) is checked on chain
        at once when the daemon has an RPC: if the authorization is already
        used, the payment is recorded ``settled`` and PaidAnswerLostError tells
        the caller that it paid and only the answer was lost.

        The caller may come from memory (``identify``): the transaction reads
        the client's revocation with the payment and refuses a revoked one.

        Raises:
            UnauthenticatedError: the token was revoked.
            NotFoundError: no such payment for this caller.
            PaidAnswerLostError: the server refused a payment the chain shows settled.
        """
        seen = outcome.decode_outcome(http_status, payment_response)
        lost = self._answer_lost(caller, payment_id) if outcome.refused(seen) else None
        now = self._clock()
        with self._store.write() as tx:
            revoked, row = tx.owned_payment(caller.client_id, payment_id)
            if revoked:
                raise UnauthenticatedError("token revoked")
            if row is None:
                raise NotFoundError(f"no payment {payment_id!r}")
            claimed = outcome.claimed_tx(seen)
            if claimed:
                tx.record_reported_tx(payment_id, claimed)
            status, cause = outcome.next_status(row.status, seen), "client_report"
            facts, settled_tx = seen.as_data(), None
            if lost is not None and lifecycle.may_move(row.status, lost.target):
                status, cause, settled_tx = lost.target, lost.cause, lost.settled_tx
                facts |= lost.data
            moved = status != row.status and tx.move(
                payment_id, row.status, status, now, cause, facts, settled_tx=settled_tx
            )
            if not moved:
                status = row.status
                tx.add_event(payment_id, now, status, "client_report", seen.as_data())
        if outcome.refused(seen) and status == PaymentStatus.SETTLED:
            raise self._answer_lost_error(payment_id, seen, lost)
        return status

    def _answer_lost(self, caller: Caller, payment_id: str) -> Decision | None:
        """The on-chain decision for a refused payment the chain already used, if any.

        Read outside any write transaction; a node that fails leaves the report
        as it would be without one (the reconciler decides later).
        """
        if self._chain is None:
            return None
        with self._store.read() as tx:
            if tx.client_by_id(caller.client_id).revoked:
                raise UnauthenticatedError("token revoked")
            row = tx.tracked_payment(payment_id)
        if row.client_id != caller.client_id:
            raise NotFoundError(f"no payment {payment_id!r}")
        if row.status not in (PaymentStatus.SIGNED, PaymentStatus.REJECTED):
            return None
        try:
            return answer_lost_decision(self._chain(), row)
        except ChainError as err:
            log.warning("payment %s: refusal not checked on chain: %s", row.id, err.message)
            return None

    @staticmethod
    def _answer_lost_error(
        payment_id: str, seen: outcome.Outcome, lost: Decision | None
    ) -> PaidAnswerLostError:
        tx = (lost.settled_tx if lost is not None else None) or ""
        where = f" in {tx}" if tx else ""
        return PaidAnswerLostError(
            f"payment {payment_id} went through on chain{where}, but the server refused the "
            f"request (HTTP {seen.http_status}) and its answer is lost; sending the request "
            "again is a new payment",
            {"payment_id": payment_id, "tx": tx, "server_reason": seen.error_reason},
        )

    def get_budget(self, caller: Caller) -> BudgetState:
        """What remains in each of the caller's windows and the global ones."""
        now = self._clock()
        with self._store.read() as tx:
            state = tx.wallet_state()
            client = tx.client_by_id(caller.client_id)
            windows = window_states(client.budget, tx.spent(client.id, now))
            windows += window_states(state.budget, tx.spent(None, now), prefix="global_")
            scoped, rates = limit_states(tx.usage(tx.limits_for(client.id), now))
        return BudgetState(
            caller.name,
            tuple(windows),
            state.frozen,
            hosts=tuple(sorted(client.budget.hosts)),
            global_hosts=tuple(sorted(state.budget.hosts)),
            scoped=tuple(scoped),
            rates=tuple(rates),
        )

    def list_payments(self, caller: Caller, limit: int) -> list[PaymentView]:
        """The caller's own payments, newest first."""
        with self._store.read() as tx:
            return tx.list_payments(caller.client_id, max(1, min(limit, 1000)))

    def spend_report(self, caller: Caller, query: ReportQuery) -> SpendReport:
        """The caller's own spend report (see ``walletd.service.report``)."""
        return report.client_report(self._store, caller, query, self._clock())
