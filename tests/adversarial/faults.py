"""Faults: each makes Pay fail closed with a clear error; the daemon serves on after.

Every scenario runs against a real ``walletd serve`` subprocess through the real
client: inject the fault, Pay, check the exact error class and that nothing was
returned or counted, remove the fault, Pay again on the *same* daemon process
(same pid), and check the books: every payment handed out is in the ledger
(no lost rows), the ``total`` window equals the sum of the counted rows, and
nothing exceeds the budget (no overspend). The hash chains are verified when
a wallet is closed.

=====================  ==============================================  =======================
scenario               fault                                           Pay while it lasts
=====================  ==============================================  =======================
``disk_full``          data dir on a small tmpfs, filled to ENOSPC     STORAGE_FULL
``read_only``          ledger and WAL made immutable (``chattr +i``)   STORAGE_IO (open file)
                                                                       or STORAGE_READ_ONLY
``db_locked``          another process holds ``BEGIN EXCLUSIVE``       STORAGE_BUSY (5 s)
``client_gone``        the caller's deadline passes / it is kill -9ed  the row is kept: a retry
                       while Pay waits on the ledger lock                under the key gets it
``socket_deleted``     the socket is replaced by a file, or deleted    DAEMON_UNAVAILABLE;
                                                                       the daemon re-binds
``rpc_down``           the node refuses connections                    direct: CHAIN_UNAVAILABLE
                                                                       (x402 keeps working; the
                                                                       reconciler catches up)
``rpc_black_hole``     the node accepts but never answers              direct: CHAIN_UNAVAILABLE
                                                                       after one RPC timeout
``rpc_lost_broadcast`` the node never receives the transfer            the hash (documented);
                                                                       a retry re-sends it
=====================  ==============================================  =======================

Privileges. As root, disk full is a real ENOSPC from a tmpfs and read-only is
``chattr +i`` (root ignores file modes, and a chmod never affects the file
descriptors the daemon already holds). Where mount or chattr is not
permitted, that scenario falls back to ``RLIMIT_FSIZE`` set on the daemon
process with ``prlimit`` (the WAL's size; 0): writes past the limit fail with
EFBIG (CPython ignores SIGXFSZ), which SQLite reports as an I/O error
(STORAGE_IO) or, for a short write, as full (STORAGE_FULL). ``chattr +i`` is
never put on the ``-shm`` file: SQLite maps it, and a write to an immutable
mapping kills the process with SIGBUS.

``make stress`` calls :func:`run_faults` and prints "faults survived"; the
tests (``test_faults.py``) call the scenarios one by one on a shared :class:`Lab`.
Run alone: ``python -m tests.adversarial.faults``.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import resource
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from web3 import Web3

from tests.adversarial.figures import FIGURES
from tests.plugins.adversarial import add_clients
from tests.plugins.daemon import Daemon, WalletHome, demand_header, init_home
from walletd.client import WalletClient
from walletd.db import queries
from walletd.db.engine import BUSY_TIMEOUT_MS, make_engines, sqlite_url
from walletd.db.ledger import Store
from walletd.domain.networks import BASE
from walletd.domain.payment import RELEASED_STATUSES, PaymentView, PayReceipt
from walletd.errors import (
    ChainError,
    DaemonUnavailableError,
    StorageBusyError,
    StorageError,
    StorageFullError,
    StorageIOError,
    StorageReadOnlyError,
    WalletdError,
)
from walletd.service import admin

AMOUNT = 1_000  # $0.001 per payment
LIMIT = 1_000_000  # $1 total per wallet
RECIPIENT = "0x90F79bf6Eb2c4f870365E96051896F3aC51Fb01A"  # anvil dev account 3
URL = "http://api.example/v1/chat"
RPC_TIMEOUT_BOUND_S = 45.0
"""A direct Pay against a silent node must answer within this (one RPC timeout is 10 s)."""


@dataclass(frozen=True)
class FaultOutcome:
    """What one scenario showed: ``survived`` means every check passed."""

    name: str
    survived: bool
    detail: str
    seconds: float = 0.0


def _wait_until(what: str, check: Callable[[], bool], timeout: float = 20.0) -> None:
    """Poll ``check`` until it holds; AssertionError naming ``what`` when it never does."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


