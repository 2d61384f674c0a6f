"""Authorization matrix: every RPC of walletd.v1.WalletService against every bad credential.

Rows are the RPCs, columns the cases, cells what happened: the refusal's reason,
or, where the call is allowed by design, what it was allowed to see (``OWN_ONLY``,
``ISOLATED``). The observed matrix is printed (``pytest -s``) and must equal
:data:`EXPECTED`. "No token" and "malformed metadata" go through a raw gRPC stub,
since WalletClient always sends a well-formed bearer header when it has a token.

Cases:
  no_token       no ``authorization`` metadata at all
  malformed      ``authorization: Basic ...`` (not a bearer token)
  wrong_token    a well-formed token walletd never issued
  revoked_token  the token of a client revoked with `walletd client revoke`
  wrong_scope    a token without the scope the RPC needs (GetBudget takes either)
  other_client   another client's payment id (ReportOutcome), idempotency key (Pay),
                 payments (ListPayments) or budget (GetBudget), or approval (AwaitApproval);
                 for DecideApproval, an approver deciding its *own* held payment
  unknown_id     a payment or approval id that does not exist, to compare with other_client

The approval RPCs need the ``approve`` scope (AwaitApproval, the payer's wait: ``pay``).
Approvers see every client's approvals by design (ListApprovals, WatchApprovals).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest

from tests.adversarial.demands import URL, b64, entry, v2_doc
from tests.plugins.adversarial import add_clients
from tests.plugins.daemon import Daemon, WalletHome
from walletd.client import WalletClient
from walletd.client._errors import map_rpc_errors
from walletd.domain.payment import PaymentStatus
from walletd.errors import ApprovalRequiredError, WalletdError
from walletd.v1 import wallet_pb2 as pb, wallet_pb2_grpc as pb_grpc

RPCS = (
    "Pay", "ReportOutcome", "GetBudget", "ListPayments", "GetSpendReport", "ListApprovals",
    "DecideApproval", "WatchApprovals", "AwaitApproval",
)  # fmt: skip
CASES = (
    "no_token",
    "malformed",
    "wrong_token",
    "revoked_token",
    "wrong_scope",
    "other_client",
    "unknown_id",
)
U, P, NF, NA = "UNAUTHENTICATED", "PERMISSION_DENIED", "NOT_FOUND", "n/a"
EXPECTED: dict[str, dict[str, str]] = {
    "Pay": dict(zip(CASES, (U, U, U, U, P, "ISOLATED", NA), strict=True)),
    "ReportOutcome": dict(zip(CASES, (U, U, U, U, P, NF, NF), strict=True)),
    "GetBudget": dict(zip(CASES, (U, U, U, U, NA, "OWN_ONLY", NA), strict=True)),
    "ListPayments": dict(zip(CASES, (U, U, U, U, P, "OWN_ONLY", NA), strict=True)),
    "GetSpendReport": dict(zip(CASES, (U, U, U, U, P, "OWN_ONLY", NA), strict=True)),
    "ListApprovals": dict(zip(CASES, (U, U, U, U, P, NA, NA), strict=True)),
    "DecideApproval": dict(zip(CASES, (U, U, U, U, P, P, NF), strict=True)),
    "WatchApprovals": dict(zip(CASES, (U, U, U, U, P, NA, NA), strict=True)),
    "AwaitApproval": dict(zip(CASES, (U, U, U, U, P, NF, NF), strict=True)),
}
UNKNOWN_ID = "pay_" + "0" * 24
UNKNOWN_APPROVAL = "apr_" + "0" * 24


@dataclass
class Cast:
    """The clients of the matrix, all on one daemon."""

    home: WalletHome
    owner: WalletClient
    other: WalletClient
    reader: WalletClient
    payer_only: WalletClient
    revoked: WalletClient
    stranger: WalletClient
    owner_payment: str
    owner_key: str
    holder: WalletClient
    held_approval: str


@pytest.fixture(scope="module")
def cast(module_wallet_home: WalletHome, module_daemon: Daemon) -> Iterator[Cast]:
    home = module_wallet_home
    tokens = add_clients(home, {"owner": "pay,read", "other": "pay,read", "reader": "read",
                                "payer-only": "pay", "revoked": "pay,read",
                                "holder": "pay,approve"})  # fmt: skip
    home.admin("budget", "set", "holder", "--approve-above", "0")  # its payments are held

    def client(token: Path | None = None, raw: str | None = None) -> WalletClient:
        return WalletClient(socket=home.socket, token_file=token, token=raw, timeout=30)

    owner = client(tokens["owner"])
    revoked = client(tokens["revoked"])
    revoked.get_budget()  # it worked before the revocation
    # and paid: nothing the daemon holds from that Pay may outlive the revocation below
    revoked.pay("authz-revoked-0", "POST", URL, payment_required=b64(v2_doc()))
    home.admin("client", "revoke", "revoked")  # the real operator command, daemon running
    key = "authz-owner-1"
    receipt = owner.pay(key, "POST", URL, payment_required=b64(v2_doc()))
    clients = [owner, client(tokens["other"]), client(tokens["reader"]),
               client(tokens["payer-only"]), revoked, client(raw="wdt_" + "A" * 43)]  # fmt: skip
    holder = client(tokens["holder"])
    with pytest.raises(ApprovalRequiredError) as held:
        holder.pay("authz-held", "POST", URL, payment_required=b64(v2_doc()))
    yield Cast(home, *clients, owner_payment=receipt.payment_id, owner_key=key,  # type: ignore[arg-type, misc]
               holder=holder, held_approval=held.value.approval_id)  # fmt: skip
    for c in [*clients, holder]:
        c.close()


def _raw_call(
    home: WalletHome, rpc: str, request: object, metadata: tuple[tuple[str, str], ...]
) -> None:
    with grpc.insecure_channel(f"unix://{home.socket}") as channel:
        stub = pb_grpc.WalletServiceStub(channel)
        with map_rpc_errors():
            answer = getattr(stub, rpc)(request, metadata=metadata, timeout=30)
            if rpc in STREAMS:
                next(answer)  # the first message, or the refusal
                answer.cancel()


STREAMS = frozenset({"WatchApprovals", "AwaitApproval"})


def _requests(cast: Cast) -> dict[str, object]:
    return {
        "Pay": pb.PayRequest(
            idempotency_key="authz-raw", method="POST", url=URL, payment_required=b64(v2_doc())
        ),
        "ReportOutcome": pb.ReportOutcomeRequest(
            payment_id=cast.owner_payment, http_status=402, payment_response=""
        ),
        "GetBudget": pb.GetBudgetRequest(),
        "ListPayments": pb.ListPaymentsRequest(limit=10),
        "GetSpendReport": pb.GetSpendReportRequest(),
        "ListApprovals": pb.ListApprovalsRequest(),
        "DecideApproval": pb.DecideApprovalRequest(
            approval_id=cast.held_approval, decision="approve"
        ),
        "WatchApprovals": pb.WatchApprovalsRequest(),
        "AwaitApproval": pb.AwaitApprovalRequest(approval_id=cast.held_approval, timeout_ms=1),
    }


def _as_client(wallet: WalletClient, rpc: str, cast: Cast) -> Callable[[], object]:
    """The RPC made through the real client, on the owner's payment where one is taken."""
    calls: dict[str, Callable[[], object]] = {
        "Pay": lambda: wallet.pay("authz-x", "POST", URL, payment_required=b64(v2_doc())),
        "ReportOutcome": lambda: wallet.report_outcome(cast.owner_payment, 402),
        "GetBudget": wallet.get_budget,
        "ListPayments": wallet.list_payments,
        "GetSpendReport": wallet.get_spend_report,
        "ListApprovals": wallet.list_approvals,
        "DecideApproval": lambda: wallet.approve(cast.held_approval),
    }
    if rpc in STREAMS:  # no public client method: the raw stream with this client's token
        request = _requests(cast)[rpc]
        return lambda: _raw_call(cast.home, rpc, request, wallet._metadata)
    return calls[rpc]


