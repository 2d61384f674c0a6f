"""Tool results as an agent reads them: what was paid, or why nothing was.

Every paid result carries one ``payment`` object (amount in USD and in atomic
units, payee, network, payment id, ledger status, settlement transaction) both
in its structured content and as one line of text, so a model can reason about
cost. A failure is a tool error (``isError``): its text names the reason and,
for a budget refusal, the limit, spent and requested amounts in USD.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from mcp.types import CallToolResult, ContentBlock, TextContent

from walletd.client import AsyncWalletClient
from walletd.domain.money import format_usd
from walletd.domain.payment import PaymentView, PayReceipt
from walletd.errors import RefusedError, WalletdError

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
    for key in USD_DETAILS:
        value = err.details.get(key, "")
        if value.isascii() and value.isdigit():
            facts[f"{key}_usd"] = format_usd(int(value))
    return facts


def error_result(err: WalletdError, payment: Mapping[str, Any] | None = None) -> CallToolResult:
    """A tool error naming the reason (and, for a budget, the limit in USD)."""
    head = "refused, nothing was paid" if isinstance(err, RefusedError) else "failed"
    text = f"walletd {head}: {err.reason}: {err.message}"
    if payment is not None:
        text += f"\n{payment_line(payment)} Calling again pays again."
    doc = {"error": error_facts(err), "payment": payment}
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


def dumps(data: Any) -> str:
    """Compact JSON for a result's text."""
    return json.dumps(data, sort_keys=True, separators=(",", ":"))
