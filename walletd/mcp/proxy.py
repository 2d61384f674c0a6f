"""Proxy mode of ``walletd mcp``: an upstream MCP server's tools, paid through walletd.

``tools/list`` answers with the upstream's tools unchanged (names, descriptions,
input and output schemas, annotations). ``tools/call`` goes through
:class:`~walletd.client.PayingMCPSession`: a free tool passes through as is; a
paid one is paid through the daemon under the agent's own client, and its result
comes back with one more text block saying what was paid and the same facts in
``_meta["walletd/payment"]``.

The upstream is untrusted and may fail in any way; none of it stops ``walletd
mcp``. Its connection lives in a task of its own (the SDK's transports are
structured: they must be closed by the task that opened them) and is opened on
first use, then again after it died. A call that gets no answer within
``--timeout`` is a tool error; an upstream that exits or writes something that is
not MCP is a tool error, and its connection is closed (a stdio upstream is
started again on the next call). Such an interrupted call may have been paid: its
key is kept (:mod:`walletd.mcp._held`), and the agent's next call of the same tool
with the same arguments is the same logical call, never a second payment.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import anyio
from anyio.abc import TaskGroup
from mcp import ClientSession, McpError, StdioServerParameters
from mcp.client.stdio import stdio_client
from mcp.client.streamable_http import streamable_http_client
from mcp.server.fastmcp import FastMCP
from mcp.shared.session import RequestResponder
from mcp.types import (
    CONNECTION_CLOSED,
    CallToolResult,
    ClientResult,
    ContentBlock,
    ServerNotification,
    ServerRequest,
    TextContent,
    Tool,
)

from walletd.client import MCPPayment, MCPPaymentRejectedError, PayingMCPSession, WalletdSettings
from walletd.errors import PaidAnswerLostError, WalletdError
from walletd.mcp._held import HeldCalls, Interrupted, call_digest
from walletd.mcp._results import error_result, ledger_facts, payment_line, plain_error
from walletd.mcp.server import HttpAddress, new_server, serve

log = logging.getLogger("walletd.mcp.proxy")

PAYMENT_META_KEY = "walletd/payment"
"""``_meta`` key of what walletd paid for a proxied call."""
_NAME_CHARS = re.compile(r"[^A-Za-z0-9.-]+")
_INTERPRETERS = re.compile(r"^(python[0-9.]*|node|uv|uvx|npx|bun|deno)$")
TIMED_OUT = 408
"""The code of the McpError a ClientSession raises when its read timeout runs out."""


@dataclass(frozen=True)
class Upstream:
    """The MCP server proxied: a streamable HTTP ``url``, or a stdio ``command``."""

    url: str | None = None
    command: tuple[str, ...] = ()
    timeout: float = 120.0
    """Seconds to wait for the upstream to start, to list its tools, or to answer a call."""
    name: str = ""
    """The stdio server's name for policy and labels (default: from the command)."""

    @property
    def server(self) -> str:
        """What PayingMCPSession names the server by: the URL, or the stdio name."""
        return self.url or self.name or stdio_name(self.command)


def stdio_name(command: Sequence[str]) -> str:
    """A short name for a stdio server: its module (``python -m pkg.mod``) or program name."""
    words = list(command)
    if words and _INTERPRETERS.match(Path(words[0]).name):
        if "-m" in words[:-1]:
            words = [words[words.index("-m") + 1]]
        else:
            words = [w for w in words[1:] if not w.startswith("-")][:1] or words
    name = _NAME_CHARS.sub("-", Path(words[0]).name if words else "upstream").strip(".-")
    return (name or "upstream")[:63]


@dataclass
class _Link:
    """One connection to the upstream, kept open by its own task."""

    ready: anyio.Event = field(default_factory=anyio.Event)
    closed: anyio.Event = field(default_factory=anyio.Event)
    scope: anyio.CancelScope = field(default_factory=anyio.CancelScope)
    paying: PayingMCPSession | None = None
    error: str = ""
    """Why the connection could not open, or why it ended."""
    instructions: str | None = None
    calls: set[anyio.CancelScope] = field(default_factory=set)
    """The scopes of the calls waiting on this connection: cancelled when it closes."""

    def close(self, why: str = "") -> None:
        """End the connection (its task closes the transport) and every call waiting on it."""
        self.error = self.error or why
        self.closed.set()
        self.scope.cancel()
        for call in list(self.calls):
            call.cancel()

    @property
    def alive(self) -> bool:
        return self.paying is not None and not self.closed.is_set()


