"""Build the daemon's gRPC server: wallet service, health and reflection.

Two kinds of listener:

* a Unix socket, the normal case: plaintext, protected by its mode (0600) and the
  bearer token. It is bound under umask 0o077, so there is no moment when another
  user could connect, and chmod-ed again after start. ``walletd serve
  --socket-group G --socket-mode 0660`` opens it to one group of service users
  (never to everyone: the mode cannot grant "other" bits);
* TCP, only with TLS (optionally mutual): a token sent in the clear over a
  network would be a credential leak, so a TCP listener without TLS is refused.

The server is the synchronous ``grpc.server`` because the service layer is
synchronous; ``max_workers`` bounds the RPCs running at once, and
``walletd.rpc.intake`` the ones accepted at all and how long each may take to
send its request. The transport is bounded too (``server_options``): the
receive size fits the largest valid Pay; each connection carries at most
``MAX_STREAMS_PER_CONNECTION`` calls; a connection must finish its handshake
within ``HANDSHAKE_TIMEOUT_MS``, is closed after ``CONNECTION_IDLE_MS`` without
a call, and pinged while calls are open (no answer: closed); the number of
connections stays below the process's file-descriptor limit (``max_connections``),
so connections alone cannot take the descriptors the ledger needs. gRPC has no
per-peer connection limit, and on the Unix socket every peer is the same few
users anyway.

A deleted socket file cannot be linked back, so a running server checks its
socket every ``SOCKET_CHECK_S``: when the path has vanished (or holds a dead
socket), it stops the old grpc server, whose running calls get
``REBIND_GRACE_S`` to finish, and binds a new one on the same path, mode and
group, with the same services and thread pool. Anything else at the path (a
file, another live daemon's socket) is left alone and logged.
"""

from __future__ import annotations

import grp
import logging
import os
import resource
import socket
import stat
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from walletd.domain.payment import MAX_PAY_REQUEST_BYTES
from walletd.errors import InvalidRequestError, read_named_file
from walletd.rpc.intake import MAX_CONCURRENT_RPCS, Intake
from walletd.rpc.permissions import SERVICE_NAME
from walletd.rpc.servicer import WalletServicer
from walletd.service.ports import ApprovalApi, WalletApi
from walletd.v1 import wallet_pb2_grpc

log = logging.getLogger(__name__)

MAX_UNIX_PATH_BYTES = 107
"""sockaddr_un.sun_path holds 108 bytes including the terminating NUL (Linux)."""

SOCKET_MODE = 0o600

SOCKET_CHECK_S = 1.0
"""How often a running server checks that its Unix socket is still the one it bound."""
REBIND_GRACE_S = 120.0
"""Calls running when the socket is re-bound may still finish within this (a direct Pay waits)."""


@dataclass(frozen=True)
class SocketAccess:
    """Who may connect to the Unix socket: its mode and, optionally, its group."""

    mode: int = SOCKET_MODE
    group: str | None = None

    def __post_init__(self) -> None:
        if self.mode & ~0o660 or (self.mode & 0o600) != 0o600:
            raise InvalidRequestError(
                f"socket mode must be 0600 or 0660 (owner rw, maybe group rw), got {self.mode:#o}"
            )

    def gid(self) -> int:
        """The group id to give the socket, or -1 (keep the daemon's group)."""
        if self.group is None:
            return -1
        try:
            return grp.getgrnam(self.group).gr_gid
        except KeyError:
            raise InvalidRequestError(f"no group named {self.group!r}") from None


_socket_access = SocketAccess()


def set_socket_access(access: SocketAccess) -> None:
    """Set how the next started server opens its socket (``walletd serve`` calls this once).

    Process-wide because the daemon builds its server in one place and the
    socket's audience is a property of the process, like its umask.
    """
    global _socket_access
    access.gid()  # an unknown group is refused before anything is bound
    _socket_access = access


MAX_RECEIVE_BYTES = MAX_PAY_REQUEST_BYTES
"""No request of any RPC is larger than the largest valid Pay."""
MAX_STREAMS_PER_CONNECTION = 64
"""Calls open at once on one connection (a client over it queues the rest)."""
HANDSHAKE_TIMEOUT_MS = 5_000
CONNECTION_IDLE_MS = 60_000
KEEPALIVE_MS = 30_000
KEEPALIVE_TIMEOUT_MS = 10_000
FD_RESERVE = 256
"""Descriptors kept from connections: ledger files, PostgreSQL, the chain RPC, logs."""
MAX_CONNECTIONS = 4096


