"""The ``walletd`` command: daemon, operator and client commands.

Each sub-module owns one group of commands; this module only assembles them
and turns every ``WalletdError`` into a one-line message and an exit code.
"""

from __future__ import annotations

import os
from typing import Any

import click

from walletd.cli import _output
from walletd.errors import WalletdError


class _Group(click.Group):
    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except WalletdError as err:
            _output.fail(err, bool(ctx.meta.get("walletd.json")))


@click.group(cls=_Group)
@click.version_option(package_name="walletd")
def main() -> None:
    """walletd: pays x402 demands for a fleet of services, within budgets."""
    # Every file walletd makes (ledger, WAL, key, socket) is for its owner only.
    os.umask(0o077)


def _register() -> None:
    from walletd.cli import (
        admin,
        api_cmds,
        approval_cmds,
        chain_cmds,
        config_cmds,
        db_cmds,
        key_cmds,
        mcp_cmds,
        network_cmds,
        pay,
        payment_cmds,
        report_cmds,
        serve_cmds,
    )

    groups = (
        key_cmds, serve_cmds, db_cmds, admin, pay, api_cmds, chain_cmds, payment_cmds,
        config_cmds, report_cmds, mcp_cmds, approval_cmds, network_cmds,
    )  # fmt: skip
    for command in (cmd for group in groups for cmd in group.COMMANDS):
        main.add_command(command)


_register()
