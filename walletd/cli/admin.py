"""Operator commands: clients, budgets, freeze.

They open the ledger directly, so they work while the daemon runs (SQLite WAL; the
daemon reads them per Pay).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from walletd.cli._common import ledger_options, open_store, settings_from
from walletd.cli._output import emit, json_option
from walletd.domain.money import format_usd, parse_usd

if TYPE_CHECKING:
    from walletd.domain.budget import Budget, BudgetState
    from walletd.domain.limits import LimitUsage
    from walletd.service.admin import LimitsView


def _store(data_dir: Path | None, config_path: Path | None, db_url: str) -> Any:
    return open_store(settings_from(data_dir, config_path, db_url=db_url))


@click.group()
def client() -> None:
    """Clients: the services allowed to ask walletd for payments."""


@client.command("add")
@click.argument("name")
@click.option(
    "--scopes",
    default="pay,read",
    show_default=True,
    help="Any of pay, read and approve (approve: decide payments held for approval).",
)
@ledger_options
@json_option
def client_add(
    name: str, scopes: str, data_dir: Path | None, config_path: Path | None, db_url: str,
    as_json: bool,
) -> None:  # fmt: skip
    """Create a client and print its bearer token once (only its hash is kept)."""
    from walletd.service import admin

    wanted = frozenset(s.strip() for s in scopes.split(",") if s.strip())
    token = admin.add_client(_store(data_dir, config_path, db_url), name, wanted)
    emit(
        as_json,
        {"client": name, "scopes": sorted(wanted), "token": token},
        [f"client {name} added with scopes {','.join(sorted(wanted))}",
         "token (shown once; store it in a file readable only by the service):", token],
    )  # fmt: skip


@client.command("list")
@ledger_options
@json_option
def client_list(
    data_dir: Path | None, config_path: Path | None, db_url: str, as_json: bool
) -> None:
    """List clients."""
    from walletd.service import admin

    rows = admin.list_clients(_store(data_dir, config_path, db_url))
    emit(
        as_json,
        {"clients": [
            {"name": c.name, "scopes": sorted(c.scopes), "revoked": c.revoked} for c in rows
        ]},
        [f"{c.name}\t{','.join(sorted(c.scopes))}\t{'revoked' if c.revoked else 'active'}"
         for c in rows],
    )  # fmt: skip


@client.command("revoke")
@click.argument("name")
@ledger_options
@json_option
def client_revoke(
    name: str, data_dir: Path | None, config_path: Path | None, db_url: str, as_json: bool
) -> None:
    """Revoke a client's token; its next call fails."""
    from walletd.service import admin

    admin.revoke_client(_store(data_dir, config_path, db_url), name)
    emit(as_json, {"client": name, "revoked": True}, [f"client {name} revoked"])


def _usd(_ctx: click.Context, _param: click.Parameter, value: str | None) -> int | None:
    from walletd.errors import InvalidRequestError

    if value is None:
        return None
    try:
        return parse_usd(value)
    except InvalidRequestError as exc:
        raise click.BadParameter(exc.message) from exc


def _approve_above(_ctx: click.Context, _param: click.Parameter, value: str | None) -> Any:
    """``off`` (remove the threshold), a USD amount, or None (not given)."""
    if value is None or value.strip().lower() == "off":
        return value and "off"
    return _usd(_ctx, _param, value)


def _budget_doc(budget: Budget, state: BudgetState) -> dict[str, Any]:
    windows = {
        w.window: {"limit": w.limit, "spent": w.spent, "remaining": w.remaining}
        for w in state.windows
    }
    return {
        "budget": state.client,
        "frozen": state.frozen,
        "windows": windows,
        "payees": sorted(budget.payees),
        "hosts": sorted(budget.hosts),
    }


def _rates(usage: LimitUsage) -> dict[str, dict[str, int]]:
    found = {}
    for window in usage.limit.rate_windows():
        allowed, count = usage.limit.rate(window), usage.counts.get(window, 0)
        assert allowed is not None
        found[f"payments_per_{window}"] = {
            "limit": allowed, "count": count, "remaining": max(allowed - count, 0)
        }  # fmt: skip
    return found


