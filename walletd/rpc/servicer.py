"""The generated WalletService servicer, as a thin adapter onto WalletApi.

Each RPC does the same four things, in ``_call``: take the bearer token from the
metadata, authenticate it, check the method's scope, and turn WalletdError into a
rich status. The per-RPC methods only convert protos to domain objects and back
(amounts are decimal strings on the wire, ints inside). Business rules live in
the service layer, never here.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import TypeVar

import grpc

from walletd.domain.approval import Approval
from walletd.domain.budget import BudgetState, WindowState
from walletd.domain.payment import Caller, PayCommand, PaymentView, PayReceipt
from walletd.domain.report import BUCKETS, ReportQuery, ReportRow, SpendReport, Tally
from walletd.errors import (
    InvalidRequestError,
    PermissionDeniedError,
    UnauthenticatedError,
    WalletdError,
)
from walletd.rpc import permissions
from walletd.rpc.status import status_for_exception
from walletd.service.ports import ApprovalApi, WalletApi
from walletd.v1 import wallet_pb2 as pb, wallet_pb2_grpc as pb_grpc

R = TypeVar("R")

DEFAULT_LIST_LIMIT = 100
"""ListPayments limit when the request leaves it 0 (proto3's "not set")."""

_BEARER = "bearer "


def bearer_token(context: grpc.ServicerContext) -> str:
    """The token of the ``authorization: Bearer <token>`` metadata, or Unauthenticated."""
    for key, value in context.invocation_metadata():
        if key == "authorization" and isinstance(value, str):
            if value[: len(_BEARER)].lower() == _BEARER and value[len(_BEARER) :].strip():
                return value[len(_BEARER) :].strip()
            break
    raise UnauthenticatedError("missing or malformed 'authorization: Bearer <token>' metadata")


def check_scope(caller: Caller, method: str) -> None:
    """Raise PermissionDeniedError unless the caller's token may call ``method``."""
    if not permissions.allowed(method, caller.scopes):
        needed = sorted(permissions.METHOD_SCOPES.get(method, frozenset()))
        raise PermissionDeniedError(
            f"token of {caller.name!r} lacks the scope for {method}",
            {"method": method, "needed": ",".join(needed)},
        )


def _amount(value: int | None) -> str:
    """An atomic amount as its wire form; None (no limit) is the empty string."""
    return "" if value is None else str(value)


def pay_command(request: pb.PayRequest, answer_by: float | None = None) -> PayCommand:
    """The domain command for one PayRequest; ``answer_by`` is its deadline (monotonic)."""
    return PayCommand(
        idempotency_key=request.idempotency_key,
        method=request.method,
        url=request.url,
        payment_required=request.payment_required,
        body=request.body,
        labels=dict(request.labels),
        answer_by=answer_by,
    )


def pay_response(receipt: PayReceipt) -> pb.PayResponse:
    """The wire form of a PayReceipt."""
    return pb.PayResponse(
        payment_id=receipt.payment_id,
        header_name=receipt.header_name,
        header_value=receipt.header_value,
        amount=_amount(receipt.amount),
        payee=receipt.payee,
        network=receipt.network,
        valid_before=receipt.valid_before,
        reused=receipt.reused,
    )


def budget_window(state: WindowState) -> pb.BudgetWindow:
    """The wire form of one window; an unlimited limit/remaining is ""."""
    return pb.BudgetWindow(
        window=state.window,
        limit=_amount(state.limit),
        spent=_amount(state.spent),
        remaining=_amount(state.remaining),
    )


def budget_response(state: BudgetState) -> pb.GetBudgetResponse:
    """The wire form of a BudgetState."""
    return pb.GetBudgetResponse(
        client=state.client,
        windows=[budget_window(w) for w in state.windows],
        frozen=state.frozen,
        hosts=list(state.hosts),
        global_hosts=list(state.global_hosts),
        scoped_windows=[budget_window(w) for w in state.scoped],
        rate_windows=[
            pb.RateWindow(window=r.window, per=r.per, limit=r.limit, count=r.count)
            for r in state.rates
        ],
    )


def payment_message(view: PaymentView) -> pb.Payment:
    """The wire form of one ledger row."""
    return pb.Payment(
        payment_id=view.payment_id,
        client=view.client,
        status=view.status,
        amount=_amount(view.amount),
        payee=view.payee,
        network=view.network,
        url=view.url,
        created_at=view.created_at,
        valid_before=view.valid_before,
        nonce=view.nonce,
        labels=dict(view.labels),
    )


def list_limit(request: pb.ListPaymentsRequest) -> int:
    """The requested page size: 0 means the default, negative is refused."""
    if request.limit < 0:
        raise InvalidRequestError("limit must not be negative", {"limit": str(request.limit)})
    return request.limit or DEFAULT_LIST_LIMIT


def report_query(request: pb.GetSpendReportRequest) -> ReportQuery:
    """The domain query of a GetSpendReportRequest (0 means no bound; client is the caller's)."""
    if request.since_ms < 0 or request.until_ms < 0:
        raise InvalidRequestError("since_ms and until_ms must not be negative")
    return ReportQuery(
        since_ms=request.since_ms or None,
        until_ms=request.until_ms or None,
        group_by=tuple(request.group_by),
    )


def tally_message(tally: Tally) -> pb.Tally:
    """The wire form of a count and an amount."""
    return pb.Tally(count=tally.count, amount=_amount(tally.amount))


def spend_row(row: ReportRow) -> pb.SpendRow:
    """The wire form of one report row."""
    return pb.SpendRow(
        key=list(row.key),
        statuses={b: tally_message(row.tally(b)) for b in BUCKETS},
        confirmed=tally_message(row.confirmed),
        unconfirmed=tally_message(row.unconfirmed),
        authorized=_amount(row.authorized),
    )


def spend_report_response(caller: Caller, report: SpendReport) -> pb.GetSpendReportResponse:
    """The wire form of a SpendReport."""
    return pb.GetSpendReportResponse(
        client=caller.name,
        group_by=list(report.query.group_by),
        rows=[spend_row(r) for r in report.rows],
        totals=spend_row(report.totals),
        refusals=[
            pb.RefusalCount(reason=r.reason, rule=r.rule, count=r.count, amount=_amount(r.amount))
            for r in report.refusals
        ],
        since_ms=report.query.since_ms or 0,
        until_ms=report.query.until_ms or 0,
        generated_at_ms=report.generated_at_ms,
    )


def approval_message(held: Approval) -> pb.Approval:
    """The wire form of one approval."""
    return pb.Approval(
        approval_id=held.approval_id,
        payment_id=held.payment_id,
        client=held.client,
        status=held.status,
        amount=_amount(held.amount),
        payee=held.payee,
        url=held.url,
        network=held.network,
        created_at_ms=held.created_at_ms,
        expires_at_ms=held.expires_at_ms,
        threshold=_amount(held.threshold),
        threshold_scope=held.threshold_scope,
        decided_at_ms=held.decided_at_ms or 0,
        decided_by=held.decided_by,
        note=held.note,
        labels=dict(held.labels),
    )


DECISIONS = {"approve": True, "deny": False}


class WalletServicer(pb_grpc.WalletServiceServicer):
    """Serves walletd.v1.WalletService by calling a WalletApi (and an ApprovalApi)."""

    def __init__(self, api: WalletApi, approvals: ApprovalApi | None = None) -> None:
        self._api = api
        self._approvals = approvals

    def _desk(self) -> ApprovalApi:
        if self._approvals is None:
            raise WalletdError("approvals are not served by this daemon")
        return self._approvals

    def _call(
        self,
        context: grpc.ServicerContext,
        method: str,
        handler: Callable[[Caller], R],
        *,
        remembered: bool = False,
    ) -> R:
        """Authenticate, authorize and run ``handler``; errors become rich statuses.

        ``remembered`` lets the caller be identified from memory (``WalletApi.identify``):
        only for a handler whose own transaction refuses a revoked client (Pay,
        ReportOutcome).
        ``abort_with_status`` raises, so the return after it is never reached; the
        abort happens outside the ``try`` so its own exception is not caught.
        """
        who = self._api.identify if remembered else self._api.authenticate
        try:
            caller = who(bearer_token(context))
            check_scope(caller, method)
            return handler(caller)
        except Exception as exc:  # every exception must become a status
            status = status_for_exception(exc)
        context.abort_with_status(status)

    def Pay(self, request: pb.PayRequest, context: grpc.ServicerContext) -> pb.PayResponse:
        """Pay one 402 demand (before the caller's deadline, if it set one)."""
        left = context.time_remaining()
        cmd = pay_command(request, None if left is None else time.monotonic() + left)
        return self._call(
            context,
            permissions.PAY,
            lambda caller: pay_response(self._api.pay(caller, cmd)),
            remembered=True,
        )

    def ReportOutcome(
        self, request: pb.ReportOutcomeRequest, context: grpc.ServicerContext
    ) -> pb.ReportOutcomeResponse:
        """Record what the client saw after paying."""

        def handler(caller: Caller) -> pb.ReportOutcomeResponse:
            status = self._api.report_outcome(
                caller, request.payment_id, request.http_status, request.payment_response
            )
            return pb.ReportOutcomeResponse(status=status)

        return self._call(context, permissions.REPORT_OUTCOME, handler, remembered=True)

    def GetBudget(
        self, request: pb.GetBudgetRequest, context: grpc.ServicerContext
    ) -> pb.GetBudgetResponse:
        """What remains in each of the caller's windows."""
        return self._call(
            context,
            permissions.GET_BUDGET,
            lambda caller: budget_response(self._api.get_budget(caller)),
        )

    def ListPayments(
        self, request: pb.ListPaymentsRequest, context: grpc.ServicerContext
    ) -> pb.ListPaymentsResponse:
        """The caller's own payments, newest first."""

        def handler(caller: Caller) -> pb.ListPaymentsResponse:
            views = self._api.list_payments(caller, list_limit(request))
            return pb.ListPaymentsResponse(payments=[payment_message(v) for v in views])

        return self._call(context, permissions.LIST_PAYMENTS, handler)

    def GetSpendReport(
        self, request: pb.GetSpendReportRequest, context: grpc.ServicerContext
    ) -> pb.GetSpendReportResponse:
        """The caller's own spend report."""

        def handler(caller: Caller) -> pb.GetSpendReportResponse:
            report = self._api.spend_report(caller, report_query(request))
            return spend_report_response(caller, report)

        return self._call(context, permissions.GET_SPEND_REPORT, handler)

    def ListApprovals(
        self, request: pb.ListApprovalsRequest, context: grpc.ServicerContext
    ) -> pb.ListApprovalsResponse:
        """Approvals, newest first (scope approve)."""

        def handler(caller: Caller) -> pb.ListApprovalsResponse:
            if request.limit < 0:
                raise InvalidRequestError("limit must not be negative")
            found = self._desk().list(request.status or None, request.limit or DEFAULT_LIST_LIMIT)
            return pb.ListApprovalsResponse(approvals=[approval_message(a) for a in found])

        return self._call(context, permissions.LIST_APPROVALS, handler)

    def DecideApproval(
        self, request: pb.DecideApprovalRequest, context: grpc.ServicerContext
    ) -> pb.Approval:
        """Approve or deny one pending approval (scope approve; never one's own)."""

        def handler(caller: Caller) -> pb.Approval:
            if request.decision not in DECISIONS:
                raise InvalidRequestError(
                    "decision must be 'approve' or 'deny'", {"decision": request.decision[:20]}
                )
            held = self._desk().decide(
                caller, request.approval_id, DECISIONS[request.decision], request.note
            )
            return approval_message(held)

        return self._call(context, permissions.DECIDE_APPROVAL, handler)

    def _stream_caller(self, context: grpc.ServicerContext, method: str) -> Caller:
        caller = self._api.authenticate(bearer_token(context))
        check_scope(caller, method)
        return caller

    def WatchApprovals(
        self, request: pb.WatchApprovalsRequest, context: grpc.ServicerContext
    ) -> Iterator[pb.ApprovalEvent]:
        """Every waiting approval, then each new one and each decision (scope approve)."""
        try:
            self._stream_caller(context, permissions.WATCH_APPROVALS)
            for kind, held in self._desk().watch(context.is_active):
                yield pb.ApprovalEvent(kind=kind, approval=approval_message(held))
            return
        except Exception as exc:  # every exception must become a status
            status = status_for_exception(exc)
        context.abort_with_status(status)

    def AwaitApproval(
        self, request: pb.AwaitApprovalRequest, context: grpc.ServicerContext
    ) -> Iterator[pb.Approval]:
        """The caller's own approval once decided, or at the timeout (scope pay).

        A stream of one message, so the wait holds no worker slot (``rpc.intake``).
        """
        try:
            caller = self._stream_caller(context, permissions.AWAIT_APPROVAL)
            if request.timeout_ms < 0:
                raise InvalidRequestError("timeout_ms must not be negative")
            held = self._desk().await_decision(
                caller, request.approval_id, request.timeout_ms / 1000
            )
            yield approval_message(held)
            return
        except Exception as exc:  # every exception must become a status
            status = status_for_exception(exc)
        context.abort_with_status(status)
