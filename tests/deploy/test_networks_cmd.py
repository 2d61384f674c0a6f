"""`walletd networks` prints the pinned table and what the config enables; assets are checked."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.deploy.conftest import walletd
from walletd.config import load_settings
from walletd.domain.networks import KNOWN_NETWORKS
from walletd.errors import InvalidRequestError


def _config(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "walletd.toml"
    path.write_text(body)
    return path


def test_networks_json_lists_every_pinned_stablecoin_and_only_base_usdc_enabled(
    tmp_path: Path,
) -> None:
    out = walletd("networks", "--data-dir", str(tmp_path), "--json")
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    assert len(doc["assets"]) == sum(len(n.assets) for n in KNOWN_NETWORKS)
    enabled = [(r["network"], r["symbol"]) for r in doc["assets"] if r["enabled"]]
    assert enabled == [("eip155:8453", "USDC")]


def test_networks_follows_the_config_networks_and_asset_allowlist(tmp_path: Path) -> None:
    path = _config(
        tmp_path,
        '[policy]\nnetworks = ["eip155:8453", "eip155:42220", "eip155:988"]\n'
        'assets = ["USDC", "eip155:42220/USDT"]\n',
    )
    out = walletd("networks", "--config", str(path), "--data-dir", str(tmp_path))
    assert out.returncode == 0, out.stderr
    starred = [line.split()[1:4:2] for line in out.stdout.splitlines() if line.startswith("*")]
    assert starred == [["eip155:8453", "USDC"], ["eip155:42220", "USDC"], ["eip155:42220", "USDT"]]
    assert "enabled: 3 of" in out.stdout  # USDT0 on Stable and USAT on Celo are not


@pytest.mark.parametrize("entry", ["DAI", "eip155:8453/USDT0", "usdc"])
def test_asset_allowlist_entry_naming_no_pinned_stablecoin_is_refused(
    tmp_path: Path, entry: str
) -> None:
    path = _config(tmp_path, f'[policy]\nassets = ["{entry}"]\n')
    with pytest.raises(InvalidRequestError, match="names no pinned stablecoin"):
        load_settings(tmp_path, path)


def test_unknown_network_is_refused_naming_the_networks_command(tmp_path: Path) -> None:
    path = _config(tmp_path, '[policy]\nnetworks = ["eip155:999999"]\n')
    with pytest.raises(InvalidRequestError, match="walletd networks"):
        load_settings(tmp_path, path)