def _expect(error: type[WalletdError], call: Callable[[], object]) -> WalletdError:
    """Run ``call``; it must raise exactly ``error`` (or a subclass); return it."""
    try:
        got = call()
    except WalletdError as err:
        if not isinstance(err, error):
            raise AssertionError(
                f"expected {error.__name__}, got {type(err).__name__} {err.reason}: {err}"
            ) from err
        return err
    raise AssertionError(f"expected {error.__name__}, but the call returned {got!r}")


# ------------------------------------------------------------------ wallets


def _direct_header(amount: str = "0.001") -> str:
    doc = {"recipient": RECIPIENT, "amount": amount, "chainId": BASE.chain_id, "token": BASE.usdc}
    return base64.b64encode(json.dumps(doc).encode()).decode()


@dataclass
class Wallet:
    """One data dir and its running daemon, a paying client ``svc``, and the books we keep."""

    home: WalletHome
    daemon: Daemon
    token: Path
    handed_out: dict[str, int] = field(default_factory=dict)
    """payment id -> amount of every payment a Pay returned (the ledger must keep them all)."""

    @property
    def pid(self) -> int:
        return self.daemon.proc.pid

    @property
    def db(self) -> Path:
        return self.home.data_dir / "walletd.db"

    def client(self, timeout: float = 10.0) -> WalletClient:
        return WalletClient(socket=self.home.socket, token_file=self.token, timeout=timeout)

    def pay(
        self,
        key: str,
        *,
        timeout: float = 10.0,
        header: str = "",
        client: WalletClient | None = None,
    ) -> PayReceipt:
        """Pay an x402 demand (or ``header``) under ``key``; remember what was handed out."""
        demand = header or demand_header(str(AMOUNT))
        if client is not None:
            receipt = client.pay(key, "POST", URL, payment_required=demand)
        else:
            with self.client(timeout) as fresh:
                receipt = fresh.pay(key, "POST", URL, payment_required=demand)
        self.handed_out[receipt.payment_id] = receipt.amount
        if not receipt.reused:
            FIGURES.add(signed=1)
        return receipt

    def pay_direct(self, key: str, *, timeout: float = 60.0) -> PayReceipt:
        return self.pay(key, timeout=timeout, header=_direct_header())

    @contextlib.contextmanager
    def _reader(self, client: WalletClient | None) -> Iterator[WalletClient]:
        if client is not None:
            yield client
        else:
            with self.client() as fresh:
                yield fresh

    def payments(self, client: WalletClient | None = None) -> dict[str, PaymentView]:
        with self._reader(client) as c:
            return {p.payment_id: p for p in c.list_payments(1000)}

    def spent(self, client: WalletClient | None = None) -> int:
        with self._reader(client) as c:
            return next(w.spent for w in c.get_budget().windows if w.window == "total")

    def snapshot(self, client: WalletClient | None = None) -> tuple[int, int]:
        """(rows, total spent): what a refused Pay must leave unchanged."""
        return len(self.payments(client)), self.spent(client)

    def check_books(self, *, record: bool = False) -> str:
        """No lost row, spent == the counted rows, no overspend; returns a one-line summary.

        ``record`` adds lost rows and overspend to the figures (once, when a wallet closes).
        """
        rows = self.payments()
        lost = [pid for pid in self.handed_out if pid not in rows]
        counted = sum(p.amount for p in rows.values() if p.status not in RELEASED_STATUSES)
        spent = self.spent()
        if record:
            FIGURES.add(lost_rows=len(lost), overspend=max(0, spent - LIMIT))
        assert not lost, f"payments handed out but missing from the ledger: {lost}"
        assert spent == counted, f"total window {spent} != counted rows {counted}"
        assert spent <= LIMIT, f"overspend: {spent} > {LIMIT}"
        return f"{len(rows)} rows, {spent} counted"

    def status(self, payment_id: str) -> str:
        return self.payments()[payment_id].status

    def logs(self) -> str:
        return self.daemon.logs()

    def wait_for_log(self, text: str, seen: int, timeout: float = 20.0) -> None:
        """Wait until ``text`` is in the daemon's log more than ``seen`` times."""
        _wait_until(repr(text) + " in the log", lambda: self.logs().count(text) > seen, timeout)


