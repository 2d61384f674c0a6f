"""Options shared by the commands that open the ledger or the key.

Server-side modules are imported inside functions, so the client commands work
with only the thin client installed (``pip install walletd``).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

if TYPE_CHECKING:
    from walletd.config import Settings
    from walletd.db.ledger import Store

F = TypeVar("F", bound=Callable[..., Any])


def ledger_options(func: F) -> F:
    """``--data-dir``, ``--config`` and ``--db-url``."""
    func = click.option(
        "--db-url",
        default="",
        help="SQLAlchemy URL of the ledger (default: SQLite in DIR). No password here: "
        "it would show in ps; use the config file or [db] url_file.",
    )(func)
    func = click.option(
        "--config",
        "config_path",
        type=click.Path(path_type=Path, dir_okay=False),
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
