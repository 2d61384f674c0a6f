"""Daemon settings: defaults, then a TOML file, then command-line flags.

Secrets are never settings. The passphrase comes from a file path, systemd
credentials or a TTY (``walletd.keys.passphrase``); tokens come from files.
Unknown keys in the TOML file are an error, so a typo cannot silently leave a
limit at its default.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from walletd.domain.direct import DEFAULT_PROOF_HEADER, ProofHeaders, check_header_name
from walletd.domain.money import parse_usd
from walletd.domain.networks import DEFAULT_ENABLED, KNOWN_NETWORKS
from walletd.domain.policy import Limits
from walletd.errors import InvalidRequestError

SOCKET_MODES = ("0600", "0660")
"""The Unix socket modes walletd allows: owner only, or owner and group (never others)."""


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
    """Enabled networks (CAIP-2). Base only by default; add eip155:84532 for Base Sepolia."""
    max_validity_seconds: int = 300
    max_demand_timeout_seconds: int = 3600
    rpc_url: str = ""
    """Chain JSON-RPC URL used for on-chain checks; empty means none."""
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
    log_json: bool = False

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
        return Limits(self.networks, self.max_validity_seconds, self.max_demand_timeout_seconds)


_SECTIONS = {
    "db": {"url": "db_url"},
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
        "max_validity_seconds": "max_validity_seconds",
        "max_demand_timeout_seconds": "max_demand_timeout_seconds",
    },
    "chain": {
        "rpc_url": "rpc_url",
        "reconcile_interval_seconds": "reconcile_interval_seconds",
        "expiry_margin_seconds": "expiry_margin_seconds",
        "low_balance": "low_balance_usd",
    },
    "log": {"json": "log_json"},
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
        raise InvalidRequestError(f"networks must be a non-empty subset of {sorted(known)}")
    if not 10 <= settings.max_validity_seconds <= settings.max_demand_timeout_seconds:
        raise InvalidRequestError("need 10 <= max_validity_seconds <= max_demand_timeout_seconds")
    if not settings.reconcile_interval_seconds > 0 or settings.expiry_margin_seconds < 0:
        raise InvalidRequestError("need reconcile_interval_seconds > 0, expiry_margin_seconds >= 0")
    _ = settings.low_balance  # a malformed amount is refused at load time
    if settings.socket_mode not in SOCKET_MODES:
        raise InvalidRequestError(f"rpc.socket_mode must be one of {', '.join(SOCKET_MODES)}")
    if not settings.direct_receipt_timeout_seconds > 0:
        raise InvalidRequestError("need direct.receipt_timeout_seconds > 0")
    return replace(settings, direct_host_headers=_host_headers(settings))


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
    return validate(replace(settings, **given))