def _verify_chains(home: WalletHome) -> None:
    with queries.read_only(sqlite_url(home.data_dir)) as conn:
        result = queries.verify_chain(conn)
    assert result.ok, f"hash chains broken: {result.breaks}"


# ------------------------------------------------------------- the node proxy


class NodeProxy:
    """A loopback TCP proxy in front of a JSON-RPC node whose failure can be switched.

    ``up`` forwards; ``down`` closes the listener (connections refused) and every
    open connection; ``black_hole`` accepts and reads but never answers;
    ``drop_send`` forwards all but a request carrying ``eth_sendRawTransaction``,
    whose connection it closes unanswered (a broadcast lost on the way).
    """

    UP, DOWN, BLACK_HOLE, DROP_SEND = "up", "down", "black_hole", "drop_send"

    def __init__(self, upstream_url: str) -> None:
        parts = urlsplit(upstream_url)
        self._upstream = (parts.hostname or "127.0.0.1", parts.port or 80)
        self._lock = threading.Lock()
        self._open: set[socket.socket] = set()
        self._mode = self.UP
        self._listener: socket.socket | None = None
        self.port = 0
        self._listen()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def set(self, mode: str) -> None:
        """Switch the failure mode; every open connection is cut so the new mode holds at once."""
        with self._lock:
            before, self._mode = self._mode, mode
            cut, self._open = self._open, set()
        for sock in cut:
            _close(sock)
        if mode == self.DOWN and before != self.DOWN:
            self._unlisten()
        elif mode != self.DOWN and before == self.DOWN:
            self._listen()

    def close(self) -> None:
        self.set(self.DOWN)

    def _listen(self) -> None:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        self.port = listener.getsockname()[1]
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def _unlisten(self) -> None:
        if self._listener is not None:
            _close(self._listener)
            self._listener = None

    def _track(self, *socks: socket.socket) -> bool:
        with self._lock:
            if self._mode == self.DOWN:
                return False
            self._open.update(socks)
            return True

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            with self._lock:
                mode = self._mode
            if mode == self.BLACK_HOLE:
                if self._track(conn):
                    threading.Thread(target=_swallow, args=(conn,), daemon=True).start()
                continue
            try:
                upstream = socket.create_connection(self._upstream, timeout=5)
                upstream.settimeout(None)
            except OSError:
                _close(conn)
                continue
            if not self._track(conn, upstream):
                _close(conn)
                _close(upstream)
                continue
            drop = mode == self.DROP_SEND
            threading.Thread(target=_pump, args=(conn, upstream, drop), daemon=True).start()
            threading.Thread(target=_pump, args=(upstream, conn, False), daemon=True).start()


