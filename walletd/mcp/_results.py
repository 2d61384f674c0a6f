"""Tool results as an agent reads them: what was paid, or why nothing was.

Every paid result carries one ``payment`` object (amount in USD and in atomic
units, payee, network, payment id, ledger status, settlement transaction) both
in its structured content and as one line of text, so a model can reason about
cost. A failure is a tool error (``isError``): its text names the reason and,
for a budget refusal, the window and its limit, spent and requested amounts in
USD; for a rate limit, the window, its limit, the count and the period. A call
held for human approval starts with ``awaiting approval apr_...`` and carries the
approval's facts; a denied one starts with ``denied by <approver>``. A call whose
earlier attempt was paid but never answered says so, with that payment.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from mcp.types import CallToolResult, ContentBlock, TextContent

from walletd.client import AsyncWalletClient
from walletd.domain.money import format_usd
from walletd.domain.payment import PaymentView, PayReceipt
from walletd.errors import (
    ApprovalDeniedError,
    ApprovalRequiredError,
    PaidAnswerLostError,
    RateLimitedError,
    RefusedError,
    WalletdError,
)

STATUS_LOOKBACK = 100
"""How many of the client's newest payments are searched for one payment."""
USD_DETAILS = ("limit", "spent", "requested", "available", "outstanding", "asked")
"""Atomic-unit details of a refusal that are also given in USD."""


