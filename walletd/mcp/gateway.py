"""The gateway tools of ``walletd mcp``: paid HTTP, a paid OpenAI-style API, the wallet.

* ``paid_fetch``: one HTTP request; a 402 (x402, or a direct-transfer demand)
  is paid through the daemon. A host outside the client's host allowlist
  (GetBudget names it) is refused before anything is sent; the body read back
  is capped.
* ``chat``, ``image``, ``models``: the API given by ``--base-url``, through
  :class:`~walletd.client.AsyncClusterClient`.
* ``wallet_budget``, ``wallet_payments``: what is left, and what was paid.

Everything is paid as the agent's own walletd client (its token file), so the
daemon's budgets, allowlists, idempotency and audit trail apply unchanged. A
paid tool call interrupted before its answer came back (a timeout, a dropped
connection, the host cancelling it) may have been paid: its key is kept
(:mod:`walletd.mcp._held`), and the agent's next call of the same tool with the
same arguments is the same logical call, never a second payment.
"""

from __future__ import annotations

import base64
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Annotated, Any
from urllib.parse import urlsplit

import httpx
from mcp.server.fastmcp import FastMCP
from mcp.types import CallToolResult, ContentBlock, ImageContent, TextContent, ToolAnnotations
from pydantic import Field

from walletd.client import (
    AsyncClusterClient,
    AsyncWalletClient,
    ClusterConnectionError,
    PaymentAttempt,
    WalletdAuth,
    WalletdSettings,
    async_http_client,
    payment_attempt,
)
from walletd.client._auth import IDEMPOTENCY_HEADER, has_payment_header
from walletd.domain.budget import BudgetState, WindowState
from walletd.domain.money import format_usd
from walletd.errors import InvalidRequestError, PolicyDeniedError, RefusedError, WalletdError
from walletd.mcp._held import HeldCalls, Interrupted, call_digest
from walletd.mcp._results import (
    dumps,
    error_result,
    iso_ms,
    ledger_facts,
    payment_facts,
    plain_error,
    tool_result,
)

DEFAULT_MAX_RESPONSE_BYTES = 1 << 20
DEFAULT_TIMEOUT_S = 120.0
CONNECT_TIMEOUT_S = 5.0
_TEXT_TYPES = ("text/", "application/json", "application/xml", "+json", "+xml", "javascript")
_SENT_BACK_HEADERS = ("content-type", "content-length", "location", "retry-after")
_PAID = ToolAnnotations(readOnlyHint=False, destructiveHint=False, openWorldHint=True)
_READ = ToolAnnotations(readOnlyHint=True, openWorldHint=False)
Ended = WalletdError | Interrupted | None
"""What ended a paid call other than its answer (see :meth:`HeldCalls.run`)."""


@dataclass(frozen=True)
class GatewayOptions:
    """What ``walletd mcp`` was started with, besides the walletd connection."""

    base_url: str | None = None
    """The OpenAI-style paid API of ``chat``/``image``/``models``; None leaves them out."""
    max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES
    """``paid_fetch`` reads at most this much of a body; the rest is cut off (and said so)."""
    timeout: float = DEFAULT_TIMEOUT_S
    """Seconds to wait for each HTTP answer."""


def url_host(url: str) -> str:
    """The URL's host as the daemon's host rule sees it (lower-cased, no port)."""
    return (urlsplit(url).hostname or "").lower()


def url_hosts(url: str) -> frozenset[str]:
    """The host of ``url`` as the daemon's rule sees it and as httpx will dial it.

    Both must pass the allowlist, so a URL that the two parsers might read
    differently cannot slip past the check.

    Raises:
        InvalidRequestError: not an http(s) URL with a host.
    """
    try:
        hosts = frozenset({url_host(url), httpx.URL(url).host.lower()})
        scheme = urlsplit(url).scheme
    except (ValueError, httpx.InvalidURL):
        hosts, scheme = frozenset(), ""
    if scheme not in ("http", "https") or "" in hosts or not hosts:
        raise InvalidRequestError(f"{url[:200]!r} is not an http(s) URL", {"field": "url"})
    return hosts