def _close(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    sock.close()


def _swallow(conn: socket.socket) -> None:
    with contextlib.suppress(OSError):
        while conn.recv(65536):
            pass


def _pump(src: socket.socket, dst: socket.socket, drop_send: bool) -> None:
    tail = b""
    try:
        while chunk := src.recv(65536):
            if drop_send and b"eth_sendRawTransaction" in tail + chunk:
                break
            tail = chunk[-64:]
            dst.sendall(chunk)
    except OSError:
        pass
    _close(src)
    _close(dst)


# ------------------------------------------------------------ the lab


@dataclass(frozen=True)
class ChainHandle:
    """The node the on-chain scenarios pay through (anvil with TestUSDC at Base's address)."""

    w3: Web3
    rpc_url: str


class Lab:
    """Wallets, the chain and the proxy the scenarios share; close() stops everything.

    ``plain`` (no chain) and ``on_chain`` (RPC through :attr:`proxy`) are made on
    first use and shared by the scenarios, which compare before and after.
    """

    def __init__(self, chain: ChainHandle | None = None, *, privileged: bool | None = None) -> None:
        self.chain = chain
        self.can_mount = _can_mount() if privileged is None else privileged
        """A real ENOSPC from a small tmpfs (else RLIMIT_FSIZE on the daemon)."""
        self.can_chattr = _can_chattr() if privileged is None else privileged
        """Immutable ledger files (else RLIMIT_FSIZE=0 on the daemon)."""
        self.proxy = NodeProxy(chain.rpc_url) if chain is not None else None
        self._stack = contextlib.ExitStack()
        self._plain: Wallet | None = None
        self._on_chain: Wallet | None = None

    def close(self) -> None:
        self._stack.close()
        if self.proxy is not None:
            self.proxy.close()

    def __enter__(self) -> Lab:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def plain(self) -> Wallet:
        if self._plain is None:
            self._plain = self._stack.enter_context(self.wallet())
        return self._plain

    @property
    def on_chain(self) -> Wallet:
        if self._on_chain is None:
            self._on_chain = self._stack.enter_context(self.wallet(rpc=True))
        return self._on_chain

    @contextlib.contextmanager
    def wallet(self, *, rpc: bool = False, tmpfs_mb: int = 0) -> Iterator[Wallet]:
        """A fresh data dir (on its own tmpfs when ``tmpfs_mb``) and a daemon on it."""
        root = Path(tempfile.mkdtemp(prefix="wd-fault-", dir="/tmp"))
        data = root / "data"
        mounted = False
        try:
            if tmpfs_mb:
                data.mkdir(mode=0o700)
                mounted = _mount_tmpfs(data, tmpfs_mb)
                # Never fill the real disk: no tmpfs, no wallet.
                assert mounted, f"cannot mount a tmpfs on {data}"
            home = init_home(root, data)
            token = add_clients(home, {"svc": "pay,read"}, admin.BudgetChange(total=LIMIT))["svc"]
            if rpc:
                self._fund(home)
            daemon = Daemon(home)
            wallet = Wallet(home, daemon, token)
            try:
                yield wallet
                wallet.check_books(record=True)
                _verify_chains(home)
            finally:
                code = daemon.stop()
                assert code == 0, f"daemon exited {code}: {daemon.logs()[-3000:]}"
        finally:
            if mounted:
                subprocess.run(["umount", "-l", str(data)], check=False, capture_output=True)
            shutil.rmtree(root, ignore_errors=True)

    def _fund(self, home: WalletHome) -> None:
        from walletd.devnet import chain as devchain

        assert self.chain is not None and self.proxy is not None, "on-chain scenarios need a chain"
        (home.data_dir / "walletd.toml").write_text(
            f'[chain]\nrpc_url = "{self.proxy.url}"\n'
            "reconcile_interval_seconds = 0.5\nexpiry_margin_seconds = 1\n"
            "[direct]\nreceipt_timeout_seconds = 2\n"
        )
        devchain.mint(self.chain.w3, home.address, LIMIT)
        devchain.set_eth_balance(self.chain.w3, home.address, 10**18)


def _can_mount() -> bool:
    """Whether this process may mount a tmpfs (root with CAP_SYS_ADMIN, typically)."""
    if os.geteuid() != 0 or not (shutil.which("mount") and shutil.which("umount")):
        return False
    probe = Path(tempfile.mkdtemp(prefix="wd-priv-", dir="/tmp"))
    try:
        if not _mount_tmpfs(probe, 1):
            return False
        subprocess.run(["umount", str(probe)], check=False, capture_output=True)
        return True
    finally:
        shutil.rmtree(probe, ignore_errors=True)


def _can_chattr() -> bool:
    """Whether files under /tmp can be made immutable (CAP_LINUX_IMMUTABLE, a filesystem that
    supports it)."""
    if os.geteuid() != 0 or not shutil.which("chattr"):
        return False
    probe = Path(tempfile.mkdtemp(prefix="wd-priv-", dir="/tmp"))
    try:
        return _chattr("+i", probe) and _chattr("-i", probe)
    finally:
        shutil.rmtree(probe, ignore_errors=True)


def _mount_tmpfs(path: Path, size_mb: int) -> bool:
    if not shutil.which("mount"):
        return False
    opts = f"size={size_mb}m,mode=0700"
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", opts, "tmpfs", str(path)], capture_output=True, check=False
    )
    return done.returncode == 0


def _chattr(flag: str, *paths: Path) -> bool:
    done = subprocess.run(["chattr", flag, *map(str, paths)], capture_output=True, check=False)
    return done.returncode == 0