def _limits_doc(view: LimitsView) -> dict[str, Any]:
    from walletd.domain.budget import window_states

    scoped = []
    for usage in view.scoped:
        windows = {
            w.window: {"limit": w.limit, "spent": w.spent, "remaining": w.remaining}
            for w in window_states(usage.limit.budget, usage.spent)
        }
        scoped.append({"for": usage.limit.selector.text, "windows": windows,
                       "rates": _rates(usage)})  # fmt: skip
    return {
        "rates": _rates(view.own) if view.own is not None else {},
        "scoped": scoped,
        "warnings": list(view.warnings),
    }


def _rate_lines(usage: LimitUsage, indent: str) -> list[str]:
    return [
        f"{indent}{name:<20} limit {r['limit']}  signed {r['count']}  remaining {r['remaining']}"
        for name, r in _rates(usage).items()
    ]


def _limits_lines(view: LimitsView) -> list[str]:
    from walletd.domain.budget import window_states

    lines = _rate_lines(view.own, "  ") if view.own is not None else []
    for usage in view.scoped:
        lines.append(f"  for {usage.limit.selector.text}:")
        for w in window_states(usage.limit.budget, usage.spent):
            assert w.limit is not None
            assert w.remaining is not None
            lines.append(
                f"    {w.window:<12} limit {format_usd(w.limit)}  spent {format_usd(w.spent)}"
                f"  remaining {format_usd(w.remaining)}"
            )
        lines += _rate_lines(usage, "    ")
    lines += [f"  warning: {text}" for text in view.warnings]
    return lines


def _show(store: Any, name: str | None, as_json: bool) -> None:
    from walletd.service import admin

    budget_, state = admin.show_budget(store, name)
    view = admin.show_limits(store, name)
    threshold = admin.approval_threshold(store, name)
    above = "none" if threshold is None else f"{format_usd(threshold)} USD"
    emit(
        as_json,
        _budget_doc(budget_, state) | {"approve_above": threshold} | _limits_doc(view),
        [*_budget_lines(budget_, state), f"  approval above: {above}", *_limits_lines(view)],
    )


def _budget_lines(budget: Budget, state: BudgetState) -> list[str]:
    lines = [f"budget {state.client}{' (payments frozen)' if state.frozen else ''}"]
    for w in state.windows:
        assert w.limit is not None
        assert w.remaining is not None
        lines.append(
            f"  {w.window:<12} limit {format_usd(w.limit)}  spent {format_usd(w.spent)}"
            f"  remaining {format_usd(w.remaining)}"
        )
    if not state.windows:
        lines.append("  no amount limits (a client without any is refused)")
    lines.append(f"  payees: {', '.join(sorted(budget.payees)) or 'any'}")
    lines.append(f"  hosts: {', '.join(sorted(budget.hosts)) or 'any'}")
    return lines


@click.group()
def budget() -> None:
    """Budgets: per-request, hourly and daily (rolling), monthly (UTC), total; rate limits."""


def _selector(_ctx: click.Context, _param: click.Parameter, value: str | None) -> str | None:
    from walletd.domain.limits import parse_selector
    from walletd.errors import InvalidRequestError

    if value is None:
        return None
    try:
        return parse_selector(value).text
    except InvalidRequestError as exc:
        raise click.BadParameter(exc.message) from exc