def max_connections() -> int:
    """Connections accepted at once: at most MAX_CONNECTIONS, and FD_RESERVE under the fd limit."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return MAX_CONNECTIONS
    return max(16, min(MAX_CONNECTIONS, soft - FD_RESERVE))


def raise_fd_limit() -> int:
    """Raise the soft RLIMIT_NOFILE to the hard limit (the daemon calls it at start); the new soft.

    A soft limit of 1024 (a common default) would let a thousand connections
    take every descriptor; the hard limit is the operator's choice
    (``LimitNOFILE=`` in deploy/walletd.service).
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        except (ValueError, OSError) as exc:
            log.warning("cannot raise the open-file limit from %d: %s", soft, exc)
            return int(soft)
    return int(hard)


def server_options() -> list[tuple[str, int]]:
    """The grpc server's channel arguments (read at build time: the fd limit may change)."""
    return [
        # Without this, Linux lets a second daemon bind the same TCP port and steal
        # half the connections.
        ("grpc.so_reuseport", 0),
        ("grpc.max_receive_message_length", MAX_RECEIVE_BYTES),
        ("grpc.max_concurrent_streams", MAX_STREAMS_PER_CONNECTION),
        ("grpc.server_handshake_timeout_ms", HANDSHAKE_TIMEOUT_MS),
        ("grpc.max_connection_idle_ms", CONNECTION_IDLE_MS),
        ("grpc.keepalive_time_ms", KEEPALIVE_MS),
        ("grpc.keepalive_timeout_ms", KEEPALIVE_TIMEOUT_MS),
        ("grpc.max_allowed_incoming_connections", max_connections()),
    ]


@dataclass(frozen=True)
class TlsFiles:
    """PEM files for a TCP listener; ``client_ca`` turns on mutual TLS."""

    cert: Path
    key: Path
    client_ca: Path | None = None

    def server_credentials(self) -> grpc.ServerCredentials:
        """Server credentials; a client certificate is required iff ``client_ca`` is set."""
        ca = _read_pem(self.client_ca) if self.client_ca else None
        return grpc.ssl_server_credentials(
            [(_read_pem(self.key), _read_pem(self.cert))],
            root_certificates=ca,
            require_client_auth=ca is not None,
        )


def _read_pem(path: Path) -> bytes:
    """The bytes of a PEM file, or InvalidRequestError naming the file."""
    return read_named_file(path, "TLS file")