def payment_facts(
    receipt: PayReceipt, status: str, settlement: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """The ``payment`` object of a paid result."""
    return {
        "amount_usd": format_usd(receipt.amount),
        "amount_atomic": str(receipt.amount),
        "payee": receipt.payee,
        "network": receipt.network,
        "payment_id": receipt.payment_id,
        "status": status,
        "transaction": str((settlement or {}).get("transaction", "")),
        "reused": receipt.reused,
    }


def view_facts(view: PaymentView) -> dict[str, Any]:
    """The ``payment`` object of a ledger row (a payment known only by its id)."""
    return {
        "amount_usd": format_usd(view.amount),
        "amount_atomic": str(view.amount),
        "payee": view.payee,
        "network": view.network,
        "payment_id": view.payment_id,
        "status": view.status,
        "transaction": "",
        "reused": False,
    }


async def ledger_facts(wallet: Callable[[], AsyncWalletClient], payment_id: str) -> dict[str, Any]:
    """What the client's ledger says of ``payment_id`` (only its id if it cannot be read)."""
    unknown: dict[str, Any] = {"payment_id": payment_id, "status": "signed"}
    try:
        rows = await wallet().list_payments(STATUS_LOOKBACK)
    except WalletdError:  # a client without the read scope, or the daemon away
        return unknown
    row = next((r for r in rows if r.payment_id == payment_id), None)
    return unknown if row is None else view_facts(row)


def payment_line(payment: Mapping[str, Any] | None) -> str:
    """One sentence: what was paid (or that nothing was)."""
    if payment is None:
        return "walletd paid nothing for this call."
    line = (
        f"walletd paid {payment.get('amount_usd', '?')} USD to {payment.get('payee', '?')}, "
        f"payment {payment.get('payment_id', '?')}, status {payment.get('status', '?')}"
    )
    if payment.get("transaction"):
        line += f", tx {payment['transaction']}"
    if payment.get("reused"):
        line += " (reused: no new payment)"
    return line + "."


def tool_result(
    text: str,
    data: dict[str, Any],
    payment: Mapping[str, Any] | None,
    extra: Sequence[ContentBlock] = (),
) -> CallToolResult:
    """A successful result: the text, then what was paid; ``data`` + ``payment`` structured."""
    body = f"{text}\n\n{payment_line(payment)}" if text else payment_line(payment)
    content: list[ContentBlock] = [TextContent(type="text", text=body), *extra]
    return CallToolResult(content=content, structuredContent={**data, "payment": payment})


def error_facts(err: WalletdError) -> dict[str, Any]:
    """The ``error`` object of a failed call: reason, message, details, amounts in USD."""
    facts: dict[str, Any] = {
        "reason": err.reason,
        "message": err.message,
        "refused": isinstance(err, RefusedError),
        "details": dict(err.details),
    }
    if isinstance(err, RateLimitedError):
        return facts  # its limit and count are numbers of payments, not amounts
    for key in USD_DETAILS:
        value = err.details.get(key, "")
        if value.isascii() and value.isdigit():
            facts[f"{key}_usd"] = format_usd(int(value))
    return facts


def iso_ms(ms: int) -> str:
    """Unix ms as an ISO 8601 UTC time, to the second."""
    return datetime.fromtimestamp(ms / 1000, tz=UTC).isoformat(timespec="seconds")


def refusal_line(err: WalletdError) -> str:
    """The first line of a tool error: what an agent (or its operator) must know first."""
    details = err.details
    if isinstance(err, ApprovalRequiredError):
        expires = iso_ms(err.expires_at_ms) if err.expires_at_ms else "?"
        return (
            f"awaiting approval {err.approval_id}: {details.get('amount_usd', '?')} USD to "
            f"{err.payee}, expires {expires}; an operator runs `walletd approve "
            f"{err.approval_id}` (or `walletd deny {err.approval_id}`). Nothing is signed yet "
            "and the amount is reserved in the budget. Call this tool again with exactly the "
            "same arguments to get the decision: the same call is never paid twice."
        )
    if isinstance(err, ApprovalDeniedError):
        what = f"approval {err.approval_id}"
        if err.status == "denied":
            who = details.get("decided_by") or "an operator"
            return (
                f"denied by {who}: {err.note or '(no note)'} ({what}); nothing was signed "
                "or paid. Calling again asks for a new approval."
            )
        return f"{what} {err.status or 'expired'} undecided; nothing was signed or paid."
    if isinstance(err, PaidAnswerLostError):
        where = f" in {err.tx}" if err.tx else ""
        return (
            f"walletd paid, the answer was lost: {err.reason}: payment {err.payment_id} settled "
            f"on chain{where} for an earlier attempt of this call, whose answer never arrived; "
            "nothing more was paid."
        )
    if isinstance(err, RateLimitedError):
        return (
            f"walletd refused, nothing was paid: RATE_LIMITED: {err.window or '?'} allows "
            f"{err.limit} payments per {err.per or '?'}, {err.count} already made; "
            f"{err.message}"
        )
    head = "refused, nothing was paid" if isinstance(err, RefusedError) else "failed"
    return f"walletd {head}: {err.reason}: {err.message}"


def approval_facts(err: ApprovalRequiredError) -> dict[str, Any]:
    """The held payment's facts, as the structured content of an awaiting-approval error."""
    return {
        "approval_id": err.approval_id,
        "payment_id": err.payment_id,
        "amount_usd": err.amount_usd,
        "payee": err.payee,
        "url": err.url,
        "expires": iso_ms(err.expires_at_ms) if err.expires_at_ms else "",
        "expires_at_ms": err.expires_at_ms,
        "approve_command": f"walletd approve {err.approval_id}",
    }


def error_result(err: WalletdError, payment: Mapping[str, Any] | None = None) -> CallToolResult:
    """A tool error naming the reason (and, for a budget, the limit in USD)."""
    text = refusal_line(err)
    if isinstance(err, ApprovalRequiredError | ApprovalDeniedError):
        text += f"\n{err.reason}: {err.message}"
    if payment is not None:
        text += f"\n{payment_line(payment)} Calling again pays again."
    doc: dict[str, Any] = {"error": error_facts(err), "payment": payment}
    if isinstance(err, ApprovalRequiredError):
        doc.update(approval_facts(err))
    return CallToolResult(
        content=[TextContent(type="text", text=text)], structuredContent=doc, isError=True
    )


def plain_error(reason: str, message: str, **details: str) -> CallToolResult:
    """A tool error that did not come from walletd (an upstream, a transport)."""
    doc = {"error": {"reason": reason, "message": message, "refused": False, "details": details}}
    return CallToolResult(
        content=[TextContent(type="text", text=f"{reason}: {message}")],
        structuredContent=doc,
        isError=True,
    )


def same_call_until(result: CallToolResult, until_ms: int, sent: bool) -> CallToolResult:
    """An interrupted call's tool error, saying that the same call again is not paid twice."""
    until = iso_ms(until_ms)
    note = (
        "If the tool is paid, this call may have been paid: the ledger follows its payment "
        "until it settles or expires. "
        if sent
        else ""
    ) + (
        f"Calling the tool again with exactly the same arguments (until {until}) is the same "
        "call: it reuses any payment made for it and is never paid twice."
    )
    content: list[ContentBlock] = [*result.content, TextContent(type="text", text=note)]
    doc = dict(result.structuredContent or {})
    doc["same_call_until"] = until
    return result.model_copy(update={"content": content, "structuredContent": doc})


def dumps(data: Any) -> str:
    """Compact JSON for a result's text."""
    return json.dumps(data, sort_keys=True, separators=(",", ":"))
