"""Daemon settings: defaults, then a TOML file, then command-line flags.

Secrets are never settings. The passphrase comes from a file path, systemd
credentials or a TTY (``walletd.keys.passphrase``); tokens come from files. A
database or RPC URL that carries a credential belongs in the config file or in
a file named by ``[db] url_file`` / ``[chain] rpc_url_file``, never on the
command line (``refuse_argv_credentials``), where ``ps`` shows it to every user.
Unknown keys in the TOML file are an error, so a typo cannot silently leave a
limit at its default.
"""

from __future__ import annotations

import ipaddress
import os
import tomllib
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from walletd.domain.direct import DEFAULT_PROOF_HEADER, ProofHeaders, check_header_name
from walletd.domain.money import parse_usd
from walletd.domain.networks import (
    DEFAULT_ASSETS,
    DEFAULT_ENABLED,
    KNOWN_NETWORKS,
    known_asset_entry,
)
from walletd.domain.policy import Limits
from walletd.errors import InvalidRequestError

SOCKET_MODES = ("0600", "0660")
"""The Unix socket modes walletd allows: owner only, or owner and group (never others)."""

DEFAULT_MAX_FEE_PER_GAS_WEI = 100 * 10**9
"""100 gwei: thousands of times Base's usual fee, far under what a lying node could ask."""
LOOPBACK_HOSTS = frozenset({"localhost", "127.0.0.1", "::1"})
_CREDENTIAL_QUERY_WORDS = ("pass", "secret", "token", "key", "auth", "sig")


def sqlite_url(data_dir: Path) -> str:
    """The default ledger URL: ``walletd.db`` inside the data dir."""
    return f"sqlite:///{data_dir / 'walletd.db'}"


def default_data_dir() -> Path:
    """``$XDG_DATA_HOME/walletd``, else ``~/.local/share/walletd``."""
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "walletd"


@dataclass(frozen=True)
class Settings:
    """Everything the daemon and the admin commands need to know."""

    data_dir: Path = field(default_factory=default_data_dir)
    db_url: str = ""
    """SQLAlchemy URL of the ledger; empty means ``sqlite:///<data_dir>/walletd.db``."""
    db_url_file: str = ""
    """A file holding ``db_url`` (for a URL with a password); read at load time."""
    socket: str = ""
    """Unix socket path; empty means ``<data_dir>/walletd.sock``."""
    socket_group: str = ""
    """Group given the Unix socket; empty keeps the daemon's own group."""
    socket_mode: str = "0600"
    """``0600`` (owner only) or ``0660`` (the socket's group may connect too); others never."""
    listen: str = ""
    """Optional TCP ``HOST:PORT``, only ever with TLS."""
    tls_cert: str = ""
    tls_key: str = ""
    tls_client_ca: str = ""
    """When set, TCP clients must present a certificate signed by this CA (mutual TLS)."""
    networks: tuple[str, ...] = DEFAULT_ENABLED
    """Enabled networks (CAIP-2). Base only by default; `walletd networks` lists them all."""
    assets: tuple[str, ...] = DEFAULT_ASSETS
    """Stablecoins paid in: ``SYMBOL`` or ``CAIP2/SYMBOL`` entries; empty: every pinned one."""
    max_validity_seconds: int = 300
    max_demand_timeout_seconds: int = 3600
    rpc_url: str = ""
    """Chain JSON-RPC URL used for on-chain checks; empty means none.

    ``https://`` anywhere; ``http://`` only to a loopback host."""
    rpc_url_file: str = ""
    """A file holding ``rpc_url`` (for a URL with an API key); read at load time."""
    max_fee_per_gas_wei: int = DEFAULT_MAX_FEE_PER_GAS_WEI
    """The most walletd pays per gas for its own transactions (direct transfers, cancels)."""
    reconcile_interval_seconds: float = 30.0
    """How often the daemon's reconciler looks at open payments (only with ``rpc_url``)."""
    expiry_margin_seconds: int = 30
    """Chain-time seconds past validBefore before an unreported authorization is judged."""
    low_balance_usd: str = ""
    """USD amount (e.g. "5.00"): a USDC balance under it logs a warning and shows in status."""
    direct_proof_header: str = DEFAULT_PROOF_HEADER
    """Header carrying a direct transfer's hash (``[direct] proof_header``)."""
    direct_host_headers: tuple[tuple[str, str], ...] = ()
    """Per-host proof header names (``[direct.hosts]``, ``"host" = "Header-Name"``)."""
    direct_receipt_timeout_seconds: float = 60.0
    """How long Pay waits for a direct transfer to be mined before it returns the hash anyway."""
    approval_max_wait_seconds: int = 900
    """How long a payment held for approval waits at most (less if its demand's
    maxTimeoutSeconds is shorter); then it expires and its reservation is released."""
    log_json: bool = False
    metrics_listen: str = ""
    """Prometheus metrics ``HOST:PORT`` (or a bare port, on 127.0.0.1); empty: off."""

    @property
    def ledger_url(self) -> str:
        """The ledger URL, defaulting to SQLite in the data dir."""
        return self.db_url or sqlite_url(self.data_dir)

    @property
    def socket_path(self) -> Path:
        """The Unix socket the daemon listens on."""
        return Path(self.socket) if self.socket else self.data_dir / "walletd.sock"

    @property
    def keystore_path(self) -> Path:
        """The encrypted key file."""
        return self.data_dir / "key.json"

    @property
    def low_balance(self) -> int:
        """The low-balance threshold in USDC atomic units (0: none)."""
        return parse_usd(self.low_balance_usd) if self.low_balance_usd else 0

    def proof_headers(self) -> ProofHeaders:
        """The direct-transfer proof header names, default and per host."""
        return ProofHeaders(self.direct_proof_header, dict(self.direct_host_headers))

    def limits(self) -> Limits:
        """The daemon-wide policy limits."""
        return Limits(
            self.networks,
            self.max_validity_seconds,
            self.max_demand_timeout_seconds,
            assets=self.assets,
        )