class RpcServer:
    """A built (not yet started) gRPC server and the health state that goes with it.

    ``rebuild`` makes a fresh grpc server with the same services and listeners;
    given it and a socket, the started server re-binds a vanished socket.
    """

    def __init__(
        self,
        server: grpc.Server,
        health_servicer: health.HealthServicer,
        addresses: list[str],
        socket_path: Path | None,
        rebuild: Callable[[], grpc.Server] | None = None,
    ) -> None:
        self._server = server
        self._health = health_servicer
        self.addresses: tuple[str, ...] = tuple(addresses)
        self._socket_path = socket_path
        self._rebuild = rebuild
        self._bound: tuple[int, int] | None = None
        """(st_dev, st_ino) of the socket file this server listens on."""
        self._ignored: tuple[int, int] | None = None
        """A foreign file at the socket path, already logged."""
        self._swap = threading.Lock()
        self._closing = threading.Event()
        self._watcher: threading.Thread | None = None

    @property
    def address(self) -> str:
        """The first listener as a gRPC target (``unix:///...`` or ``host:port``)."""
        return self.addresses[0]

    def start(self) -> None:
        """Start serving, then tighten the socket mode and report SERVING."""
        self._server.start()
        if self._socket_path is not None:
            try:
                _open_socket(self._socket_path, _socket_access)
            except InvalidRequestError:
                self._server.stop(0).wait()
                raise
            self._bound = _identity(self._socket_path)
            if self._rebuild is not None:
                self._watcher = threading.Thread(
                    target=self._watch_socket, name="walletd-socket", daemon=True
                )
                self._watcher.start()
        for service in ("", SERVICE_NAME):
            self._health.set(service, health_pb2.HealthCheckResponse.SERVING)
        log.info("walletd gRPC serving on %s", ", ".join(self.addresses))

    def stop(self, grace: float) -> None:
        """Report NOT_SERVING, refuse new RPCs, and give running ones ``grace`` seconds."""
        self._closing.set()
        if self._watcher is not None:
            self._watcher.join()
        self._health.enter_graceful_shutdown()
        self._server.stop(grace).wait()
        log.info("walletd gRPC stopped")

    def wait(self) -> None:
        """Block until the server has stopped (not merely re-bound its socket)."""
        while True:
            server = self._server
            server.wait_for_termination()
            with self._swap:
                if server is self._server:
                    return

    def _watch_socket(self) -> None:
        while not self._closing.wait(SOCKET_CHECK_S):
            try:
                self.check_socket()
            except Exception:  # the watcher must outlive any one failed check
                log.exception("checking the socket failed")

    def check_socket(self) -> bool:
        """Re-bind the Unix socket if its path vanished or holds a dead socket; True if it did."""
        path, rebuild = self._socket_path, self._rebuild
        if path is None or rebuild is None:
            return False
        with self._swap:
            if self._closing.is_set():
                return False
            try:
                found = _identity(path)
            except OSError:
                return False  # cannot look (e.g. a permission change): nothing is known to be wrong
            if found is not None and found in (self._bound, self._ignored):
                return False
            if found is not None and not _dead_socket(path):
                log.error(
                    "socket %s was replaced by something walletd will not remove; "
                    "new clients cannot connect until it is removed",
                    path,
                )
                self._ignored = found
                return False
            log.warning("socket %s is gone; binding a new one", path)
            # grpc unlinks its socket path when it stops, so stop first, then bind.
            self._server.stop(REBIND_GRACE_S)
            self._bound = None
            server = None
            try:
                server = rebuild()
                server.start()
                _open_socket(path, _socket_access)
            except (InvalidRequestError, RuntimeError) as exc:
                if server is not None:
                    server.stop(0)
                log.error("cannot re-bind %s: %s (trying again)", path, exc)
                return False
            self._server, self._bound, self._ignored = server, _identity(path), None
            log.warning("walletd gRPC serving again on %s", path)
            return True

    def __enter__(self) -> RpcServer:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop(grace=0)


def build_server(
    api: WalletApi,
    *,
    socket_path: Path | None = None,
    listen: str | None = None,
    tls: TlsFiles | None = None,
    max_workers: int = 16,
    approvals: ApprovalApi | None = None,
) -> RpcServer:
    """A server for ``api`` on a Unix socket and/or a TLS TCP listener; call start()."""
    _check_listeners(socket_path, listen, tls)
    unix = socket_path.absolute() if socket_path is not None else None
    executor = ThreadPoolExecutor(
        max_workers=MAX_CONCURRENT_RPCS, thread_name_prefix="walletd-rpc"
    )  # a thread per accepted call; Intake lets max_workers of them run at once
    intake = Intake(max_workers)
    options = server_options()
    servicer = WalletServicer(api, approvals)
    health_servicer = _new_health()
    tcp = [(listen, tls)] if listen is not None and tls is not None else []

    def make() -> tuple[grpc.Server, list[str]]:
        """A grpc server with every service, bound to every listener (shared pool)."""
        server = grpc.server(
            executor,
            interceptors=[intake],
            options=options,
            maximum_concurrent_rpcs=MAX_CONCURRENT_RPCS,
        )
        wallet_pb2_grpc.add_WalletServiceServicer_to_server(servicer, server)
        health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
        reflection.enable_server_reflection(
            (SERVICE_NAME, health.SERVICE_NAME, reflection.SERVICE_NAME), server
        )
        addresses = []
        try:
            if unix is not None:
                addresses.append(bind_unix(server, unix))
            for address, files in tcp:
                addresses.append(bind_tcp(server, address, files))
        except BaseException:
            server.stop(0)
            raise
        return server, addresses

    server, addresses = make()
    if tcp:
        tcp[0] = (addresses[-1], tcp[0][1])  # the real port, for ":0": a re-bind keeps it
    return RpcServer(server, health_servicer, addresses, unix, rebuild=lambda: make()[0])