@contextlib.contextmanager
def _file_size_limit(pid: int, limit: int) -> Iterator[None]:
    """RLIMIT_FSIZE of process ``pid`` set to ``limit`` bytes for the block."""
    before = resource.prlimit(pid, resource.RLIMIT_FSIZE)
    resource.prlimit(pid, resource.RLIMIT_FSIZE, (limit, before[1]))
    try:
        yield
    finally:
        resource.prlimit(pid, resource.RLIMIT_FSIZE, before)


def _fill(directory: Path) -> Path:
    """Write a file in ``directory`` until its filesystem has not one byte left."""
    filler = directory / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        for chunk in (1 << 20, 4096, 1):
            block = b"\0" * chunk
            with contextlib.suppress(OSError):
                while True:
                    os.write(fd, block)
    finally:
        os.close(fd)
    return filler


@contextlib.contextmanager
def _holding_write_lock(db: Path) -> Iterator[None]:
    """Another process's view: a connection holding SQLite's write lock for the block."""
    conn = sqlite3.connect(db, isolation_level=None, timeout=10)
    try:
        conn.execute("BEGIN EXCLUSIVE")
        yield
        conn.execute("ROLLBACK")
    finally:
        conn.close()


# ------------------------------------------------------------------ scenarios


def disk_full(lab: Lab) -> str:
    """The ledger's disk fills up: STORAGE_FULL, nothing counted; space back, Pay works."""
    how = "tmpfs filled to ENOSPC" if lab.can_mount else "RLIMIT_FSIZE at the WAL's size"
    with lab.wallet(tmpfs_mb=16 if lab.can_mount else 0) as w:
        pid = w.pid
        w.pay("full-warm")
        before = w.snapshot()
        if lab.can_mount:
            filler = _fill(w.home.data_dir)
            try:
                err = _expect(StorageFullError, lambda: w.pay("full-1"))
            finally:
                filler.unlink()
        else:
            wal = w.db.with_name("walletd.db-wal")
            with _file_size_limit(pid, wal.stat().st_size):
                err = _expect(StorageError, lambda: w.pay("full-1"))
            assert isinstance(err, StorageFullError | StorageIOError), err
        assert w.snapshot() == before, "a refused Pay changed the ledger"
        again = w.pay("full-1")
        assert not again.reused and w.pid == pid
        return f"{how}: {err.reason} ({err.message}); after: paid, {w.check_books()}"


def read_only(lab: Lab) -> str:
    """The ledger's files refuse writes: STORAGE_IO (a file already open) or STORAGE_READ_ONLY
    (one opened during the fault, read-only); nothing counted; writable again, Pay works."""
    w = lab.plain
    w.pay("ro-warm")  # the daemon's write connection is open before the fault
    pid, before = w.pid, w.snapshot()
    files = [w.db, w.db.with_name("walletd.db-wal")]  # never -shm: it is mmap-ed (SIGBUS)
    extra = ""
    if lab.can_chattr:
        how = "chattr +i on walletd.db and its WAL"
        assert _chattr("+i", *files)
        try:
            err = _expect(StorageError, lambda: w.pay("ro-1"))
            assert isinstance(err, StorageIOError | StorageReadOnlyError), err
            fresh = make_engines(sqlite_url(w.home.data_dir))
            try:
                opened = _expect(
                    StorageReadOnlyError,
                    lambda: admin.add_client(Store(fresh), "ro-client", frozenset({"read"})),
                )
            finally:
                fresh.dispose()
            extra = f"; a new connection: {opened.reason}"
        finally:
            assert _chattr("-i", *files)
    else:
        how = "RLIMIT_FSIZE=0 on the daemon"
        with _file_size_limit(pid, 0):
            err = _expect(StorageError, lambda: w.pay("ro-1"))
        assert isinstance(err, StorageIOError | StorageFullError), err
    assert w.snapshot() == before, "a refused Pay changed the ledger"
    again = w.pay("ro-1")
    assert not again.reused and w.pid == pid
    return f"{how}: {err.reason} ({err.message}){extra}; after: paid, {w.check_books()}"


