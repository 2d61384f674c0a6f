"""PayingMCPSession: an MCP client session whose tool calls pay x402 demands through walletd.

x402 over MCP (the transport the reference ``x402.mcp`` implements): a paid tool
first answers a ``tools/call`` with a *payment-required result* (``isError`` and
the PaymentRequired object in ``structuredContent``, or as JSON in its text
content; x402 v2 or v1), or with a JSON-RPC error of code 402 whose ``data`` is
the PaymentRequired. The client calls the tool again with the payment payload
*object* in ``params._meta["x402/payment"]`` (the JSON that the HTTP
``PAYMENT-SIGNATURE`` header carries base64-encoded), and the server answers with
the settlement in ``result._meta["x402/payment-response"]``.

This session keeps the rules of the HTTP flow (``walletd.client._auth``):

* One idempotency key per logical tool call (given, or a new ``req_<uuid4hex>``).
  A call retried with the same key (after a timeout, say) gets the same signed
  authorization back from the daemon, so it settles at most once.
* At most one payment per call: a server that answers the paid call with another
  payment-required result is not paid again; :class:`MCPPaymentRejectedError`.
* A refusal of the daemon (budget, policy, a malformed or hostile demand) raises
  its typed ``walletd.errors`` error, and nothing is signed.
* The outcome is reported to the daemon (``ReportOutcome``) best effort; only
  PaidAnswerLostError (the chain shows the authorization already used: the call
  was paid and its answer lost) is raised.

What policy sees: the method ``POST`` and a resource URL that names the server and
the tool, :func:`tool_resource_url` (``<server URL>/tools/<tool>`` for a server
over HTTP, ``mcp+stdio://<name>/tools/<tool>`` for a local one). A client's host
allowlist applies to the server's host (or the stdio server's name). Each payment
is labelled ``tool`` and ``mcp_server``.

The logic is one plan of effects (call the tool, pay, report), run by ``arun``;
MCP's ClientSession is asyncio only, so there is no blocking twin.
"""

from __future__ import annotations

import base64
import json
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, NamedTuple
from urllib.parse import quote, urlsplit

from mcp import ClientSession, McpError
from mcp.types import CallToolResult, TextContent

from walletd.client._auth import decode_b64_json, new_idempotency_key
from walletd.client._effects import AsyncClosing, Plan, arun
from walletd.client._settings import WalletdSettings
from walletd.client._wallet import AsyncWalletClient
from walletd.domain.demand import MAX_DEMAND_BYTES
from walletd.domain.money import format_usd
from walletd.domain.payment import PayReceipt
from walletd.errors import Detail, InvalidDemandError, PaidAnswerLostError, WalletdError

log = logging.getLogger("walletd.client.mcp")

PAYMENT_META_KEY = "x402/payment"
"""``params._meta`` key of the payment payload on a paid ``tools/call``."""
PAYMENT_RESPONSE_META_KEY = "x402/payment-response"
"""``result._meta`` key of the server's settlement answer."""
PAYMENT_REQUIRED_CODE = 402
"""The JSON-RPC error code of a payment-required error (its ``data`` is the demand)."""
METHOD = "POST"
"""The method policy sees for a tool call (over HTTP, MCP requests are POSTs)."""
STDIO_SCHEME = "mcp+stdio"
TOOL_LABEL = "tool"
SERVER_LABEL = "mcp_server"
MAX_LABEL_VALUE = 200
MAX_DEMAND_TEXT = 4 * MAX_DEMAND_BYTES
"""A demand text longer than this is refused here, unsent (the daemon's own limit is lower)."""

_STDIO_NAME = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9.-]{0,62})")
_VERSION_MARK = '"x402Version"'


class MCPPaymentRejectedError(WalletdError):
    """The server answered a paid tool call with another payment demand; it is not paid twice.

    ``details``: ``payment_id``, ``tool``, ``server``, ``payment_reason`` (the
    server's words, e.g. ``invalid_exact_evm_nonce_already_used`` when a retried
    call had already settled), ``reused`` ("true" when walletd handed back the
    authorization of an earlier attempt of the same call).
    """

    reason = "MCP_PAYMENT_REJECTED"
    grpc_code = "FAILED_PRECONDITION"

    payment_id = Detail("walletd's id of the payment sent with the call.")
    tool = Detail("The tool that was called.")
    server = Detail("The MCP server, as given to the session.")
    payment_reason = Detail("Why the server refused the payment, in its own words.")