@budget.command("set")
@click.argument("name", required=False)
@click.option("--global", "is_global", is_flag=True, help="Cap all clients together.")
@click.option("--per-request", callback=_usd, help="USD, e.g. 0.05")
@click.option("--hourly", callback=_usd, help="USD over the last 60 minutes.")
@click.option("--daily", callback=_usd, help="USD over the last 24 hours.")
@click.option("--monthly", callback=_usd, help="USD in the current UTC calendar month.")
@click.option("--total", callback=_usd, help="USD over the lifetime.")
@click.option("--payee", multiple=True, help="Only pay these addresses (repeat).")
@click.option("--host", multiple=True, help="Only pay for URLs on these hosts (repeat).")
@click.option(
    "--clear",
    is_flag=True,
    help="Remove every limit (and the approval threshold) before applying the others.",
)
@click.option(
    "--approve-above",
    callback=_approve_above,
    help="USD: hold payments above this for a human approval (`walletd approve`); off: never.",
)
@click.option(
    "--for", "selector", callback=_selector, metavar="SELECTOR",
    help="A scoped budget: label:KEY=VALUE, host=HOST or payee=0x... (its own windows).",
)  # fmt: skip
@click.option(
    "--max-payments", type=click.IntRange(min=0), help="Signed payments allowed per --per."
)
@click.option(
    "--per", type=click.Choice(["minute", "hour", "day"]), help="The rolling rate window."
)
@ledger_options
@json_option
def budget_set(
    name: str | None, is_global: bool, per_request: int | None, hourly: int | None,
    daily: int | None, monthly: int | None, total: int | None, payee: tuple[str, ...],
    host: tuple[str, ...], clear: bool, approve_above: int | str | None, selector: str | None,
    max_payments: int | None, per: str | None, data_dir: Path | None, config_path: Path | None,
    db_url: str, as_json: bool,
) -> None:  # fmt: skip
    """Set limits for client NAME (or --global); options not given keep their value.

    Amounts are USD. A limit of 0 refuses every payment in that window (it
    does not mean "no limit"). A client with no amount limit at all is
    refused. To remove one limit, give --clear with every limit, payee and
    host to keep, e.g. `budget set svc --clear --daily 5` drops all but daily
    (and the rate limits).

    --max-payments N --per minute|hour|day caps the signed payments in any
    rolling minute, hour or day (each window is kept; give one per command).

    --for SELECTOR sets a scoped budget: extra windows that the payments it
    selects must also fit, e.g. `--for label:tool=summarize --daily 0.10`,
    `--for host=api.example.com --daily 1`, `--for payee=0x... --monthly 20`.
    --clear with --for starts that scoped budget over; `--for S --clear` alone
    removes it. --payee and --host stay allowlists of the own budget.
    """
    from walletd.service import admin

    if is_global == bool(name):
        raise click.UsageError("give a client NAME or --global (one of them)")
    if (max_payments is None) != (per is None):
        raise click.UsageError("--max-payments and --per go together")
    if selector is not None and (payee or host):
        raise click.UsageError("--payee and --host are allowlists of the own budget, not --for")
    change = admin.BudgetChange(
        per_request=per_request, hourly=hourly, daily=daily, monthly=monthly, total=total,
        payees=frozenset(_checked_payees(payee)) if payee else None,
        hosts=frozenset(host) if host else None, clear=clear,
        rates={per: max_payments} if per is not None and max_payments is not None else {},
        selector=selector,
        approve_above=approve_above if isinstance(approve_above, int) else None,
        approve_above_off=approve_above == "off",
    )  # fmt: skip
    store = _store(data_dir, config_path, db_url)
    admin.set_budget(store, name, change)
    _show(store, name, as_json)


def _checked_payees(payees: tuple[str, ...]) -> list[str]:
    for p in payees:
        if len(p) != 42 or not p.startswith("0x"):
            raise click.BadParameter(f"not an address: {p}", param_hint="--payee")
        try:
            int(p[2:], 16)
        except ValueError as exc:
            raise click.BadParameter(f"not an address: {p}", param_hint="--payee") from exc
    return list(payees)


@budget.command("show")
@click.argument("name", required=False)
@click.option("--global", "is_global", is_flag=True, help="The global budget (all clients).")
@ledger_options
@json_option
def budget_show(
    name: str | None, is_global: bool, data_dir: Path | None, config_path: Path | None,
    db_url: str, as_json: bool,
) -> None:  # fmt: skip
    """Show a client's (or the global) limits, spent and remaining, and contradictions."""
    if is_global == bool(name):
        raise click.UsageError("give a client NAME or --global (one of them)")
    _show(_store(data_dir, config_path, db_url), name, as_json)


def _freeze_command(frozen: bool) -> click.Command:
    verb = "freeze" if frozen else "unfreeze"

    @click.command(verb)
    @ledger_options
    @json_option
    def command(
        data_dir: Path | None, config_path: Path | None, db_url: str, as_json: bool
    ) -> None:
        from walletd.service import admin

        admin.set_frozen(_store(data_dir, config_path, db_url), frozen)
        emit(as_json, {"frozen": frozen}, [f"payments {'frozen' if frozen else 'resumed'}"])

    command.help = "Stop every payment at once." if frozen else "Resume payments."
    return command


COMMANDS = (client, budget, _freeze_command(True), _freeze_command(False))