def check_hosts(hosts: frozenset[str], budget: BudgetState) -> None:
    """Refuse, as Pay's host rule would, a host the client's or the global allowlist lacks.

    Raises:
        PolicyDeniedError: rule ``host_allowlist``, naming the host and the allowlist.
    """
    bad = next((host for host in sorted(hosts) if not budget.allows_host(host)), None)
    if bad is None:
        return
    scope, allowed = (
        ("", budget.hosts)
        if budget.hosts and bad not in budget.hosts
        else ("global ", budget.global_hosts)
    )
    raise PolicyDeniedError(
        f"policy host_allowlist: host {bad!r} is not in the {scope}host "
        f"allowlist ({', '.join(allowed)}); no request was sent",
        {"rule": "host_allowlist", "host": bad, "allowlist": ",".join(allowed)},
    )


class Gateway:
    """The walletd side of the gateway tools: one wallet, one paying HTTP client, one API client.

    Opened inside the server's event loop (the gRPC and httpx clients bind to it);
    :meth:`aclose` closes what it opened.
    """

    def __init__(self, settings: WalletdSettings, options: GatewayOptions) -> None:
        self.settings = settings
        self.options = options
        timeout = httpx.Timeout(options.timeout, connect=min(options.timeout, CONNECT_TIMEOUT_S))
        self._wallet: AsyncWalletClient | None = None
        self._auth = WalletdAuth(walletd=settings, strip_authorization=False)
        self.http = async_http_client(None, auth=self._auth, timeout=timeout)
        self.held = HeldCalls()
        """Keys of calls awaiting approval or interrupted: the agent's retry is the same call."""
        self.api: AsyncClusterClient | None = None
        if options.base_url:
            self.api = AsyncClusterClient(options.base_url, walletd=settings, timeout=timeout)

    @property
    def wallet(self) -> AsyncWalletClient:
        """The walletd client, opened on first use (a daemon started later is found then)."""
        if self._wallet is None:
            self._wallet = self.settings.connect_async()
        return self._wallet

    async def aclose(self) -> None:
        """Close the HTTP clients and the walletd channels."""
        await self.http.aclose()
        await self._auth.aclose()
        if self.api is not None:
            await self.api.aclose()
        if self._wallet is not None:
            await self._wallet.aclose()

    # ---- the allowlist, before anything is sent ----------------------------

    async def refuse_host(self, url: str) -> CallToolResult | None:
        """A tool error when ``url`` is not http(s) or its host is not allowed; else None."""
        try:
            hosts = url_hosts(url)
            budget = await self.wallet.get_budget()
            check_hosts(hosts, budget)
        except WalletdError as err:
            return error_result(err)
        return None

    # ---- payments as the agent sees them -----------------------------------

    async def facts(self, paid: PaymentAttempt | None) -> dict[str, Any] | None:
        """The ``payment`` object for a paid response (None when nothing was paid)."""
        if paid is None:
            return None
        await self.flush_reports()
        status = (await ledger_facts(lambda: self.wallet, paid.receipt.payment_id))["status"]
        return payment_facts(paid.receipt, status, paid.settlement)

    async def flush_reports(self) -> None:
        """Deliver the queued outcome reports, so the status an agent is shown is current.

        A paid request returns before its outcome reaches the daemon; an agent
        reasons about the status it is shown, so a tool waits for the report.
        """
        await self._auth.aflush_reports()
        if self.api is not None and self.api.auth is not None:
            await self.api.auth.aflush_reports()

    async def facts_by_id(self, payment_id: str) -> dict[str, Any] | None:
        """The ``payment`` object of a payment known only by id (an API error after paying)."""
        return await ledger_facts(lambda: self.wallet, payment_id) if payment_id else None

    async def failed(self, err: WalletdError) -> CallToolResult:
        """A tool error for ``err``, with the payment when one was made before it failed.

        A refusal (held for approval, denied, over a limit) signed nothing: its
        ``payment_id`` names a held or released row, not a payment made.
        """
        if isinstance(err, RefusedError):
            return error_result(err)
        return error_result(err, await self.facts_by_id(err.details.get("payment_id", "")))

    async def paid_call(
        self, tool: str, asked: Mapping[str, Any], given_key: str,
        call: Callable[[str], Awaitable[tuple[CallToolResult, Ended]]],
    ) -> CallToolResult:  # fmt: skip
        """``call(key)``'s result, under the call's idempotency key.

        The key is ``given_key``, else the one a held or interrupted call of the same
        tool with the same arguments left, else a new one.
        """
        digest = call_digest(tool, asked)
        key = given_key or self.held.key_for(digest)
        return await self.held.run(digest, key, call)

    async def api_failed(self, err: WalletdError) -> tuple[CallToolResult, Ended]:
        """The tool error of a failed API call, and what ended it.

        No complete answer (after the client's own retries) is an interruption: an
        attempt may have been paid.
        """
        lost = isinstance(err, ClusterConnectionError)
        return await self.failed(err), Interrupted() if lost else err

    # ---- the tools ---------------------------------------------------------

    async def paid_fetch(
        self, url: str, method: str, headers: Mapping[str, str] | None, body: str | None
    ) -> CallToolResult:
        """One HTTP request, paid through walletd when it answers 402."""
        refused = await self.refuse_host(url)
        if refused is not None:
            return refused
        sent = dict(headers or {})
        asked = {"url": url, "method": method.upper(), "headers": sent, "body": body}
        given = next((v for k, v in sent.items() if k.lower() == IDEMPOTENCY_HEADER.lower()), "")

        async def call(key: str) -> tuple[CallToolResult, Ended]:
            keyed = sent if given else {**sent, IDEMPOTENCY_HEADER: key}
            return await self._fetch(url, method, keyed, body)

        return await self.paid_call("paid_fetch", asked, given, call)

    async def _fetch(
        self, url: str, method: str, sent: dict[str, str], body: str | None
    ) -> tuple[CallToolResult, Ended]:
        try:
            async with self.http.stream(
                method.upper(), url, headers=sent, content=body
            ) as response:
                data, truncated = await self._read_capped(response)
                paid = payment_attempt(response)
        except WalletdError as err:
            return await self.failed(err), err
        except httpx.HTTPError as exc:  # no complete answer: paid, if a payment was sent
            result = plain_error("HTTP_ERROR", f"{type(exc).__name__}: {exc}", url=url[:200])
            return result, Interrupted(sent=_sent_payment(exc))
        payment = await self.facts(paid)
        headers = {k: v for k, v in response.headers.items() if k.lower() in _SENT_BACK_HEADERS}
        body_doc = _body_doc(response, data)
        doc: dict[str, Any] = {
            "status": response.status_code,
            "headers": headers,
            "truncated": truncated,
            "bytes": len(data),
            **body_doc,
        }
        cut = f" (cut at {self.options.max_response_bytes} bytes)" if truncated else ""
        kind = headers.get("content-type", "?")
        shown = body_doc.get("text", f"<{len(data)} bytes of {kind}, base64 in structured content>")
        return tool_result(f"HTTP {response.status_code}{cut}\n\n{shown}", doc, payment), None

    async def _read_capped(self, response: httpx.Response) -> tuple[bytes, bool]:
        cap = self.options.max_response_bytes
        chunks: list[bytes] = []
        size = 0
        async for chunk in response.aiter_bytes():
            chunks.append(chunk)
            size += len(chunk)
            if size > cap:
                return b"".join(chunks)[:cap], True
        return b"".join(chunks), False

    def _api(self) -> AsyncClusterClient:
        assert self.api is not None  # the tools are registered only with --base-url
        return self.api

    async def chat(
        self, model: str, prompt: str, system: str, max_tokens: int | None,
        temperature: float | None,
    ) -> CallToolResult:  # fmt: skip
        """One chat completion from the paid API."""
        refused = await self.refuse_host(self._api().root)
        if refused is not None:
            return refused
        messages = [{"role": "system", "content": system}] if system else []
        messages.append({"role": "user", "content": prompt})
        asked = {"model": model, "messages": messages, "max_tokens": max_tokens,
                 "temperature": temperature}  # fmt: skip

        async def call(key: str) -> tuple[CallToolResult, Ended]:
            try:
                result = await self._api().chat(
                    model, messages, max_tokens=max_tokens, temperature=temperature,
                    idempotency_key=key,
                )  # fmt: skip
            except WalletdError as err:
                return await self.api_failed(err)
            data = {
                "text": result.text,
                "model": result.model,
                "finish_reason": result.finish_reason,
                "usage": dict(result.usage),
            }
            return tool_result(result.text, data, await self.facts(result.payment)), None

        return await self.paid_call("chat", asked, "", call)

    async def image(self, model: str, prompt: str, size: str, n: int) -> CallToolResult:
        """Images from the paid API, as PNG image content."""
        refused = await self.refuse_host(self._api().root)
        if refused is not None:
            return refused
        asked = {"model": model, "prompt": prompt, "size": size, "n": n}

        async def call(key: str) -> tuple[CallToolResult, Ended]:
            try:
                result = await self._api().images_result(
                    model, prompt, n=n, size=size, idempotency_key=key
                )
            except WalletdError as err:
                return await self.api_failed(err)
            images: list[ContentBlock] = [
                ImageContent(
                    type="image", data=base64.b64encode(png).decode(), mimeType="image/png"
                )
                for png in result.images
            ]
            data = {"images": len(images), "bytes": [len(png) for png in result.images]}
            text = f"{len(images)} PNG image(s) of {size} from {model}"
            return tool_result(text, data, await self.facts(result.payment), images), None

        return await self.paid_call("image", asked, "", call)

    async def models(self) -> CallToolResult:
        """The paid API's models (free)."""
        refused = await self.refuse_host(self._api().root)
        if refused is not None:
            return refused
        try:
            found = await self._api().models()
        except WalletdError as err:
            return await self.failed(err)
        listed = [{"id": m.id, "type": m.type, "owned_by": m.owned_by} for m in found]
        return tool_result(dumps(listed), {"models": listed}, None)

    async def budget(self) -> CallToolResult:
        """What is left in each budget window, scoped budget and rate limit, in USD or payments."""
        try:
            state = await self.wallet.get_budget()
        except WalletdError as err:
            return error_result(err)
        windows = [_window_doc(w) for w in state.windows]
        scoped = [_window_doc(w) for w in state.scoped]
        rates = [
            {"window": r.window, "per": r.per, "limit": r.limit, "count": r.count,
             "remaining": r.remaining}
            for r in state.rates
        ]  # fmt: skip
        lines = [f"client {state.client}{' (payments frozen)' if state.frozen else ''}"]
        lines += [
            f"{w['window']}: {w['remaining_usd']} USD left of {w['limit_usd']} "
            f"(spent {w['spent_usd']})"
            for w in (*windows, *scoped)
        ]
        lines += [
            f"{r['window']}: {r['remaining']} payments left of {r['limit']} per {r['per']} "
            f"({r['count']} made)"
            for r in rates
        ]
        lines.append(f"hosts: {', '.join(state.hosts) or 'any'}")
        if state.global_hosts:
            lines.append(f"global hosts: {', '.join(state.global_hosts)}")
        doc = {
            "client": state.client,
            "frozen": state.frozen,
            "windows": windows,
            "scoped_windows": scoped,
            "rate_limits": rates,
            "hosts": list(state.hosts),
            "global_hosts": list(state.global_hosts),
        }
        return CallToolResult(
            content=[TextContent(type="text", text="\n".join(lines))],
            structuredContent=doc,
        )

    async def payments(self, limit: int) -> CallToolResult:
        """The client's newest payments and their status."""
        try:
            rows = await self.wallet.list_payments(limit)
        except WalletdError as err:
            return error_result(err)
        listed = [
            {
                "payment_id": r.payment_id,
                "status": r.status,
                "amount_usd": format_usd(r.amount),
                "payee": r.payee,
                "network": r.network,
                "url": r.url,
                "created_at": iso_ms(r.created_at),
                "labels": dict(r.labels),
            }
            for r in rows
        ]
        lines = [
            f"{p['created_at']} {p['payment_id']} {p['status']} {p['amount_usd']} USD "
            f"to {p['payee']} for {p['url']}"
            for p in listed
        ] or ["no payments yet"]
        return CallToolResult(
            content=[TextContent(type="text", text="\n".join(lines))],
            structuredContent={"payments": listed},
        )


