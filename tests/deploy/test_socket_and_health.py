"""`serve --socket-group/--socket-mode` opens the socket to one group only; `walletd health`."""

from __future__ import annotations

import grp
import json
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from tests.deploy.conftest import walletd
from tests.plugins.daemon import Daemon, WalletHome
from walletd.errors import InvalidRequestError
from walletd.rpc.server import SocketAccess


def _other_group() -> grp.struct_group:
    """A group the daemon may give its socket to, other than its own primary group."""
    mine = os.getgid()
    candidates = (
        [g for g in grp.getgrall() if g.gr_gid != mine]
        if os.geteuid() == 0
        else [grp.getgrgid(g) for g in os.getgroups() if g != mine]
    )
    if not candidates:
        pytest.skip("no second group to give the socket to")
    return candidates[0]


@pytest.mark.slow
def test_socket_group_and_mode_let_that_group_connect(wallet_home: WalletHome) -> None:
    group = _other_group()
    running = Daemon(wallet_home, "--socket-group", group.gr_name, "--socket-mode", "0660")
    try:
        st = wallet_home.socket.stat()
        assert stat.S_ISSOCK(st.st_mode)
        assert stat.S_IMODE(st.st_mode) == 0o660
        assert st.st_gid == group.gr_gid
    finally:
        assert running.stop() == 0, running.logs()


def _health_as_nobody(socket: Path, groups: str) -> int:
    """`walletd health` as uid/gid 65534 with exactly ``groups`` (comma-separated gids)."""
    setpriv = ["setpriv", "--reuid=65534", "--regid=65534"]
    setpriv += [f"--groups={groups}"] if groups else ["--clear-groups"]
    argv = [*setpriv, sys.executable, "-m", "walletd", "health", "--socket", str(socket)]
    return subprocess.run(argv, capture_output=True, timeout=120, check=False).returncode


@pytest.mark.slow
@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("setpriv"), reason="needs root+setpriv")
def test_only_members_of_the_socket_group_can_connect(wallet_home: WalletHome) -> None:
    group = _other_group()
    for directory in (wallet_home.root, wallet_home.data_dir):
        directory.chmod(0o711)  # traversable, as /run/walletd is under the unit
    running = Daemon(wallet_home, "--socket-group", group.gr_name, "--socket-mode", "0660")
    try:
        assert _health_as_nobody(wallet_home.socket, str(group.gr_gid)) == 0
        assert _health_as_nobody(wallet_home.socket, "") == 1
    finally:
        assert running.stop() == 0, running.logs()


@pytest.mark.slow
def test_default_socket_stays_owner_only(daemon: Daemon) -> None:
    assert stat.S_IMODE(daemon.home.socket.stat().st_mode) == 0o600


def test_unknown_socket_group_is_refused_before_anything_starts(wallet_home: WalletHome) -> None:
    out = wallet_home.run(
        "serve", "--data-dir", str(wallet_home.data_dir), "--passphrase-file",
        str(wallet_home.passphrase_file), "--socket-group", "no-such-group-wd", check=False,
    )  # fmt: skip
    assert out.returncode == 1
    assert "no group named 'no-such-group-wd'" in out.stderr
    assert not wallet_home.socket.exists()


def test_world_access_is_not_an_option(wallet_home: WalletHome) -> None:
    out = wallet_home.run("serve", "--socket-mode", "0666", check=False)
    assert out.returncode == 2  # usage error: not a choice


@pytest.mark.parametrize("mode", [0o666, 0o644, 0o400, 0o700, 0o604])
def test_socket_access_refuses_modes_beyond_owner_and_group_rw(mode: int) -> None:
    with pytest.raises(InvalidRequestError):
        SocketAccess(mode)


@pytest.mark.slow
def test_health_is_zero_while_serving(daemon: Daemon) -> None:
    out = walletd("health", "--socket", str(daemon.home.socket), "--json")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == {"serving": True, "target": f"unix://{daemon.home.socket}"}


def test_health_is_one_without_a_daemon(tmp_path: Path) -> None:
    out = walletd("health", "--socket", str(tmp_path / "walletd.sock"), "--timeout", "2")
    assert out.returncode == 1
    assert "not serving" in out.stderr


@pytest.mark.slow
def test_socket_group_and_mode_can_come_from_the_config_file(wallet_home: WalletHome) -> None:
    group = _other_group()
    (wallet_home.data_dir / "walletd.toml").write_text(
        f'[rpc]\nsocket_group = "{group.gr_name}"\nsocket_mode = "0660"\n'
    )
    running = Daemon(wallet_home)
    try:
        st = wallet_home.socket.stat()
        assert (stat.S_IMODE(st.st_mode), st.st_gid) == (0o660, group.gr_gid)
    finally:
        assert running.stop() == 0, running.logs()


def test_command_line_socket_options_override_the_config_file(tmp_path: Path) -> None:
    from walletd.config import load_settings

    config = tmp_path / "walletd.toml"
    config.write_text('[rpc]\nsocket_group = "from-file"\nsocket_mode = "0660"\n')
    from_file = load_settings(tmp_path, config)
    assert (from_file.socket_group, from_file.socket_mode) == ("from-file", "0660")
    flags = load_settings(tmp_path, config, socket_group="from-flag", socket_mode="0600")
    assert (flags.socket_group, flags.socket_mode) == ("from-flag", "0600")


@pytest.mark.parametrize(
    ("toml", "message"),
    [('socket_mode = "0666"', "rpc.socket_mode must be one of 0600, 0660"),
     ('socket_group = "no-such-group-wd"', "no group named 'no-such-group-wd'")],
    ids=["world-mode", "unknown-group"],
)  # fmt: skip
def test_config_check_refuses_bad_socket_settings(tmp_path: Path, toml: str, message: str) -> None:
    path = tmp_path / "walletd.toml"
    path.write_text(f"[rpc]\n{toml}\n")
    out = walletd("config", "check", "--config", str(path), "--data-dir", str(tmp_path))
    assert out.returncode == 1
    assert message in out.stderr