def _open_socket(path: Path, access: SocketAccess) -> None:
    """Give the bound socket its group, then its mode (group first: no moment of a wrong group)."""
    try:
        gid = access.gid()
        if gid != -1:
            os.chown(path, -1, gid)
        os.chmod(path, access.mode)
    except OSError as exc:
        raise InvalidRequestError(
            f"cannot set group/mode of {path}: {exc.strerror} "
            "(the daemon's user must be a member of the socket group)",
            {"socket": str(path)},
        ) from exc


def _check_listeners(socket_path: Path | None, listen: str | None, tls: TlsFiles | None) -> None:
    """Refuse a configuration with no listener, TCP without TLS, or TLS without TCP."""
    if socket_path is None and listen is None:
        raise InvalidRequestError("no listener: give a socket path or --listen HOST:PORT")
    if listen is not None and tls is None:
        raise InvalidRequestError(
            "refusing a TCP listener without TLS: give --tls-cert and --tls-key",
            {"listen": listen},
        )
    if tls is not None and listen is None:
        raise InvalidRequestError("TLS files given without --listen HOST:PORT")


def _new_health() -> health.HealthServicer:
    """gRPC health (shared by every grpc server built); NOT_SERVING until start()."""
    servicer = health.HealthServicer()
    servicer.set(SERVICE_NAME, health_pb2.HealthCheckResponse.NOT_SERVING)
    return servicer


def _identity(path: Path) -> tuple[int, int] | None:
    """(st_dev, st_ino) of whatever is at ``path``, or None when nothing is."""
    try:
        found = path.lstat()
    except (FileNotFoundError, NotADirectoryError):
        return None
    return found.st_dev, found.st_ino


def _dead_socket(path: Path) -> bool:
    """True for a socket file nobody listens on (safe to replace), or nothing at all."""
    try:
        if not stat.S_ISSOCK(path.lstat().st_mode):
            return False
    except FileNotFoundError:
        return True
    return not socket_answers(path)


def bind_unix(server: grpc.Server, path: Path) -> str:
    """Bind ``path`` with mode 0600 from the first moment; returns the gRPC target.

    grpc itself unlinks whatever is at the path before binding, so the check for
    a live daemon must happen here, or a second daemon would silently take over
    the first one's socket.
    """
    if len(os.fsencode(path)) > MAX_UNIX_PATH_BYTES:
        raise InvalidRequestError(
            f"socket path longer than {MAX_UNIX_PATH_BYTES} bytes: {path}", {"socket": str(path)}
        )
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    remove_stale_socket(path)
    target = f"unix://{path}"
    old_umask = os.umask(0o077)
    try:
        server.add_insecure_port(target)
    except RuntimeError as exc:
        raise InvalidRequestError(f"cannot bind {path}", {"socket": str(path)}) from exc
    finally:
        os.umask(old_umask)
    return target


def remove_stale_socket(path: Path) -> None:
    """Remove a socket file left by a dead daemon; refuse anything else at ``path``."""
    try:
        mode = path.lstat().st_mode
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(mode):
        raise InvalidRequestError(f"{path} exists and is not a socket", {"socket": str(path)})
    if socket_answers(path):
        raise InvalidRequestError(
            f"another walletd is already listening on {path}", {"socket": str(path)}
        )
    log.info("removing stale socket %s", path)
    path.unlink(missing_ok=True)


def socket_answers(path: Path) -> bool:
    """True when something accepts connections on the Unix socket ``path``.

    Only "connection refused" (nobody listening) and "no such file" count as dead;
    any other failure (e.g. permission denied: another user's socket) is treated
    as alive, so the daemon never deletes what it cannot prove is stale.
    """
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        probe.settimeout(1.0)
        try:
            probe.connect(os.fspath(path))
        except (ConnectionRefusedError, FileNotFoundError):
            return False
        except OSError:
            return True
    return True


def bind_tcp(server: grpc.Server, listen: str, tls: TlsFiles) -> str:
    """Bind ``HOST:PORT`` with TLS; returns ``host:port`` with the real port (for :0)."""
    host, sep, _ = listen.rpartition(":")
    if not sep or not host:
        raise InvalidRequestError(f"--listen must be HOST:PORT, got {listen!r}", {"listen": listen})
    try:
        port = server.add_secure_port(listen, tls.server_credentials())
    except RuntimeError as exc:
        raise InvalidRequestError(f"cannot listen on {listen}", {"listen": listen}) from exc
    if port == 0:
        raise InvalidRequestError(f"cannot listen on {listen}", {"listen": listen})
    return f"{host}:{port}"
