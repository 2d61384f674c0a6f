"""Options shared by the commands that open the ledger or the key.

Server-side modules are imported inside functions, so the client commands work
with only the thin client installed (``pip install walletd``).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import urlsplit

import click

if TYPE_CHECKING:
    from walletd.config import Settings
    from walletd.db.ledger import Store

F = TypeVar("F", bound=Callable[..., Any])

SOCKET_HELP = "Daemon socket (default $WALLETD_SOCKET, else ~/.local/share/walletd/walletd.sock)."
TOKEN_FILE_HELP = "File holding the client token (default $WALLETD_TOKEN_FILE)."  # noqa: S105 (a help text)


def check_db_url(_ctx: click.Context, _param: click.Parameter, value: str) -> str:
    """A ``--db-url`` that is not a SQLite or PostgreSQL URL is a usage error (exit 2)."""
    if not value:
        return value
    from walletd.db.engine import url_problems

    problems = url_problems(value, name=repr(value))
    if problems:
        raise click.BadParameter(problems[0])
    return value


def http_url_check(*schemes: str) -> Callable[[click.Context, click.Parameter, Any], Any]:
    """A click callback refusing (exit 2) a value that is not a URL with one of ``schemes``."""

    def check(_ctx: click.Context, _param: click.Parameter, value: Any) -> Any:
        if not value:
            return value
        parts = urlsplit(value)
        if parts.scheme not in schemes or not parts.hostname:
            raise click.BadParameter(
                f"{value!r} is not a URL (want {' or '.join(s + '://HOST/...' for s in schemes)})"
            )
        return value

    return check


def ledger_options(func: F) -> F:
    """``--data-dir``, ``--config`` and ``--db-url``."""
    func = click.option(
        "--db-url",
        default="",
        callback=check_db_url,
        help="SQLAlchemy URL of the ledger (default: SQLite in DIR). No password here: "
        "it would show in ps; use the config file or [db] url_file.",
    )(func)
    return settings_options(func)


def config_options(func: F) -> F:
    """``--data-dir`` and ``--config`` (which must exist), for commands that read no ledger."""
    return settings_options(func, config_must_exist=True)


def settings_options(func: F, *, config_must_exist: bool = False) -> F:
    """``--data-dir`` and ``--config``: where the settings come from."""
    func = click.option(
        "--config",
        "config_path",
        type=click.Path(path_type=Path, dir_okay=False, exists=config_must_exist),
        default=None,
        help="TOML config file (default: DIR/walletd.toml if it exists).",
    )(func)
    return click.option(
        "--data-dir",
        type=click.Path(path_type=Path, file_okay=False),
        default=None,
        envvar="WALLETD_DATA_DIR",
        help="Data directory (default: ~/.local/share/walletd).",
    )(func)


def settings_from(data_dir: Path | None, config_path: Path | None, **overrides: Any) -> Settings:
    """Load settings with CLI overrides; a ``--db-url``/``--rpc-url`` with a credential is refused.

    The overrides come from argv, which every local user can read (``ps``).
    """
    from walletd.config import load_settings, refuse_argv_credentials

    refuse_argv_credentials(
        db_url=overrides.get("db_url") or "", rpc_url=overrides.get("rpc_url") or ""
    )
    return load_settings(data_dir, config_path, **overrides)


def open_store(settings: Settings, *, check_schema: bool = True) -> Store:
    """Open the ledger, refusing an out-of-date schema."""
    from walletd.db import migrate
    from walletd.db.engine import make_engines
    from walletd.db.ledger import Store

    engines = make_engines(settings.ledger_url)
    if check_schema:
        migrate.require_current(engines.read)
    return Store(engines)


_HELP_PASSFILE = (
    "File holding the passphrase "
    "(else $CREDENTIALS_DIRECTORY/walletd-passphrase, else a TTY prompt)."
)


def passphrase_option(func: click.decorators.FC) -> click.decorators.FC:
    """``--passphrase-file``: where the key's passphrase comes from (never argv or the env)."""
    return click.option(
        "--passphrase-file",
        type=click.Path(path_type=Path, dir_okay=False, exists=True),
        default=None,
        help=_HELP_PASSFILE,
    )(func)