def db_locked(lab: Lab) -> str:
    """Another process holds the write lock past the busy timeout: STORAGE_BUSY; released, paid."""
    w = lab.plain
    pid, before = w.pid, w.snapshot()
    with _holding_write_lock(w.db):
        started = time.monotonic()
        err = _expect(StorageBusyError, lambda: w.pay("lock-1", timeout=BUSY_TIMEOUT_MS / 250))
        waited = time.monotonic() - started
        assert w.snapshot() == before, "reads must go on while the lock is held"
    again = w.pay("lock-1")
    assert not again.reused and w.pid == pid
    return (
        f"BEGIN EXCLUSIVE held elsewhere: {err.reason} after {waited:.1f} s "
        f"(busy timeout {BUSY_TIMEOUT_MS / 1000:g} s), reads served meanwhile; "
        f"after: paid, {w.check_books()}"
    )


_CALLER = """
import sys
from pathlib import Path
from walletd.client import WalletClient
socket, token, key, header = sys.argv[1:5]
with WalletClient(socket=socket, token_file=Path(token), timeout=60) as c:
    assert c.health()
    print("ready", flush=True)
    sys.stdin.readline()
    c.pay(key, "POST", "http://api.example/v1/chat", payment_required=header)
"""


def client_gone(lab: Lab) -> str:
    """The caller leaves mid-Pay (deadline; kill -9): the row is kept, a retry gets it back."""
    w = lab.plain
    pid = w.pid
    rows = len(w.payments())
    header = demand_header(str(AMOUNT))
    # 1. The caller's deadline passes while Pay waits for the ledger lock.
    with _holding_write_lock(w.db):
        _expect(DaemonUnavailableError, lambda: w.pay("gone-deadline", timeout=1.0))
    _wait_until("the abandoned Pay to commit", lambda: len(w.payments()) == rows + 1)
    # 2. The caller process is killed (SIGKILL) while its Pay waits for the lock.
    argv = [sys.executable, "-c", _CALLER, str(w.home.socket), str(w.token), "gone-kill", header]
    with subprocess.Popen(
        argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=w.home.env
    ) as caller:
        try:
            assert caller.stdout is not None and caller.stdin is not None
            assert caller.stdout.readline().strip() == "ready"
            with _holding_write_lock(w.db):
                caller.stdin.write("go\n")
                caller.stdin.flush()
                time.sleep(0.5)  # the call reaches the daemon and waits on the lock
                caller.send_signal(signal.SIGKILL)
                caller.wait(10)
        finally:
            if caller.poll() is None:
                caller.kill()
    _wait_until("the killed caller's Pay to commit", lambda: len(w.payments()) == rows + 2)
    replays = [w.pay(key) for key in ("gone-deadline", "gone-kill")]
    assert all(r.reused for r in replays), "a retry under the same key must get the same payment"
    assert len(w.payments()) == rows + 2 and w.pid == pid
    fresh = w.pay("gone-after")
    assert not fresh.reused
    return (
        "deadline passed and caller kill -9ed mid-Pay: both rows committed, retries under "
        f"the same keys got the same payments (reused); after: paid, {w.check_books()}"
    )


_ONE_PAY = """
import sys
from pathlib import Path
from walletd.client import WalletClient
from walletd.errors import WalletdError
socket, token, key, header, timeout = sys.argv[1:6]
try:
    with WalletClient(socket=socket, token_file=Path(token), timeout=float(timeout)) as c:
        r = c.pay(key, "POST", "http://api.example/v1/chat", payment_required=header)
except WalletdError as err:
    print(err.reason, err.message)
else:
    print("PAID", r.payment_id)
"""


def _pay_from_new_process(w: Wallet, key: str, timeout: float) -> str:
    """Pay from a fresh process: in this one, grpc would reuse an open connection to the daemon."""
    argv = [sys.executable, "-c", _ONE_PAY, str(w.home.socket), str(w.token), key]
    argv += [demand_header(str(AMOUNT)), str(timeout)]
    out = subprocess.run(argv, capture_output=True, text=True, env=w.home.env, timeout=60)
    assert out.returncode == 0, out.stderr
    said = out.stdout.strip()
    if said.startswith("PAID "):
        w.handed_out[said.split()[1]] = AMOUNT
        FIGURES.add(signed=1)
    return said


