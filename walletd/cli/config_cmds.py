"""``walletd config check``: validate a config file and show what the daemon would use.

An operator's first question after editing ``walletd.toml`` is "what will the
daemon actually run with?". This answers it without starting anything: the
file is loaded the way ``serve`` loads it (defaults, file, nothing else),
validated, checked for the mistakes ``serve`` would only find at start (TCP
without TLS, unreadable TLS files, an unparsable database URL), and printed
with every secret redacted: a password in the database URL, and the path and
query of the chain RPC URL (providers put API keys there).
"""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

import click

from walletd.cli._common import config_options
from walletd.cli._output import emit, json_option

if TYPE_CHECKING:
    from walletd.config import Settings

REDACTED = "***"


def redact_http_url(url: str) -> str:
    """``scheme://host[:port]`` of an HTTP(S)/WS URL, with credentials, path and query hidden."""
    if not url:
        return url
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    if parts.username or parts.password:
        host = f"{REDACTED}@{host}"
    hidden = parts.path not in ("", "/") or parts.query or parts.fragment
    return urlunsplit((parts.scheme, host, f"/{REDACTED}" if hidden else parts.path, "", ""))


def effective(settings: Settings) -> dict[str, Any]:
    """Every setting by name, secrets redacted, paths and derived values spelled out."""
    from walletd.db.engine import redacted

    doc: dict[str, Any] = {}
    for f in fields(settings):
        value = getattr(settings, f.name)
        doc[f.name] = list(value) if isinstance(value, tuple) else value
    doc["data_dir"] = str(settings.data_dir)
    doc["db_url"] = redacted(settings.db_url) if settings.db_url else ""
    doc["rpc_url"] = redact_http_url(settings.rpc_url)
    doc["ledger"] = redacted(settings.ledger_url)
    doc["socket_path"] = str(settings.socket_path)
    doc["keystore_path"] = str(settings.keystore_path)
    return doc


def problems(settings: Settings) -> list[str]:
    """What ``serve`` would refuse at start, found now."""
    found = []
    if settings.listen and not (settings.tls_cert and settings.tls_key):
        found.append("rpc.listen needs rpc.tls_cert and rpc.tls_key (TCP is TLS only)")
    if (settings.tls_cert or settings.tls_key or settings.tls_client_ca) and not settings.listen:
        found.append("TLS files are set but rpc.listen is empty")
    for name in ("tls_cert", "tls_key", "tls_client_ca"):
        path = getattr(settings, name)
        if path and not Path(path).is_file():
            found.append(f"rpc.{name}: no readable file at {path}")
    if settings.db_url:
        found.extend(_db_url_problem(settings.db_url))
    if settings.socket_group and not _group_exists(settings.socket_group):
        found.append(f"rpc.socket_group: no group named {settings.socket_group!r}")
    return found


def _group_exists(name: str) -> bool:
    import grp

    try:
        grp.getgrnam(name)
    except KeyError:
        return False
    return True


def _db_url_problem(url: str) -> list[str]:
    from walletd.db.engine import url_problems

    return url_problems(url)


@click.group()
def config() -> None:
    """The configuration file."""


@config.command("check")
@config_options
@json_option
def config_check(config_path: Path | None, data_dir: Path | None, as_json: bool) -> None:
    """Validate the config and print the effective settings (secrets redacted); exit 1 if wrong."""
    from walletd.config import load_settings
    from walletd.errors import InvalidRequestError

    settings = load_settings(data_dir, config_path)
    source = config_path or settings.data_dir / "walletd.toml"
    found = problems(settings)
    if found:
        raise InvalidRequestError("; ".join(found), {"problems": str(len(found))})
    doc = effective(settings)
    shown = str(source) if config_path or source.exists() else "(none: defaults)"
    lines = [f"config: {shown}", "ok"] + [f"{k} = {v}" for k, v in doc.items()]
    emit(as_json, {"config": shown, "ok": True, "settings": doc}, lines)


COMMANDS = (config,)