def _refusal(call: Callable[[], object]) -> str:
    try:
        call()
    except WalletdError as err:
        return err.reason
    return "ALLOWED"


def _other_client_cell(cast: Cast, rpc: str) -> str:
    other = cast.other
    if rpc == "Pay":  # the owner's idempotency key, another demand: a new payment of its own
        receipt = other.pay(cast.owner_key, "POST", URL, payment_required=b64(v2_doc(entry("1"))))
        mine = {p.payment_id for p in cast.owner.list_payments(limit=1000)}
        return "ISOLATED" if not receipt.reused and receipt.payment_id not in mine else "LEAKED"
    if rpc == "ReportOutcome":
        return _refusal(lambda: other.report_outcome(cast.owner_payment, 402))
    if rpc == "GetBudget":
        return "OWN_ONLY" if other.get_budget().client == "other" else "LEAKED"
    if rpc == "GetSpendReport":
        report = other.get_spend_report(group_by=["client"])
        return "OWN_ONLY" if "owner" not in repr(report) else "LEAKED"
    if rpc in ("ListApprovals", "WatchApprovals"):  # approvers see every client's, by design
        return NA
    if rpc == "DecideApproval":  # its own held payment, though it may approve
        return _refusal(lambda: cast.holder.approve(cast.held_approval))
    if rpc == "AwaitApproval":  # the holder's approval, awaited by another payer
        return _refusal(_as_client(other, rpc, cast))
    seen = {p.payment_id for p in other.list_payments(limit=1000)}
    return "OWN_ONLY" if cast.owner_payment not in seen else "LEAKED"