def _sent_payment(exc: httpx.HTTPError) -> bool:
    """Whether the request that failed carried a payment (its server may have settled it)."""
    try:
        return has_payment_header(exc.request)
    except RuntimeError:  # an error raised before any request was built
        return False


def _window_doc(w: WindowState) -> dict[str, Any]:
    return {
        "window": w.window,
        "limit_usd": None if w.limit is None else format_usd(w.limit),
        "spent_usd": format_usd(w.spent),
        "remaining_usd": None if w.remaining is None else format_usd(w.remaining),
    }


def _body_doc(response: httpx.Response, data: bytes) -> dict[str, str]:
    """The body as ``text`` when it is text, else as ``base64``."""
    kind = response.headers.get("content-type", "").lower()
    if not kind or any(t in kind for t in _TEXT_TYPES):
        try:
            return {"text": data.decode(response.encoding or "utf-8")}
        except (UnicodeDecodeError, LookupError):
            pass
    return {"base64": base64.b64encode(data).decode()}


# ---- the server ----------------------------------------------------------------

Url = Annotated[str, Field(description="Absolute http(s) URL to request.")]
Method = Annotated[str, Field(description="HTTP method, e.g. GET or POST.")]
Headers = Annotated[
    dict[str, str] | None, Field(description="Request headers (no payment headers needed).")
]
Body = Annotated[str, Field(description="Request body as text (e.g. JSON); empty: none.")]
Model = Annotated[str, Field(description="Model id (see the models tool).")]


