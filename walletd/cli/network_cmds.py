"""``walletd networks``: the pinned network and stablecoin table, and what this deployment enables.

Offline: it reads the config the way ``serve`` does (defaults, then the file)
and prints every network walletd knows, each stablecoin with its address,
EIP-712 domain, decimals and transfer method, and whether ``[policy] networks``
and ``[policy] assets`` let walletd pay in it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from walletd.cli._common import config_options
from walletd.cli._output import emit, json_option
from walletd.domain.networks import KNOWN_NETWORKS, asset_allowed


def table(networks: tuple[str, ...], assets: tuple[str, ...]) -> list[dict[str, Any]]:
    """One row per pinned stablecoin, with whether the settings enable it."""
    rows: list[dict[str, Any]] = []
    for net in KNOWN_NETWORKS:
        for asset in net.assets:
            on = net.caip2 in networks
            rows.append(
                {
                    "network": net.caip2,
                    "name": net.label,
                    "v1_name": net.v1_name,
                    "chain_id": net.chain_id,
                    "symbol": asset.symbol,
                    "address": asset.address,
                    "eip712_name": asset.eip712_name,
                    "eip712_version": asset.eip712_version,
                    "decimals": asset.decimals,
                    "transfer_method": asset.transfer_method,
                    "eip2612": asset.supports_eip2612,
                    "network_enabled": on,
                    "enabled": on and asset_allowed(net, asset, assets),
                }
            )
    return rows


def _line(row: dict[str, Any]) -> str:
    mark = "*" if row["enabled"] else " "
    return (
        f"{mark} {row['network']:<16} {row['name']:<18} {row['symbol']:<8} {row['address']} "
        f"{row['decimals']:>2} {row['transfer_method']:<7} "
        f"{row['eip712_name']!r}/{row['eip712_version']}"
    )


@click.command("networks")
@config_options
@json_option
def networks(config_path: Path | None, data_dir: Path | None, as_json: bool) -> None:
    """Every pinned network and stablecoin; '*' marks those this deployment pays in."""
    from walletd.config import load_settings

    settings = load_settings(data_dir, config_path)
    rows = table(settings.networks, settings.assets)
    head = "  network          name               symbol   address" + " " * 35
    lines = [head + "dec method  eip712 name/version"] + [_line(r) for r in rows]
    lines.append(f"enabled: {sum(r['enabled'] for r in rows)} of {len(rows)} stablecoins")
    doc = {
        "networks_enabled": list(settings.networks),
        "assets_allowlist": list(settings.assets),
        "assets": rows,
    }
    emit(as_json, doc, lines)


COMMANDS = (networks,)
