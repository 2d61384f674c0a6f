"""Output for every command: human lines by default, one JSON object with ``--json``.

Errors go to stderr; with ``--json`` the error object also goes to stdout, so a
script that parses stdout gets one JSON object whether the command worked or
not. Exit codes: 0 success, 1 error, 2 usage error (click's own), 3 a refusal
(the payment was refused; nothing signed).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterable, Mapping
from typing import Any, TypeVar

import click

from walletd.errors import RefusedError, WalletdError

EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_REFUSED = 3

F = TypeVar("F", bound=Callable[..., Any])


def _remember_json(ctx: click.Context, _param: click.Parameter, value: bool) -> bool:
    ctx.find_root().meta["walletd.json"] = value
    return value


def json_option(func: F) -> F:
    """Add ``--json`` to a command and remember it for error output too."""
    option = click.option(
        "--json",
        "as_json",
        is_flag=True,
        expose_value=True,
        is_eager=True,
        callback=_remember_json,
        help="Print one JSON object instead of text.",
    )
    return option(func)


def emit(as_json: bool, data: Mapping[str, Any], lines: Iterable[str]) -> None:
    """Print ``data`` as JSON, or ``lines`` as text."""
    if as_json:
        click.echo(json.dumps(data, sort_keys=True))
    else:
        for line in lines:
            click.echo(line)


def fail(err: WalletdError, as_json: bool) -> None:
    """Report a WalletdError on stderr and exit with its code."""
    code = EXIT_REFUSED if isinstance(err, RefusedError) else EXIT_ERROR
    if as_json:
        doc = {"error": {"reason": err.reason, "message": err.message, "details": err.details}}
        line = json.dumps(doc, sort_keys=True)
        click.echo(line)
        click.echo(line, err=True)
    else:
        click.echo(f"walletd: {err.reason}: {err.message}", err=True)
    sys.exit(code)