_SECTIONS = {
    "db": {"url": "db_url", "url_file": "db_url_file"},
    "rpc": {
        "socket": "socket",
        "socket_group": "socket_group",
        "socket_mode": "socket_mode",
        "listen": "listen",
        "tls_cert": "tls_cert",
        "tls_key": "tls_key",
        "tls_client_ca": "tls_client_ca",
    },
    "policy": {
        "networks": "networks",
        "assets": "assets",
        "max_validity_seconds": "max_validity_seconds",
        "max_demand_timeout_seconds": "max_demand_timeout_seconds",
    },
    "chain": {
        "rpc_url": "rpc_url",
        "rpc_url_file": "rpc_url_file",
        "max_fee_per_gas_wei": "max_fee_per_gas_wei",
        "reconcile_interval_seconds": "reconcile_interval_seconds",
        "expiry_margin_seconds": "expiry_margin_seconds",
        "low_balance": "low_balance_usd",
    },
    "approvals": {"max_wait_seconds": "approval_max_wait_seconds"},
    "log": {"json": "log_json"},
    "metrics": {"listen": "metrics_listen"},
    "direct": {
        "proof_header": "direct_proof_header",
        "hosts": "direct_host_headers",
        "receipt_timeout_seconds": "direct_receipt_timeout_seconds",
    },
}


def _from_toml(path: Path) -> dict[str, Any]:
    try:
        doc = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise InvalidRequestError(f"cannot read config {path}: {exc}") from exc
    values: dict[str, Any] = {}
    for section, body in doc.items():
        keys = _SECTIONS.get(section)
        if keys is None or not isinstance(body, dict):
            raise InvalidRequestError(f"{path}: unknown section [{section}]")
        for key, value in body.items():
            if key not in keys:
                raise InvalidRequestError(f"{path}: unknown key {section}.{key}")
            values[keys[key]] = tuple(value) if isinstance(value, list) else value
    return values


def validate(settings: Settings) -> Settings:
    """Refuse settings that cannot be right."""
    known = {n.caip2 for n in KNOWN_NETWORKS}
    if not settings.networks or set(settings.networks) - known:
        raise InvalidRequestError(
            f"networks must be a non-empty subset of {sorted(known)} (see `walletd networks`)"
        )
    unknown = [a for a in settings.assets if not known_asset_entry(a)]
    if unknown:
        raise InvalidRequestError(
            f"policy.assets: {unknown[0]!r} names no pinned stablecoin; use a symbol such as "
            '"USDC" or "CAIP2/SYMBOL" such as "eip155:42220/USDT" (see `walletd networks`)'
        )
    if not 10 <= settings.max_validity_seconds <= settings.max_demand_timeout_seconds:
        raise InvalidRequestError("need 10 <= max_validity_seconds <= max_demand_timeout_seconds")
    if not settings.reconcile_interval_seconds > 0 or settings.expiry_margin_seconds < 0:
        raise InvalidRequestError("need reconcile_interval_seconds > 0, expiry_margin_seconds >= 0")
    _ = settings.low_balance  # a malformed amount is refused at load time
    if settings.socket_mode not in SOCKET_MODES:
        raise InvalidRequestError(f"rpc.socket_mode must be one of {', '.join(SOCKET_MODES)}")
    wait = settings.approval_max_wait_seconds
    if type(wait) is not int or not 1 <= wait <= 86_400:
        raise InvalidRequestError("approvals.max_wait_seconds must be an integer in 1..86400")
    if not settings.direct_receipt_timeout_seconds > 0:
        raise InvalidRequestError("need direct.receipt_timeout_seconds > 0")
    fee_cap = settings.max_fee_per_gas_wei
    if type(fee_cap) is not int or fee_cap <= 0:
        raise InvalidRequestError("chain.max_fee_per_gas_wei must be a positive integer (wei)")
    check_rpc_url(settings.rpc_url)
    return replace(settings, direct_host_headers=_host_headers(settings))