def _cell(cast: Cast, rpc: str, case: str) -> str:
    requests = _requests(cast)
    if case == "no_token":
        return _refusal(lambda: _raw_call(cast.home, rpc, requests[rpc], ()))
    if case == "malformed":
        meta = (("authorization", "Basic b3duZXI6cGFzc3dvcmQ="),)
        return _refusal(lambda: _raw_call(cast.home, rpc, requests[rpc], meta))
    if case == "wrong_token":
        return _refusal(_as_client(cast.stranger, rpc, cast))
    if case == "revoked_token":
        return _refusal(_as_client(cast.revoked, rpc, cast))
    if case == "wrong_scope":
        if rpc == "GetBudget":  # pay or read may read their own budget: no token lacks both
            return NA
        if rpc in ("ListApprovals", "DecideApproval", "WatchApprovals"):
            return _refusal(_as_client(cast.owner, rpc, cast))  # pay and read, no approve
        wallet = cast.payer_only if rpc in ("ListPayments", "GetSpendReport") else cast.reader
        return _refusal(_as_client(wallet, rpc, cast))
    if case == "other_client":
        return _other_client_cell(cast, rpc)
    if rpc == "DecideApproval":
        return _refusal(lambda: cast.holder.approve(UNKNOWN_APPROVAL))
    if rpc == "AwaitApproval":
        request = pb.AwaitApprovalRequest(approval_id=UNKNOWN_APPROVAL, timeout_ms=1)
        return _refusal(lambda: _raw_call(cast.home, rpc, request, cast.holder._metadata))
    if rpc != "ReportOutcome":
        return NA
    return _refusal(lambda: cast.owner.report_outcome(UNKNOWN_ID, 402))


def render(matrix: dict[str, dict[str, str]]) -> str:
    lines = ["| RPC | " + " | ".join(CASES) + " |", "|---" * (len(CASES) + 1) + "|"]
    lines += [f"| {rpc} | " + " | ".join(matrix[rpc][c] for c in CASES) + " |" for rpc in RPCS]
    return "\n".join(lines)


def test_every_rpc_is_in_the_matrix() -> None:
    methods = pb.DESCRIPTOR.services_by_name["WalletService"].methods_by_name
    assert set(methods) == set(RPCS)


def test_authorization_matrix(cast: Cast) -> None:
    matrix = {rpc: {case: _cell(cast, rpc, case) for case in CASES} for rpc in RPCS}
    print(f"\n\nAuthorization matrix:\n{render(matrix)}")
    assert matrix == EXPECTED, render(matrix)
    # Nothing a refused or foreign call did touched the owner's payment or budget.
    (row,) = [p for p in cast.owner.list_payments(limit=1000)]
    assert (row.payment_id, row.status) == (cast.owner_payment, PaymentStatus.SIGNED)
    assert next(w.spent for w in cast.owner.get_budget().windows if w.window == "daily") == 3000
    # The other client's only row is its own payment under the reused key.
    assert [(p.client, p.amount) for p in cast.other.list_payments(limit=1000)] == [("other", 1)]
