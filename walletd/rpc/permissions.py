"""Which token scopes may call which RPC.

Kept as data, next to nothing else, so a test can check that every method of the
generated service has an entry: a new RPC without one is refused to everybody
(fail closed) and fails that test, rather than being open by accident.
"""

from __future__ import annotations

from collections.abc import Mapping

SERVICE_NAME = "walletd.v1.WalletService"
"""Full proto name of the wallet service (health and reflection use it too)."""

SCOPE_PAY = "pay"
SCOPE_READ = "read"
SCOPE_APPROVE = "approve"
"""Decide payments held above an approval threshold (never the caller's own)."""

PAY = f"/{SERVICE_NAME}/Pay"
REPORT_OUTCOME = f"/{SERVICE_NAME}/ReportOutcome"
GET_BUDGET = f"/{SERVICE_NAME}/GetBudget"
LIST_PAYMENTS = f"/{SERVICE_NAME}/ListPayments"
GET_SPEND_REPORT = f"/{SERVICE_NAME}/GetSpendReport"
LIST_APPROVALS = f"/{SERVICE_NAME}/ListApprovals"
DECIDE_APPROVAL = f"/{SERVICE_NAME}/DecideApproval"
WATCH_APPROVALS = f"/{SERVICE_NAME}/WatchApprovals"
AWAIT_APPROVAL = f"/{SERVICE_NAME}/AwaitApproval"

METHOD_SCOPES: Mapping[str, frozenset[str]] = {
    PAY: frozenset({SCOPE_PAY}),
    REPORT_OUTCOME: frozenset({SCOPE_PAY}),
    GET_BUDGET: frozenset({SCOPE_PAY, SCOPE_READ}),
    LIST_PAYMENTS: frozenset({SCOPE_READ}),
    GET_SPEND_REPORT: frozenset({SCOPE_READ}),
    LIST_APPROVALS: frozenset({SCOPE_APPROVE}),
    DECIDE_APPROVAL: frozenset({SCOPE_APPROVE}),
    WATCH_APPROVALS: frozenset({SCOPE_APPROVE}),
    AWAIT_APPROVAL: frozenset({SCOPE_PAY}),
}
"""Full method name -> the scopes of which the caller needs at least one."""


def allowed(method: str, scopes: frozenset[str]) -> bool:
    """True when a token with ``scopes`` may call ``method``; unknown methods never."""
    needed = METHOD_SCOPES.get(method)
    return needed is not None and not needed.isdisjoint(scopes)