def describe(exc: BaseException) -> str:
    """``Type: message`` of the first real error inside (task groups wrap them in groups)."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    return f"{type(exc).__name__}: {exc!s:.200}"


class UpstreamError(Exception):
    """The upstream could not be reached or answered with something that is not MCP."""


class UpstreamLink:
    """Opens, shares and re-opens the connection to the upstream."""

    def __init__(self, upstream: Upstream, settings: WalletdSettings, group: TaskGroup) -> None:
        self.upstream = upstream
        self.settings = settings
        self._group = group
        self._link: _Link | None = None
        self._lock = anyio.Lock()
        self._tools: list[Tool] | None = None
        self.held = HeldCalls()
        """Keys of calls awaiting approval or interrupted: the agent's retry is the same call."""

    def _transport(self) -> Any:
        if self.upstream.url:
            return streamable_http_client(self.upstream.url)
        command, *args = self.upstream.command
        params = StdioServerParameters(command=command, args=args)
        return stdio_client(params)

    async def _keep(self, link: _Link) -> None:
        """Open the connection, hand it over, hold it until closed; never raises."""

        async def on_message(
            message: RequestResponder[ServerRequest, ClientResult] | ServerNotification | Exception,
        ) -> None:
            if isinstance(message, Exception):  # a line that is not an MCP message
                link.close(f"the upstream sent something that is not MCP ({message!s:.200})")

        try:
            with link.scope:
                async with AsyncExitStack() as stack:
                    read, write, *_ = await stack.enter_async_context(self._transport())
                    session = await stack.enter_async_context(
                        ClientSession(read, write, message_handler=on_message)
                    )
                    init = await session.initialize()
                    link.instructions = init.instructions
                    paying = PayingMCPSession(
                        session, server=self.upstream.server, walletd=self.settings
                    )
                    stack.push_async_callback(paying.aclose)
                    link.paying = paying
                    link.ready.set()
                    await link.closed.wait()
        except Exception as exc:  # the upstream failed to start, died, or broke the transport
            link.error = link.error or describe(exc)
            log.warning("upstream %s: %s", self.upstream.server, link.error)
        finally:
            link.closed.set()
            link.ready.set()

    async def open(self) -> _Link:
        """The open connection, opened now if there is none (UpstreamError if it fails)."""
        async with self._lock:
            if self._link is not None and self._link.alive:
                return self._link
            link = self._link = _Link()
            self._group.start_soon(self._keep, link)
            with anyio.move_on_after(self.upstream.timeout):
                await link.ready.wait()
            if not link.alive:
                link.close(f"it did not start within {self.upstream.timeout:g} s")
                raise UpstreamError(f"cannot reach the upstream MCP server: {link.error}")
            return link

    async def session(self) -> PayingMCPSession:
        """The open paying session (see :meth:`open`)."""
        paying = (await self.open()).paying
        assert paying is not None
        return paying

    def drop(self, why: str) -> str:
        """Close the current connection (the next call opens a new one); returns the reason."""
        link = self._link
        if link is None:
            return why
        link.close(why)
        return link.error or why

    async def aclose(self) -> None:
        """Close the connection, if one is open."""
        if self._link is not None:
            self._link.close("walletd mcp is stopping")

    # ---- the two proxied requests -----------------------------------------

    async def list_tools(self) -> list[Tool]:
        """The upstream's tools, as it lists them (the last good list if it is down now)."""
        try:
            paying = await self.session()
            tools: list[Tool] = []
            cursor: str | None = None
            with anyio.fail_after(self.upstream.timeout):
                while True:
                    page = await paying.session.list_tools(cursor)
                    tools += page.tools
                    cursor = page.nextCursor
                    if not cursor:
                        break
        except (UpstreamError, McpError, TimeoutError, anyio.BrokenResourceError,
                anyio.ClosedResourceError) as exc:  # fmt: skip
            why = self.drop(f"listing its tools failed: {exc}")
            if self._tools is not None:
                log.warning(
                    "upstream %s: %s; serving the last tool list", self.upstream.server, why
                )
                return self._tools
            raise UpstreamError(f"the upstream MCP server did not list its tools: {why}") from None
        self._tools = tools
        return tools

    async def call(self, name: str, arguments: dict[str, Any]) -> CallToolResult:
        """Call one tool upstream, paying it through walletd; every failure is a tool error."""
        digest = call_digest(name, arguments)
        key = self.held.key_for(digest)
        return await self.held.run(digest, key, lambda key: self._call(name, arguments, key))

    async def _call(
        self, name: str, arguments: dict[str, Any], key: str
    ) -> tuple[CallToolResult, WalletdError | Interrupted | None]:
        """The tool's result (or tool error), and what ended it otherwise.

        That is the walletd error behind a refusal, or :class:`Interrupted` when the
        call ended without an answer (it may have been paid).
        """
        server = self.upstream.server
        try:
            link = await self.open()
            assert link.paying is not None
            with anyio.CancelScope() as waiting:
                link.calls.add(waiting)
                try:
                    result, payment = await link.paying.call_tool_paid(
                        name, arguments, idempotency_key=key,
                        read_timeout_seconds=self.upstream.timeout,
                    )  # fmt: skip
                finally:
                    link.calls.discard(waiting)
            if waiting.cancelled_caught:
                why = link.error or "its connection closed"
                return plain_error(
                    "UPSTREAM_UNAVAILABLE",
                    f"upstream {server} failed during tool {name!r}: {why}; the connection "
                    "is closed and the next call opens a new one",
                    tool=name,
                ), Interrupted()
        except UpstreamError as exc:  # nothing sent now, but keep an earlier attempt's key
            result = plain_error("UPSTREAM_UNAVAILABLE", str(exc), server=server)
            return result, Interrupted(sent=False)
        except (MCPPaymentRejectedError, PaidAnswerLostError) as err:
            paying = link.paying
            assert paying is not None
            paid = await ledger_facts(paying.wallet, err.details.get("payment_id", ""))
            return error_result(err, paid), err
        except WalletdError as err:
            return error_result(err), err
        except McpError as err:
            result = self._mcp_error(name, err)
            lost = err.error.code in (CONNECTION_CLOSED, TIMED_OUT)
            return result, Interrupted() if lost else None
        except (anyio.BrokenResourceError, anyio.ClosedResourceError) as exc:
            why = self.drop(f"its connection broke ({type(exc).__name__})")
            result = plain_error("UPSTREAM_UNAVAILABLE", f"upstream {server}: {why}", tool=name)
            return result, Interrupted()
        return with_payment(result, payment), None

    def _mcp_error(self, name: str, err: McpError) -> CallToolResult:
        server = self.upstream.server
        code = err.error.code
        if code == CONNECTION_CLOSED:
            why = self.drop("its connection closed")
            return plain_error(
                "UPSTREAM_UNAVAILABLE",
                f"upstream {server} closed the connection during tool {name!r}: {why}; "
                "the next call starts it again",
                tool=name,
            )
        if code == TIMED_OUT:  # the session's read timeout
            return plain_error(
                "UPSTREAM_TIMEOUT",
                f"upstream {server} did not answer tool {name!r} within "
                f"{self.upstream.timeout:g} s",
                tool=name,
            )
        return plain_error(
            "UPSTREAM_ERROR",
            f"upstream {server} answered tool {name!r} with error {code}: {err.error.message:.300}",
            tool=name,
            code=str(code),
        )