def add_gateway_tools(server: FastMCP[Any], gateway: Gateway) -> None:
    """Register the gateway tools on ``server``."""

    async def paid_fetch(
        url: Url, method: Method = "GET", headers: Headers = None, body: Body = ""
    ) -> CallToolResult:
        return await gateway.paid_fetch(url, method, headers, body or None)

    server.add_tool(
        paid_fetch,
        description=(
            "Send one HTTP request; if the server asks for payment (HTTP 402, x402), walletd "
            "pays it within this agent's budget. Hosts outside the agent's allowlist are refused "
            f"before anything is sent; at most {gateway.options.max_response_bytes} bytes of "
            "the body are returned. The result says what was paid (USD, payee, payment id, "
            "status)."
        ),
        annotations=_PAID,
    )

    async def wallet_budget() -> CallToolResult:
        return await gateway.budget()

    server.add_tool(
        wallet_budget,
        description="What is left in each of this agent's budget windows and scoped budgets "
        "(per tool label, host or payee), in USD; its rate limits (payments per minute, "
        "hour, day) with how many are left; and which hosts it may pay.",
        annotations=_READ,
    )

    async def wallet_payments(
        limit: Annotated[int, Field(ge=1, le=1000, description="How many, newest first.")] = 20,
    ) -> CallToolResult:
        return await gateway.payments(limit)

    server.add_tool(
        wallet_payments,
        description="This agent's recent payments, newest first: amount in USD, payee, "
        "URL and status (signed, settlement_pending, settled, expired, ...).",
        annotations=_READ,
    )
    if gateway.api is not None:
        _add_api_tools(server, gateway)