@dataclass(frozen=True)
class MCPPayment:
    """What walletd paid for one tool call.

    ``status`` is the payment's status after the outcome report (e.g.
    ``settlement_pending``), "" when the report did not get through.
    ``settlement`` is the server's ``x402/payment-response`` object (``{}`` if none).
    """

    tool: str
    server: str
    resource_url: str
    idempotency_key: str
    receipt: PayReceipt
    status: str = ""
    settlement: Mapping[str, Any] = field(default_factory=dict)

    @property
    def payment_id(self) -> str:
        """walletd's id of the payment."""
        return self.receipt.payment_id

    @property
    def amount(self) -> int:
        """The amount authorized, in atomic units (6 decimals)."""
        return self.receipt.amount

    @property
    def amount_usd(self) -> str:
        """The amount as a USD string (``"0.003000"``)."""
        return format_usd(self.receipt.amount)

    @property
    def payee(self) -> str:
        """Who the authorization pays."""
        return self.receipt.payee

    @property
    def network(self) -> str:
        """The CAIP-2 network of the payment."""
        return self.receipt.network

    @property
    def reused(self) -> bool:
        """True when the daemon handed back the authorization of an earlier attempt."""
        return self.receipt.reused

    @property
    def transaction(self) -> str:
        """The settlement transaction the server claims ("" if none)."""
        tx = self.settlement.get("transaction")
        return tx if isinstance(tx, str) and self.settlement.get("success") is True else ""


def tool_resource_url(server: str, tool: str) -> str:
    """The URL policy sees for a call of ``tool`` on ``server``.

    ``server`` is the server's streamable-HTTP URL (``http://127.0.0.1:8000/mcp``
    gives ``http://127.0.0.1:8000/mcp/tools/<tool>``) or, for a server run over
    stdio, a short name (``weather`` gives ``mcp+stdio://weather/tools/<tool>``);
    the name is the host that allowlists see.
    """
    name = quote(tool, safe="")
    parts = urlsplit(server)
    if parts.scheme in ("http", "https"):
        if not parts.hostname:
            raise ValueError(f"MCP server URL has no host: {server!r}")
        base = parts._replace(query="", fragment="").geturl().rstrip("/")
        return f"{base}/tools/{name}"
    if not _STDIO_NAME.fullmatch(server):
        raise ValueError(
            "server must be the MCP server's http(s) URL or, for a stdio server, a name of "
            f"letters, digits, dots and dashes (at most 63): {server!r}"
        )
    return f"{STDIO_SCHEME}://{server.lower()}/tools/{name}"


def _server_label(server: str) -> str:
    return server[:MAX_LABEL_VALUE]


# ---- demands ---------------------------------------------------------------


def demand_of_result(result: CallToolResult) -> bytes | None:
    """The x402 demand a tool result carries, as JSON bytes for the daemon; None if none.

    A demand is an error result whose ``structuredContent`` names ``x402Version``,
    or whose first text content is a JSON object naming it. The text is passed on
    verbatim, so the daemon's strict decoding (duplicate keys, NaN, sizes) sees the
    server's own bytes; the daemon, not this function, decides whether it is valid.
    """
    if not result.isError:
        return None
    structured = result.structuredContent
    if isinstance(structured, dict) and "x402Version" in structured:
        return _dumped(structured)
    for block in result.content[:1]:
        if isinstance(block, TextContent) and _looks_like_demand(block.text):
            return _bounded(block.text)
    return None


def demand_of_error(error: McpError) -> bytes | None:
    """The demand of a JSON-RPC error with code 402 (``data``: object or JSON text); else None."""
    if error.error.code != PAYMENT_REQUIRED_CODE:
        return None
    data = error.error.data
    if isinstance(data, dict) and "x402Version" in data:
        return _dumped(data)
    if isinstance(data, str) and _looks_like_demand(data):
        return _bounded(data)
    return None


def _looks_like_demand(text: str) -> bool:
    return text.lstrip().startswith("{") and _VERSION_MARK in text


def _bounded(text: str) -> bytes:
    if len(text) > MAX_DEMAND_TEXT:
        raise InvalidDemandError(f"demand too large: {len(text)} characters")
    return text.encode("utf-8", "replace")


def _dumped(doc: dict[str, Any]) -> bytes:
    try:
        return _bounded(json.dumps(doc, separators=(",", ":"), allow_nan=False))
    except (ValueError, RecursionError, TypeError) as exc:
        raise InvalidDemandError("demand is not valid JSON") from exc