def socket_deleted(lab: Lab) -> str:
    """The socket is replaced by a file, then deleted: new clients fail closed (nothing signed),
    connected ones are served; once the path is free the daemon re-binds it in-process."""
    w = lab.plain
    pid, sock = w.pid, w.home.socket
    rebound, refused = w.logs().count("binding a new one"), w.logs().count("will not remove")
    with w.client() as early:
        before = w.snapshot(early)  # connected before the fault: its connection outlives the file
        # 1. A file where the socket was: walletd will not remove it; new clients cannot connect.
        blocker = sock.with_name("blocker")
        blocker.write_text("not a socket\n")
        os.replace(blocker, sock)
        try:
            said = _pay_from_new_process(w, "sock-1", timeout=1.0)
            assert said.startswith("DAEMON_UNAVAILABLE "), said
            assert w.snapshot(early) == before, "nothing may be signed while the socket is gone"
            w.wait_for_log("will not remove", refused)
        finally:
            sock.unlink()  # the fault is gone: the daemon binds a new socket
        w.wait_for_log("binding a new one", rebound)
        assert _pay_from_new_process(w, "sock-1", timeout=10).startswith("PAID "), "new client"
        assert sock.stat().st_mode & 0o777 == 0o600
        # 2. Plainly deleted: re-bound within about a second.
        sock.unlink()
        w.wait_for_log("binding a new one", rebound + 1)
        assert _pay_from_new_process(w, "sock-2", timeout=10).startswith("PAID "), "new client"
        assert not w.pay("sock-3", client=early).reused  # the early client reconnected
    assert w.pid == pid
    return (
        f"socket replaced by a file: {said.split()[0]} for a new client, nothing signed, "
        "connected clients served; file removed, then socket deleted: re-bound in-process "
        f"each time (mode 0600, same pid), new clients paid; {w.check_books()}"
    )


def rpc_down(lab: Lab) -> str:
    """The node refuses connections: direct Pay fails closed, x402 pays, the reconciler waits."""
    assert lab.proxy is not None and lab.chain is not None
    from walletd.devnet import chain as devchain

    w = lab.on_chain
    pid, failed = w.pid, w.logs().count("reconcile pass failed")
    lab.proxy.set(NodeProxy.DOWN)
    try:
        short = w.pay("down-x402", header=demand_header(str(AMOUNT), maxTimeoutSeconds=10))
        before = w.snapshot()
        err = _expect(ChainError, lambda: w.pay_direct("down-direct"))
        assert w.snapshot() == before, "a refused direct Pay changed the ledger"
        devchain.increase_time(lab.chain.w3, 60)  # the x402 authorization is now expired on chain
        w.wait_for_log("reconcile pass failed", failed)
        assert w.status(short.payment_id) == "signed", "nothing can be decided without the node"
    finally:
        lab.proxy.set(NodeProxy.UP)
    _wait_until(
        "the reconciler to expire the payment", lambda: w.status(short.payment_id) == "expired"
    )
    paid = w.pay_direct("down-direct")
    assert not paid.reused and w.status(paid.payment_id) == "settled" and w.pid == pid
    return (
        f"node refusing: x402 paid offline, direct {err.reason} (nothing recorded), "
        f"reconciler failed its passes then expired the x402 payment once the node was back; "
        f"after: direct paid and settled, {w.check_books()}"
    )


def rpc_black_hole(lab: Lab) -> str:
    """The node never answers: direct Pay fails closed within one RPC timeout; x402 pays."""
    assert lab.proxy is not None
    w = lab.on_chain
    pid = w.pid
    lab.proxy.set(NodeProxy.BLACK_HOLE)
    try:
        w.pay("hole-x402")
        before = w.snapshot()
        started = time.monotonic()
        err = _expect(ChainError, lambda: w.pay_direct("hole-direct", timeout=RPC_TIMEOUT_BOUND_S))
        took = time.monotonic() - started
        assert w.snapshot() == before, "a refused direct Pay changed the ledger"
    finally:
        lab.proxy.set(NodeProxy.UP)
    paid = w.pay_direct("hole-direct")
    assert not paid.reused and w.pid == pid
    return (
        f"node silent: x402 paid, direct {err.reason} after {took:.1f} s "
        f"(client deadline {RPC_TIMEOUT_BOUND_S:g} s); after: direct paid, {w.check_books()}"
    )