def is_loopback_host(host: str) -> bool:
    """Whether ``host`` (a name or an IP, brackets allowed) is this machine's loopback."""
    host = host.strip("[]").lower()
    if host in LOOPBACK_HOSTS:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_rpc_url(url: str) -> None:
    """Refuse an RPC URL a network attacker could read or answer for.

    The node's answers decide fees, balances and whether payments settled, so
    plain ``http://`` is accepted only to a loopback host (a local node or a
    TLS-terminating proxy); anything else needs ``https://``.
    """
    if not url:
        return
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    host = parts.hostname or ""
    if scheme == "https" and host:
        return
    if scheme == "http" and is_loopback_host(host):
        return
    shown = f"{scheme}://{host}" if host else repr(url.split("?")[0][:40])
    raise InvalidRequestError(
        f"chain.rpc_url {shown} refused: use https://, or http:// only to a loopback host "
        "(127.0.0.1, ::1, localhost)",
        {"setting": "rpc_url"},
    )


def url_credential(url: str, *, user_is_secret: bool) -> str:
    """What credential ``url`` carries ("" for none): a password, a key in the query.

    ``user_is_secret``: RPC providers put API keys in the user part; a database
    user name is not a secret.
    """
    parts = urlsplit(url)
    if parts.password:
        return "a password"
    if user_is_secret and parts.username:
        return "a user name (often an API key)"
    for name, _value in parse_qsl(parts.query, keep_blank_values=True):
        if any(word in name.lower() for word in _CREDENTIAL_QUERY_WORDS):
            return f"a credential in the query ({name}=)"
    return ""


def refuse_argv_credentials(db_url: str = "", rpc_url: str = "") -> None:
    """Refuse ``--db-url`` / ``--rpc-url`` values that carry a credential.

    Command lines are world-readable (``ps``, /proc/<pid>/cmdline) and land in
    shell history. The message never quotes the URL.
    """
    for flag, section, url, user_is_secret in (
        ("--db-url", "[db] url_file", db_url, False),
        ("--rpc-url", "[chain] rpc_url_file", rpc_url, True),
    ):
        found = url_credential(url, user_is_secret=user_is_secret) if url else ""
        if found:
            raise InvalidRequestError(
                f"{flag} carries {found}, which every user can read in ps; put the URL in "
                f"the config file or in a 0600 file named by {section}",
                {"flag": flag},
            )


def _read_url_file(path: str, what: str) -> str:
    """The URL held by a credential file (one line; surrounding whitespace dropped)."""
    try:
        text = Path(path).read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidRequestError(f"cannot read {what} {path}: {exc}", {"path": path}) from None
    if not text or "\n" in text:
        raise InvalidRequestError(f"{what} {path} must hold exactly one URL", {"path": path})
    return text


def _with_url_files(settings: Settings) -> Settings:
    """``db_url`` and ``rpc_url`` filled from their files, when those are named."""
    for url_name, file_name, what in (
        ("db_url", "db_url_file", "db.url_file"),
        ("rpc_url", "rpc_url_file", "chain.rpc_url_file"),
    ):
        path = getattr(settings, file_name)
        if not path:
            continue
        if getattr(settings, url_name):
            raise InvalidRequestError(f"give {url_name.replace('_', '.')} or {what}, not both")
        values: dict[str, Any] = {url_name: _read_url_file(path, what)}
        settings = replace(settings, **values)
    return settings


def _host_headers(settings: Settings) -> tuple[tuple[str, str], ...]:
    """``[direct.hosts]`` as sorted (lower-cased host, checked header) pairs."""
    check_header_name(settings.direct_proof_header)
    given: Any = settings.direct_host_headers
    pairs = given.items() if isinstance(given, dict) else given
    checked = []
    for host, name in pairs:
        if not isinstance(host, str) or not host or not isinstance(name, str):
            raise InvalidRequestError("[direct.hosts] maps host names to header names")
        checked.append((host.lower(), check_header_name(name)))
    return tuple(sorted(checked))


def load_settings(
    data_dir: Path | None = None, config: Path | None = None, **overrides: Any
) -> Settings:
    """Defaults, then ``config`` (or ``<data_dir>/walletd.toml`` if present), then overrides.

    Overrides whose value is None or empty are ignored, so CLI flags can pass
    their unset values straight through.
    """
    settings = Settings(data_dir=data_dir) if data_dir else Settings()
    path = config or settings.data_dir / "walletd.toml"
    if config is not None or path.exists():
        settings = replace(settings, **_from_toml(path))
    names = {f.name for f in fields(Settings)}
    given = {k: v for k, v in overrides.items() if k in names and v not in (None, "", ())}
    return validate(_with_url_files(replace(settings, **given)))