def _add_api_tools(server: FastMCP[Any], gateway: Gateway) -> None:
    root = gateway._api().root

    async def chat(
        model: Model,
        prompt: Annotated[str, Field(description="The user message.")],
        system: Annotated[str, Field(description="An optional system message.")] = "",
        max_tokens: Annotated[int | None, Field(ge=1, description="Cap on the answer.")] = None,
        temperature: Annotated[float | None, Field(description="Sampling temperature.")] = None,
    ) -> CallToolResult:
        return await gateway.chat(model, prompt, system, max_tokens, temperature)

    server.add_tool(
        chat,
        description=f"Ask a model of the paid API at {root} one question; walletd pays for it. "
        "The result says what was paid.",
        annotations=_PAID,
    )

    async def image(
        model: Model,
        prompt: Annotated[str, Field(description="What to draw.")],
        size: Annotated[str, Field(description="WIDTHxHEIGHT.")] = "1024x1024",
        n: Annotated[int, Field(ge=1, le=4, description="How many images.")] = 1,
    ) -> CallToolResult:
        return await gateway.image(model, prompt, size, n)

    server.add_tool(
        image,
        description=f"Generate PNG images with the paid API at {root}; walletd pays for them. "
        "The result says what was paid.",
        annotations=_PAID,
    )

    async def models() -> CallToolResult:
        return await gateway.models()

    server.add_tool(
        models,
        description=f"List the models of the paid API at {root} (free).",
        annotations=_READ,
    )