def _settlement_of(result: CallToolResult) -> dict[str, Any]:
    """The ``x402/payment-response`` object of a result (also inside a failed-settlement demand)."""
    for holder in (result.meta, result.structuredContent):
        found = holder.get(PAYMENT_RESPONSE_META_KEY) if isinstance(holder, dict) else None
        if isinstance(found, dict):
            return found
        if isinstance(found, str):
            try:
                doc = json.loads(found)
            except (ValueError, RecursionError):
                continue
            if isinstance(doc, dict):
                return doc
    return {}


def _refusal_reason(result: CallToolResult | None, settlement: Mapping[str, Any]) -> str:
    reason = settlement.get("errorReason")
    if not reason and result is not None and isinstance(result.structuredContent, dict):
        reason = result.structuredContent.get("error")
    return str(reason or "")[:200]


def _encoded(settlement: Mapping[str, Any]) -> str:
    """The settlement as the base64 JSON a PAYMENT-RESPONSE header carries ("" for none)."""
    if not settlement:
        return ""
    return base64.b64encode(json.dumps(settlement, separators=(",", ":")).encode()).decode()


# ---- effects ---------------------------------------------------------------


class _Call(NamedTuple):
    meta: dict[str, Any] | None


class _Pay(NamedTuple):
    key: str
    url: str
    demand: bytes
    labels: dict[str, str]


class _Report(NamedTuple):
    payment_id: str
    status: int
    payment_response: str


_Effect = _Call | _Pay | _Report


@dataclass(frozen=True)
class _Answer:
    """A tool call's result, or the 402 error that stood for one."""

    result: CallToolResult | None
    demand: bytes | None
    error: McpError | None = None


