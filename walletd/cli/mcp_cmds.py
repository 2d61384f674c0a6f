"""``walletd mcp``: an MCP server for agents, paying through the running daemon.

It authenticates as its own client (``--token-file``/``$WALLETD_TOKEN_FILE``), so
an operator gives each agent a client with its own budgets and scopes. stdout
belongs to the MCP protocol in stdio mode: everything this command says (the
address it listens on, an error) goes to stderr, as one JSON object with ``--json``.
Only the thin client and the ``mcp`` extra are imported.
"""

from __future__ import annotations

import json
import shlex
import sys
from pathlib import Path
from typing import Any

import click

from walletd.cli._common import SOCKET_HELP, TOKEN_FILE_HELP, http_url_check
from walletd.cli._output import EXIT_ERROR
from walletd.errors import InvalidRequestError, WalletdError

DEFAULT_MAX_RESPONSE_BYTES = 1 << 20


def _say(as_json: bool, text: str, **doc: Any) -> None:
    """One line on stderr (never stdout: in stdio mode it carries the protocol)."""
    click.echo(json.dumps(doc, sort_keys=True) if as_json else f"walletd mcp: {text}", err=True)


def _fail(as_json: bool, err: WalletdError) -> None:
    doc = {"reason": err.reason, "message": err.message, "details": err.details}
    _say(as_json, f"{err.reason}: {err.message}", error=doc)
    sys.exit(EXIT_ERROR)


@click.command("mcp")
@click.option(
    "--base-url",
    default=None,
    envvar="WALLETD_API_BASE_URL",
    callback=http_url_check("http", "https"),
    help="An OpenAI-style paid API root (e.g. https://host/v1) for the chat, image "
    "and models tools (default $WALLETD_API_BASE_URL; without it they are left "
    "out).",
)
@click.option("--socket", envvar="WALLETD_SOCKET", default=None, help=SOCKET_HELP)
@click.option(
    "--token-file",
    envvar="WALLETD_TOKEN_FILE",
    default=None,
    type=click.Path(path_type=Path, exists=True, dir_okay=False),
    help=TOKEN_FILE_HELP + " Give the agent its own client, with its own budget.",
)
@click.option(
    "--http",
    "http_address",
    default=None,
    metavar="HOST:PORT",
    help="Serve streamable HTTP at http://HOST:PORT/mcp instead of stdio; HOST must be "
    "loopback (127.0.0.1, ::1, localhost); port 0 picks a free one.",
)
@click.option(
    "--upstream",
    default=None,
    callback=http_url_check("http", "https"),
    help="Proxy mode: re-expose the tools of the MCP server at this streamable HTTP "
    "URL unchanged, paying its paid tools through walletd.",
)
@click.option(
    "--upstream-command",
    default=None,
    metavar="'CMD ARGS...'",
    help="Proxy mode for a stdio MCP server: the command line that starts it, one "
    "shell-quoted string (it gets no WALLETD_* variable).",
)
@click.option(
    "--upstream-name",
    default="",
    metavar="NAME",
    help="The name the daemon's policy (host allowlist) and the payment labels see for a "
    "--upstream-command server (default: its module or program name).",
)
@click.option(
    "--max-response-bytes",
    type=click.IntRange(min=1),
    default=DEFAULT_MAX_RESPONSE_BYTES,
    show_default=True,
    help="paid_fetch returns at most this many bytes of a body.",
)
@click.option(
    "--timeout",
    type=click.FloatRange(min=0, min_open=True),
    default=120.0,
    show_default=True,
    help="Seconds to wait for each HTTP answer, or for an upstream tool call.",
)
@click.option(
    "--wait-for-approval",
    type=click.FloatRange(min=0),
    default=0.0,
    show_default=True,
    metavar="SECONDS",
    help="How long a paid call held for human approval waits for the decision before "
    "its tool error says 'awaiting approval'; 0 answers at once (the agent then calls "
    "again with the same arguments). Keep it below the MCP host's own tool timeout.",
)
@click.option(
    "--json",
    "as_json",
    is_flag=True,
    help="Print the listening address and errors as JSON objects (on stderr; stdout "
    "carries the MCP protocol).",
)
def mcp(
    base_url: str | None, socket: str | None, token_file: Path | None, http_address: str | None,
    upstream: str | None, upstream_command: str | None, upstream_name: str,
    max_response_bytes: int, timeout: float, wait_for_approval: float, as_json: bool,
) -> None:  # fmt: skip
    """Serve MCP tools that pay through walletd (stdio unless --http).

    Gateway mode (the default): paid_fetch, wallet_budget, wallet_payments and,
    with --base-url, chat, image and models. Proxy mode (--upstream or
    --upstream-command): an upstream MCP server's tools, unchanged.
    """
    try:
        _serve(base_url, socket, token_file, http_address, upstream, upstream_command,
               upstream_name, max_response_bytes, timeout, wait_for_approval,
               as_json)  # fmt: skip
    except WalletdError as err:
        _fail(as_json, err)


def _serve(
    base_url: str | None, socket: str | None, token_file: Path | None, http_address: str | None,
    upstream: str | None, upstream_command: str | None, upstream_name: str,
    max_response_bytes: int, timeout: float, wait_for_approval: float, as_json: bool,
) -> None:  # fmt: skip
    try:
        import anyio

        from walletd.client import WalletdSettings
        from walletd.mcp import server
        from walletd.mcp.gateway import GatewayOptions
    except ImportError as exc:  # the mcp extra is missing
        raise click.ClickException(
            f"walletd mcp needs the mcp extra: pip install 'walletd[mcp]' ({exc.name} missing)"
        ) from None
    if upstream and upstream_command:
        raise click.UsageError("give --upstream or --upstream-command, not both")
    command = shlex.split(upstream_command) if upstream_command else []
    if upstream_command is not None and not command:
        raise click.UsageError("--upstream-command is empty")
    if upstream_name:
        from walletd.client import tool_resource_url

        try:
            tool_resource_url(upstream_name, "probe")
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="--upstream-name") from None
    try:
        http = server.HttpAddress.parse(http_address) if http_address else None
    except InvalidRequestError as err:
        raise click.BadParameter(err.message, param_hint="--http") from None
    settings = WalletdSettings(
        socket=socket, token_file=token_file, labels={"via": "mcp"},
        wait_for_approval=wait_for_approval,
    )  # fmt: skip

    def listening(where: str) -> None:
        _say(as_json, f"serving on {where}", listening=where)

    if upstream or command:
        from walletd.mcp.proxy import Upstream, run_proxy

        target = Upstream(upstream, tuple(command), timeout, upstream_name)
        anyio.run(run_proxy, settings, target, http, listening)
        return
    options = GatewayOptions(
        base_url=base_url, max_response_bytes=max_response_bytes, timeout=timeout
    )
    anyio.run(server.run_gateway, settings, options, http, listening)


COMMANDS = (mcp,)