def rpc_lost_broadcast(lab: Lab) -> str:
    """The transfer never reaches the node: Pay returns its hash (recorded before broadcast,
    as documented); a retry under the key re-sends the same transaction, which pays once."""
    assert lab.proxy is not None and lab.chain is not None
    from walletd.devnet import chain as devchain

    w = lab.on_chain
    pid = w.pid
    balance = devchain.usdc_balance(lab.chain.w3, RECIPIENT)
    lab.proxy.set(NodeProxy.DROP_SEND)
    try:
        first = w.pay_direct("lost-1")
        assert w.status(first.payment_id) == "signed", "an unsent transfer is open and counted"
        assert devchain.usdc_balance(lab.chain.w3, RECIPIENT) == balance
    finally:
        lab.proxy.set(NodeProxy.UP)
    retry = w.pay_direct("lost-1")
    assert retry.reused and retry.header_value == first.header_value
    assert w.status(first.payment_id) == "settled" and w.pid == pid
    assert devchain.usdc_balance(lab.chain.w3, RECIPIENT) == balance + AMOUNT
    return (
        "broadcast dropped: Pay returned the recorded hash (status signed, counted); the retry "
        f"re-sent the same transaction, settled, recipient paid exactly once; {w.check_books()}"
    )


FAULTS: dict[str, Callable[[Lab], str]] = {
    "disk_full": disk_full,
    "read_only": read_only,
    "db_locked": db_locked,
    "client_gone": client_gone,
    "socket_deleted": socket_deleted,
    "rpc_down": rpc_down,
    "rpc_black_hole": rpc_black_hole,
    "rpc_lost_broadcast": rpc_lost_broadcast,
}
CHAIN_FAULTS = frozenset({"rpc_down", "rpc_black_hole", "rpc_lost_broadcast"})


def run_one(lab: Lab, name: str) -> FaultOutcome:
    """Run one scenario; any failed check becomes ``survived=False`` with its message."""
    started = time.monotonic()
    try:
        detail = FAULTS[name](lab)
    except Exception as exc:  # a scenario's failure is its outcome, not the end of the run
        return FaultOutcome(name, False, f"{type(exc).__name__}: {exc}", time.monotonic() - started)
    FIGURES.add(faults=1)
    return FaultOutcome(name, True, detail, time.monotonic() - started)


@contextlib.contextmanager
def own_chain() -> Iterator[ChainHandle]:
    """A private anvil with TestUSDC at Base's address (for runs outside pytest)."""
    from walletd.devnet import chain as devchain

    with devchain.Anvil() as node:
        w3 = devchain.connect(node.rpc_url)
        devchain.install_usdc(w3)
        yield ChainHandle(w3, node.rpc_url)


def run_faults(
    chain: ChainHandle | None = None,
    *,
    only: Sequence[str] = (),
    privileged: bool | None = None,
) -> list[FaultOutcome]:
    """Run the scenarios (all, or ``only``); starts its own anvil unless ``chain`` is given."""
    names = list(only or FAULTS)
    unknown = set(names) - FAULTS.keys()
    if unknown:
        raise KeyError(f"no such fault scenario: {sorted(unknown)}")
    with contextlib.ExitStack() as stack:
        if chain is None and CHAIN_FAULTS.intersection(names):
            chain = stack.enter_context(own_chain())
        lab = stack.enter_context(Lab(chain, privileged=privileged))
        outcomes = [run_one(lab, name) for name in names]
    return outcomes


def render(outcomes: Sequence[FaultOutcome]) -> str:
    """One line per scenario, then the count ``make stress`` prints."""
    lines = [
        f"  {'ok ' if o.survived else 'FAIL'} {o.name:<20} {o.seconds:5.1f} s  {o.detail}"
        for o in outcomes
    ]
    survived = sum(o.survived for o in outcomes)
    lines.append(f"faults survived: {survived}/{len(outcomes)}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    names = list(argv if argv is not None else sys.argv[1:])
    outcomes = run_faults(only=names)
    print(render(outcomes))
    return 0 if all(o.survived for o in outcomes) else 1


if __name__ == "__main__":
    sys.exit(main())
