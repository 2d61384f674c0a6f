"""Settings the daemon must not take on trust: a plain-HTTP chain RPC, credentials in argv."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.plugins.daemon import WalletHome
from walletd.config import load_settings, refuse_argv_credentials
from walletd.errors import InvalidRequestError


@pytest.mark.parametrize(
    "url",
    ["http://10.0.0.7:8545", "http://rpc.example.com/v2/k", "ws://127.0.0.1:8546", "ftp://x"],
)
def test_a_plain_http_rpc_url_beyond_loopback_is_refused(tmp_path: Path, url: str) -> None:
    with pytest.raises(InvalidRequestError, match="use https://"):
        load_settings(tmp_path, rpc_url=url)


@pytest.mark.parametrize(
    "url",
    ["https://rpc.example.com/v2/k", "http://127.0.0.1:8545", "http://[::1]:8545",
     "http://localhost:8545"],
)  # fmt: skip
def test_https_anywhere_and_http_on_loopback_are_accepted(tmp_path: Path, url: str) -> None:
    assert load_settings(tmp_path, rpc_url=url).rpc_url == url


def test_serve_refuses_a_plain_http_rpc_url_beyond_loopback(wallet_home: WalletHome) -> None:
    out = wallet_home.admin(
        "serve", "--passphrase-file", str(wallet_home.passphrase_file),
        "--rpc-url", "http://192.0.2.1:8545", check=False,  # TEST-NET-1: never contacted
    )  # fmt: skip
    assert out.returncode == 1
    assert "chain.rpc_url http://192.0.2.1 refused" in out.stderr
    assert not wallet_home.socket.exists()


@pytest.mark.parametrize(
    ("flag", "url", "what"),
    [
        ("--db-url", "postgresql+psycopg://walletd:s3cret-pw@127.0.0.1:1/walletd", "a password"),
        ("--db-url", "postgresql+psycopg://walletd@127.0.0.1:1/w?password=s3cret-pw", "query"),
        ("--rpc-url", "https://user:s3cret-pw@127.0.0.1:1", "a password"),
        ("--rpc-url", "https://s3cret-pw@127.0.0.1:1", "user name"),
        ("--rpc-url", "https://127.0.0.1:1/?apikey=s3cret-pw", "query (apikey=)"),
    ],
)
def test_a_credential_in_argv_is_refused_without_echoing_it(
    wallet_home: WalletHome, flag: str, url: str, what: str
) -> None:
    out = wallet_home.admin(
        "serve", "--passphrase-file", str(wallet_home.passphrase_file), flag, url, check=False
    )
    assert out.returncode == 1
    assert f"{flag} carries" in out.stderr and what in out.stderr
    assert "s3cret-pw" not in out.stderr + out.stdout
    assert not wallet_home.socket.exists()


def test_status_refuses_an_rpc_key_on_its_command_line(wallet_home: WalletHome) -> None:
    out = wallet_home.admin("status", "--rpc-url", "https://k:s3cret-pw@127.0.0.1:1", check=False)
    assert out.returncode == 1
    assert "--rpc-url carries a password" in out.stderr


def test_urls_without_credentials_still_pass_on_the_command_line() -> None:
    refuse_argv_credentials(
        db_url="postgresql+psycopg://walletd@127.0.0.1/walletd",
        rpc_url="https://mainnet.base.org",
    )


def test_urls_with_credentials_come_from_the_config_or_a_url_file(tmp_path: Path) -> None:
    db_file, rpc_file = tmp_path / "db-url", tmp_path / "rpc-url"
    db_file.write_text("postgresql+psycopg://walletd:pw@127.0.0.1/walletd\n")
    rpc_file.write_text("https://rpc.example.com/v2/key\n")
    config = tmp_path / "walletd.toml"
    config.write_text(f'[db]\nurl_file = "{db_file}"\n[chain]\nrpc_url_file = "{rpc_file}"\n')
    settings = load_settings(tmp_path, config)
    assert settings.db_url == "postgresql+psycopg://walletd:pw@127.0.0.1/walletd"
    assert settings.rpc_url == "https://rpc.example.com/v2/key"
    config.write_text(f'[db]\nurl = "sqlite://"\nurl_file = "{db_file}"\n')
    with pytest.raises(InvalidRequestError, match="not both"):
        load_settings(tmp_path, config)