def with_payment(result: CallToolResult, payment: MCPPayment | None) -> CallToolResult:
    """The upstream's result, plus what walletd paid (a text block and ``_meta``) if it paid."""
    if payment is None:
        return result
    facts = {
        "amount_usd": payment.amount_usd,
        "amount_atomic": str(payment.amount),
        "payee": payment.payee,
        "network": payment.network,
        "payment_id": payment.payment_id,
        "status": payment.status or "signed",
        "transaction": payment.transaction,
        "reused": payment.reused,
        "tool": payment.tool,
        "server": payment.server,
    }
    content: list[ContentBlock] = [
        *result.content,
        TextContent(type="text", text=payment_line(facts)),
    ]
    meta = {**(result.meta or {}), PAYMENT_META_KEY: facts}
    return result.model_copy(update={"content": content, "meta": meta})


class ProxyServer(FastMCP[Any]):
    """A FastMCP server whose tools are the upstream's (set ``link`` before serving)."""

    link: UpstreamLink

    async def list_tools(self) -> list[Tool]:
        """The upstream's tools, unchanged."""
        return await self.link.list_tools()

    async def call_tool(
        self, name: str, arguments: dict[str, Any]
    ) -> Sequence[ContentBlock] | dict[str, Any]:
        """The upstream's result: a CallToolResult, which the SDK's handler passes on as is.

        FastMCP's own signature does not name that case, hence the cast.
        """
        return cast("Sequence[ContentBlock]", await self.link.call(name, arguments))


async def run_proxy(
    settings: WalletdSettings,
    upstream: Upstream,
    http: HttpAddress | None,
    on_listening: Callable[[str], None],
) -> None:
    """Serve the upstream's tools until the host closes stdio (or the HTTP server stops)."""
    async with anyio.create_task_group() as group:
        link = UpstreamLink(upstream, settings, group)
        server = new_server(
            instructions=f"The tools of the MCP server {upstream.server}; walletd pays for the "
            "paid ones within this agent's budgets and says what it paid.",
            cls=ProxyServer,
        )
        server.link = link
        try:
            await serve(server, http, on_listening)
        finally:
            await link.aclose()
            group.cancel_scope.cancel()