class PayingMCPSession(AsyncClosing):
    """Wraps an initialized MCP ``ClientSession``; ``call_tool`` pays x402 demands via walletd.

    ``server``: the MCP server's streamable-HTTP URL, or a short name for a server
    run over stdio; it makes the resource URL policy sees (:func:`tool_resource_url`)
    and the ``mcp_server`` label. ``walletd``: socket, token and labels (a
    :class:`WalletdSettings`; the default reads ``$WALLETD_SOCKET`` and
    ``$WALLETD_TOKEN_FILE``). ``wallet``: an open ``AsyncWalletClient`` to use
    instead (then it is yours to close); otherwise one is opened on the first
    payment and closed by :meth:`aclose`. Free tool calls never reach the daemon.

    Everything else of the MCP session (``list_tools``, resources, prompts) is used
    through :attr:`session` unchanged.
    """

    def __init__(
        self,
        session: ClientSession,
        *,
        server: str,
        walletd: WalletdSettings | None = None,
        wallet: AsyncWalletClient | None = None,
    ) -> None:
        tool_resource_url(server, "probe")  # refuse a server we could not name to policy
        self.session = session
        self.server = server
        self.settings = walletd or WalletdSettings()
        self._wallet = wallet
        self._owned = False

    def wallet(self) -> AsyncWalletClient:
        """The asyncio walletd client (opened on first use)."""
        if self._wallet is None:
            self._wallet, self._owned = self.settings.connect_async(), True
        return self._wallet

    async def aclose(self) -> None:
        """Close the walletd client if this session opened it (the MCP session is the caller's)."""
        if self._owned and self._wallet is not None:
            wallet, self._wallet, self._owned = self._wallet, None, False
            await wallet.aclose()

    async def call_tool(
        self,
        name: str,
        arguments: dict[str, Any] | None = None,
        *,
        idempotency_key: str | None = None,
        read_timeout_seconds: float | timedelta | None = None,
        meta: Mapping[str, Any] | None = None,
        labels: Mapping[str, str] | None = None,
    ) -> CallToolResult:
        """Call a tool; pay its x402 demand through walletd if it makes one.

        The result of a paid call is the paid result (its ``_meta`` holds the
        server's settlement). Raises the daemon's typed error when it refuses to
        pay (nothing signed), :class:`MCPPaymentRejectedError` when the server
        refuses the payment, PaidAnswerLostError when the chain shows it already
        settled, and ``McpError`` as the session raises it (a timeout, say: call
        again with the same ``idempotency_key`` and no second authorization is made).
        """
        result, _ = await self.call_tool_paid(
            name,
            arguments,
            idempotency_key=idempotency_key,
            read_timeout_seconds=read_timeout_seconds,
            meta=meta,
            labels=labels,
        )
        return result

    async def call_tool_paid(
        self,
        name: str,
        arguments: dict[str, Any] | None = None,
        *,
        idempotency_key: str | None = None,
        read_timeout_seconds: float | timedelta | None = None,
        meta: Mapping[str, Any] | None = None,
        labels: Mapping[str, str] | None = None,
    ) -> tuple[CallToolResult, MCPPayment | None]:
        """:meth:`call_tool`, plus what was paid for it (None for a free call).

        ``labels`` are added to this payment's ledger row over the session's.
        """
        timeout = (
            timedelta(seconds=read_timeout_seconds)
            if isinstance(read_timeout_seconds, int | float)
            else read_timeout_seconds
        )

        async def perform(effect: _Effect) -> Any:
            if isinstance(effect, _Call):
                return await self._call(name, arguments, timeout, effect.meta)
            wallet = self.wallet()
            if isinstance(effect, _Pay):
                return await wallet.pay(
                    effect.key, METHOD, effect.url, body=effect.demand, labels=effect.labels
                )
            return await wallet.report_outcome(*effect)

        key = idempotency_key or new_idempotency_key()
        plan = self._plan(name, key, dict(meta or {}), dict(labels or {}))
        return await arun(plan, perform)

    async def _call(
        self,
        name: str,
        arguments: dict[str, Any] | None,
        timeout: timedelta | None,
        meta: dict[str, Any] | None,
    ) -> _Answer:
        try:
            result = await self.session.call_tool(
                name, arguments, read_timeout_seconds=timeout, meta=meta
            )
        except McpError as err:
            demand = demand_of_error(err)
            if demand is None:
                raise
            return _Answer(None, demand, err)
        return _Answer(result, demand_of_result(result))

    def labels_for(self, tool: str, extra: Mapping[str, str]) -> dict[str, str]:
        """A payment's labels: ``tool`` and ``mcp_server``, then the settings', then the call's."""
        own = {TOOL_LABEL: tool[:MAX_LABEL_VALUE], SERVER_LABEL: _server_label(self.server)}
        return {**own, **self.settings.labels, **extra}

    # ---- the plan --------------------------------------------------------

    def _plan(
        self, tool: str, key: str, meta: dict[str, Any], labels: dict[str, str]
    ) -> Plan[_Effect, tuple[CallToolResult, MCPPayment | None]]:
        """One logical tool call: call, and on a demand pay once, call again, report."""
        first: _Answer = yield _Call(meta or None)
        if first.demand is None:
            assert first.result is not None
            return first.result, None
        url = tool_resource_url(self.server, tool)
        receipt: PayReceipt = yield _Pay(key, url, first.demand, self.labels_for(tool, labels))
        payload = decode_b64_json(receipt.header_value)
        if not payload:
            raise InvalidDemandError(
                f"walletd paid with a {receipt.header_name} that is not x402 JSON; "
                "an MCP server cannot take it"
            )
        paid: _Answer = yield _Call({**meta, PAYMENT_META_KEY: payload})
        settlement = _settlement_of(paid.result) if paid.result is not None else {}
        if paid.demand is not None:
            status = 402
        elif paid.result is not None and paid.result.isError:
            status = 500
        else:
            status = 200
        reason = _refusal_reason(paid.result, settlement) if status == 402 else ""
        try:
            after: str = yield _Report(receipt.payment_id, status, _encoded(settlement))
        except PaidAnswerLostError as err:
            if reason and not err.details.get("server_reason"):
                err.details["server_reason"] = reason
            raise
        except Exception:  # best effort: the call has its answer already
            log.warning("could not report the outcome of %s", receipt.payment_id)
            after = ""
        payment = MCPPayment(tool, self.server, url, key, receipt, after, settlement)
        if status == 402:
            raise MCPPaymentRejectedError(
                f"the MCP server refused the payment for tool {tool!r} and asked again; "
                f"walletd pays a call at most once (payment {receipt.payment_id}"
                + (f"; the server said: {reason})" if reason else ")"),
                {
                    "payment_id": receipt.payment_id,
                    "tool": tool[:MAX_LABEL_VALUE],
                    "server": _server_label(self.server),
                    "payment_reason": reason,
                    "reused": "true" if receipt.reused else "false",
                },
            )
        assert paid.result is not None
        return paid.result, payment
