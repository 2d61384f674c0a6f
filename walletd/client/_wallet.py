"""WalletClient and AsyncWalletClient: the thin client of the walletd daemon.

They speak walletd.v1 over a Unix socket (or TLS TCP) and hand back domain
objects (PayReceipt, BudgetState, PaymentView), never protos; every failure is a
walletd.errors class. Only grpcio, protobuf and googleapis-common-protos are
needed: nothing of the daemon's database or key handling is imported.

The token comes from an argument, a token file, or the file named by
``WALLETD_TOKEN_FILE``; never from an environment variable holding the token
itself, which would leak into child processes and crash reports.
"""

from __future__ import annotations

import asyncio
import errno
import json
import os
import socket as socket_mod
import stat
import struct
import time
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, fields
from operator import attrgetter
from pathlib import Path
from typing import TYPE_CHECKING, Any, Generic, TypeAlias, TypedDict, TypeVar, Unpack

import grpc
import grpc.aio

from walletd.client._effects import AsyncClosing, Closing, Plan, arun, check_options, run
from walletd.client._errors import map_rpc_errors
from walletd.domain.approval import Approval, ApprovalEvent, ApprovalStatus
from walletd.domain.budget import BudgetState, RateState, WindowState
from walletd.domain.payment import PaymentView, PayReceipt
from walletd.domain.report import (
    BUCKETS,
    RefusalCount,
    ReportQuery,
    ReportRow,
    SpendReport,
    Tally,
    total_of,
)
from walletd.errors import (
    ApprovalRequiredError,
    DaemonUnavailableError,
    InvalidRequestError,
    UntrustedSocketError,
    WalletdError,
    read_named_file,
)
from walletd.v1 import wallet_pb2 as pb, wallet_pb2_grpc as pb_grpc

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

T = TypeVar("T")
D = TypeVar("D", bound="DataclassInstance")

PathArg: TypeAlias = str | os.PathLike[str]
"""A file path as the client takes it: ``str`` or any ``os.PathLike`` (``Path``)."""

ENV_SOCKET = "WALLETD_SOCKET"
ENV_TOKEN_FILE = "WALLETD_TOKEN_FILE"  # noqa: S105 - a variable name, not a secret
ENV_SOCKET_OWNER = "WALLETD_SOCKET_OWNER"
_PROBE_TIMEOUT_S = 2.0
SERVICE_NAME = "walletd.v1.WalletService"
HEALTH_CHECK = "/grpc.health.v1.Health/Check"
_SERVING = 1  # grpc.health.v1.HealthCheckResponse.ServingStatus.SERVING

# Retry only RPCs that are safe to repeat: reads and health. Pay is not retried
# here (it waits for the daemon instead); ReportOutcome is not idempotent.
_SERVICE_CONFIG = json.dumps(
    {
        "methodConfig": [
            {
                "name": [
                    {"service": SERVICE_NAME, "method": "GetBudget"},
                    {"service": SERVICE_NAME, "method": "ListPayments"},
                    {"service": SERVICE_NAME, "method": "GetSpendReport"},
                    {"service": "grpc.health.v1.Health"},
                ],
                "retryPolicy": {
                    "maxAttempts": 3,
                    "initialBackoff": "0.05s",
                    "maxBackoff": "0.5s",
                    "backoffMultiplier": 2,
                    "retryableStatusCodes": ["UNAVAILABLE"],
                },
            }
        ]
    }
)


def default_socket_path() -> Path:
    """``$WALLETD_SOCKET``, else ``~/.local/share/walletd/walletd.sock``."""
    env = os.environ.get(ENV_SOCKET)
    if env:
        return Path(env).expanduser()
    return Path.home() / ".local" / "share" / "walletd" / "walletd.sock"


@dataclass(frozen=True)
class ClientTls:
    """TLS for a TCP target: the CA to trust and, for mutual TLS, our cert and key.

    ``ca=None`` trusts the system roots; ``server_name`` overrides the name the
    server certificate is checked against (when dialing an IP, say).
    """

    ca: PathArg | None = None
    cert: PathArg | None = None
    key: PathArg | None = None
    server_name: str | None = None

    def credentials(self) -> grpc.ChannelCredentials:
        """Channel credentials from the PEM files."""
        return grpc.ssl_channel_credentials(
            root_certificates=_read_file(self.ca, "TLS CA"),
            private_key=_read_file(self.key, "TLS key"),
            certificate_chain=_read_file(self.cert, "TLS certificate"),
        )


def _read_file(path: PathArg | None, what: str) -> bytes | None:
    """The bytes of an optional file, or InvalidRequestError naming it."""
    return None if path is None else read_named_file(Path(path).expanduser(), what)


def load_token(token: str | None, token_file: PathArg | None) -> str | None:
    """The bearer token: ``token``, else the file ``token_file`` or ``$WALLETD_TOKEN_FILE``."""
    if token:
        return token
    if token_file is None and os.environ.get(ENV_TOKEN_FILE):
        token_file = os.environ[ENV_TOKEN_FILE]
    if token_file is None:
        return None
    raw = _read_file(token_file, "token file") or b""
    value = raw.decode("utf-8", errors="replace").strip()
    if not value:
        raise InvalidRequestError(f"token file {token_file} is empty", {"path": str(token_file)})
    return value


def _owner_uid(owner: int | str | None, directory_uid: int) -> int:
    """The uid the daemon must run as: ``owner`` (uid or user name), else the directory's owner."""
    if owner is None or owner == "":
        owner = os.environ.get(ENV_SOCKET_OWNER) or None
    if owner is None:
        return directory_uid
    if isinstance(owner, int) or str(owner).isdigit():
        return int(owner)
    import pwd

    try:
        return pwd.getpwnam(str(owner)).pw_uid
    except KeyError:
        raise InvalidRequestError(
            f"socket owner {owner!r} is not a user", {"socket_owner": str(owner)}
        ) from None


def check_socket(path: Path, owner: int | str | None = None) -> None:
    """Refuse a socket nobody listens on, or one the client cannot trust, before any call.

    * No socket file, or no process accepting on it: DaemonUnavailableError at
      once, naming the path (instead of waiting out the call's deadline).
    * The socket's directory writable by others (anyone could have put the
      socket there), or the socket file or the listening process (SO_PEERCRED)
      owned by another uid than ``owner``: UntrustedSocketError. ``owner`` is a
      uid or user name, else ``$WALLETD_SOCKET_OWNER``, else the owner of the
      socket's directory.

    Nothing is sent on the probe connection: the token only ever goes to a
    daemon that passed these checks. A symlink is followed: the checks apply to
    the socket it points at.
    """
    details = {"socket": str(path)}
    path = path.resolve()
    try:
        directory = os.stat(path.parent)
    except OSError as exc:
        raise DaemonUnavailableError(
            f"nothing is listening at {path}: {exc.strerror} ({path.parent})", details
        ) from None
    if directory.st_mode & stat.S_IWOTH:
        raise UntrustedSocketError(
            f"refusing socket {path}: its directory {path.parent} is writable by others "
            f"(mode {stat.S_IMODE(directory.st_mode):04o})",
            details,
        )
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        raise DaemonUnavailableError(
            f"nothing is listening at {path}: no such socket (is walletd running?)", details
        ) from None
    except OSError as exc:
        raise DaemonUnavailableError(f"cannot reach {path}: {exc.strerror}", details) from None
    if not stat.S_ISSOCK(info.st_mode):
        raise DaemonUnavailableError(f"nothing is listening at {path}: not a socket", details)
    expected = _owner_uid(owner, directory.st_uid)
    if info.st_uid != expected:
        raise UntrustedSocketError(
            f"refusing socket {path}: it belongs to uid {info.st_uid}, expected uid {expected} "
            f"(set {ENV_SOCKET_OWNER} if the daemon runs as another user)",
            {**details, "uid": str(info.st_uid), "expected_uid": str(expected)},
        )
    peer = _peer_uid(path)
    if peer is not None and peer != expected:
        raise UntrustedSocketError(
            f"refusing socket {path}: the process listening on it runs as uid {peer}, "
            f"expected uid {expected} (set {ENV_SOCKET_OWNER} if the daemon runs as another user)",
            {**details, "uid": str(peer), "expected_uid": str(expected)},
        )


def _peer_uid(path: Path) -> int | None:
    """The uid of the process accepting on ``path`` (None where SO_PEERCRED is unknown)."""
    sock = socket_mod.socket(socket_mod.AF_UNIX, socket_mod.SOCK_STREAM)
    sock.settimeout(_PROBE_TIMEOUT_S)
    details = {"socket": str(path)}
    try:
        sock.connect(str(path))
        peercred = getattr(socket_mod, "SO_PEERCRED", None)
        if peercred is None:
            return None
        raw = sock.getsockopt(socket_mod.SOL_SOCKET, peercred, struct.calcsize("3i"))
        _pid, uid, _gid = struct.unpack("3i", raw)
        return int(uid)
    except (ConnectionRefusedError, FileNotFoundError):
        raise DaemonUnavailableError(
            f"nothing is listening at {path} (a stale socket file?)", details
        ) from None
    except OSError as exc:
        if exc.errno in (errno.EACCES, errno.EPERM):
            raise DaemonUnavailableError(
                f"permission denied connecting to {path} (not in the socket's group?)", details
            ) from None
        raise DaemonUnavailableError(f"cannot connect to {path}: {exc}", details) from None
    finally:
        sock.close()


@dataclass(frozen=True)
class _Endpoint:
    """Where and how to connect: the gRPC target, TLS credentials and channel options."""

    target: str
    credentials: grpc.ChannelCredentials | None
    options: tuple[tuple[str, str | int], ...]


def _endpoint(
    socket: PathArg | None,
    target: str | None,
    tls: ClientTls | None,
    socket_owner: int | str | None = None,
) -> _Endpoint:
    """Resolve the constructor's socket/target/tls into one endpoint.

    A TCP target without TLS is refused: the bearer token would cross the
    network in the clear (the daemon refuses plaintext TCP too). A Unix socket
    is checked first (``check_socket``).
    """
    if target is None:
        if tls is not None:
            raise InvalidRequestError("TLS needs a TCP target, not a Unix socket")
        path = (Path(socket) if socket is not None else default_socket_path()).expanduser()
        check_socket(path.absolute(), socket_owner)
        target = f"unix://{path.absolute()}"
    elif tls is None and not target.startswith(("unix:", "unix-abstract:")):
        raise InvalidRequestError(
            f"refusing plaintext TCP target {target!r}: give tls=ClientTls(...)",
            {"target": target},
        )
    options: list[tuple[str, str | int]] = [
        ("grpc.service_config", _SERVICE_CONFIG),
        ("grpc.enable_retries", 1),
    ]
    if tls is not None and tls.server_name:
        options.append(("grpc.ssl_target_name_override", tls.server_name))
    creds = tls.credentials() if tls is not None else None
    return _Endpoint(target, creds, tuple(options))


# ---- wire <-> domain -------------------------------------------------------


def _amount(value: str) -> int:
    """An atomic amount from its decimal-string wire form."""
    if not (value.isascii() and value.isdigit()):
        raise WalletdError(f"walletd sent a malformed amount {value!r}")
    return int(value)


def _optional_amount(value: str) -> int | None:
    """A limit or remainder; "" means no limit."""
    return None if value == "" else _amount(value)


def _from_message(cls: type[D], message: Any, **converted: Any) -> D:
    """The domain dataclass ``cls`` from a message with fields of the same names."""
    same = {f.name: getattr(message, f.name) for f in fields(cls) if f.name not in converted}
    return cls(**same, **converted)


def _receipt(resp: pb.PayResponse) -> PayReceipt:
    """The domain receipt of a PayResponse."""
    return _from_message(PayReceipt, resp, amount=_amount(resp.amount))


def _window_state(w: pb.BudgetWindow) -> WindowState:
    return WindowState(
        window=w.window,
        limit=_optional_amount(w.limit),
        spent=_amount(w.spent),
        remaining=_optional_amount(w.remaining),
    )


def _budget_state(resp: pb.GetBudgetResponse) -> BudgetState:
    """The domain BudgetState of a GetBudgetResponse."""
    return BudgetState(
        client=resp.client,
        windows=tuple(_window_state(w) for w in resp.windows),
        frozen=resp.frozen,
        hosts=tuple(resp.hosts),
        global_hosts=tuple(resp.global_hosts),
        scoped=tuple(_window_state(w) for w in resp.scoped_windows),
        rates=tuple(
            RateState(window=r.window, per=r.per, limit=r.limit, count=r.count)
            for r in resp.rate_windows
        ),
    )


def _payment_view(p: pb.Payment) -> PaymentView:
    """The domain view of one Payment message."""
    return _from_message(PaymentView, p, amount=_amount(p.amount), labels=dict(p.labels))


def _payment_views(resp: pb.ListPaymentsResponse) -> list[PaymentView]:
    return [_payment_view(p) for p in resp.payments]


def _tally(t: pb.Tally) -> Tally:
    return Tally(t.count, _amount(t.amount))


def _spend_row(row: pb.SpendRow) -> ReportRow:
    return ReportRow(
        key=tuple(row.key),
        statuses={b: _tally(row.statuses[b]) if b in row.statuses else Tally() for b in BUCKETS},
        confirmed=_tally(row.confirmed),
        unconfirmed=_tally(row.unconfirmed),
        authorized=_amount(row.authorized or "0"),
    )


def _spend_report(resp: pb.GetSpendReportResponse) -> SpendReport:
    """The domain SpendReport of a GetSpendReportResponse (totals checked against the rows)."""
    rows = tuple(_spend_row(r) for r in resp.rows)
    totals = _spend_row(resp.totals)
    if total_of(rows).statuses != totals.statuses:
        raise WalletdError("walletd sent a spend report whose rows do not add up to its totals")
    query = ReportQuery(
        since_ms=resp.since_ms or None,
        until_ms=resp.until_ms or None,
        client=resp.client,
        group_by=tuple(resp.group_by),
    )
    refusals = tuple(
        RefusalCount(r.reason, r.rule, r.count, _amount(r.amount)) for r in resp.refusals
    )
    return SpendReport(query, resp.generated_at_ms, rows, totals, refusals)


def _health_request(service: str) -> bytes:
    """A serialized grpc.health.v1.HealthCheckRequest.

    Encoded by hand because grpcio-health-checking is a server dependency; the
    message is one string field (1), and service names are shorter than 128 bytes.
    """
    raw = service.encode()
    return b"\x0a" + bytes([len(raw)]) + raw if raw else b""


def _health_serving(data: bytes) -> bool:
    """True when a serialized HealthCheckResponse says SERVING (field 1, varint 1)."""
    return data[:2] == bytes([0x08, _SERVING])


class PayOptions(TypedDict, total=False):
    """The optional arguments of ``pay``: the demand, and labels for the ledger row."""

    payment_required: str
    """The 402's ``PAYMENT-REQUIRED`` header (x402 v2)."""
    body: bytes
    """Else the 402's JSON body (x402 v1)."""
    labels: Mapping[str, str] | None
    wait_for_approval: float
    """Seconds to wait for a human decision when the payment is held for approval
    (``ApprovalRequiredError``): approved, the payment is made then; denied or expired,
    ``ApprovalDeniedError``; still undecided, the ``ApprovalRequiredError``. Default: the
    client's ``wait_for_approval``."""


class ReportOptions(TypedDict, total=False):
    """The optional arguments of ``get_spend_report`` (times are Unix ms)."""

    since_ms: int | None
    until_ms: int | None
    group_by: Sequence[str]
    """Any of payee, host, model, day, status, approval and approver."""


@dataclass(frozen=True)
class _Rpc(Generic[T]):
    """One call, as data: the stub method, its request, and how to read its answer."""

    method: str
    request: Any
    read: Callable[[Any], T]
    wait_for_ready: bool = False
    timeout: float | None = None
    """This call's deadline in seconds, instead of the client's."""
    stream: bool = False
    """A server stream: ``read`` gets the list of every message."""


def _pay(key: str, method: str, url: str, options: PayOptions) -> _Rpc[PayReceipt]:
    request = pb.PayRequest(
        idempotency_key=key,
        method=method,
        url=url,
        payment_required=options.get("payment_required", ""),
        body=options.get("body", b""),
        labels=dict(options.get("labels") or {}),
    )
    return _Rpc("Pay", request, _receipt, wait_for_ready=True)


def _approval(msg: pb.Approval) -> Approval:
    """The domain approval of an Approval message."""
    return _from_message(
        Approval, msg, amount=_amount(msg.amount), threshold=_amount(msg.threshold),
        decided_at_ms=msg.decided_at_ms or None, labels=dict(msg.labels),
    )  # fmt: skip


AWAIT_STEP_S = 30.0
"""The longest one AwaitApproval call of the client waits (it calls again to wait longer)."""


def _await_approval(approval_id: str, wait_s: float) -> _Rpc[Approval]:
    request = pb.AwaitApprovalRequest(approval_id=approval_id, timeout_ms=int(wait_s * 1000))
    return _Rpc(
        "AwaitApproval", request, lambda msgs: _approval(msgs[-1]), timeout=wait_s + 10,
        stream=True,
    )  # fmt: skip


def _pay_plan(
    key: str, method: str, url: str, options: PayOptions, wait_default: float
) -> Plan[_Rpc[Any], PayReceipt]:
    """Pay; if held for approval, wait up to ``wait_for_approval`` for the decision, pay again."""
    check_options(options, PayOptions, "pay")
    wait = options.get("wait_for_approval", wait_default)
    rpc = _pay(key, method, url, options)
    try:
        receipt: PayReceipt = yield rpc
        return receipt
    except ApprovalRequiredError as err:
        if wait <= 0 or not err.approval_id:
            raise
        held = err
    deadline = time.monotonic() + wait
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise held
        state: Approval = yield _await_approval(held.approval_id, min(left, AWAIT_STEP_S))
        if state.status != ApprovalStatus.PENDING or time.time() * 1000 >= state.expires_at_ms:
            break
    receipt = yield rpc  # the signature once approved, else why not
    return receipt


def _list_approvals(status: str | None, limit: int) -> _Rpc[list[Approval]]:
    request = pb.ListApprovalsRequest(status=status or "", limit=limit)
    return _Rpc("ListApprovals", request, lambda r: [_approval(a) for a in r.approvals])


def _decide(approval_id: str, decision: str, note: str) -> _Rpc[Approval]:
    request = pb.DecideApprovalRequest(approval_id=approval_id, decision=decision, note=note)
    return _Rpc("DecideApproval", request, _approval)


def _approval_event(msg: pb.ApprovalEvent) -> ApprovalEvent:
    return ApprovalEvent(msg.kind, _approval(msg.approval))


@contextmanager
def _until_deadline(seconds: float | None) -> Iterator[None]:
    """A watch given ``seconds`` ends quietly when they run out (its deadline, not a failure)."""
    try:
        yield
    except grpc.RpcError as exc:
        if seconds is None or exc.code() is not grpc.StatusCode.DEADLINE_EXCEEDED:
            raise


def _report_outcome(payment_id: str, http_status: int, payment_response: str) -> _Rpc[str]:
    request = pb.ReportOutcomeRequest(
        payment_id=payment_id, http_status=http_status, payment_response=payment_response
    )
    return _Rpc("ReportOutcome", request, attrgetter("status"))


def _spend_report_rpc(options: ReportOptions) -> _Rpc[SpendReport]:
    """None is "no bound", 0 on the wire."""
    check_options(options, ReportOptions, "get_spend_report")
    request = pb.GetSpendReportRequest(
        since_ms=options.get("since_ms") or 0,
        until_ms=options.get("until_ms") or 0,
        group_by=list(options.get("group_by", ())),
    )
    return _Rpc("GetSpendReport", request, _spend_report)


def _get_budget() -> _Rpc[BudgetState]:
    return _Rpc("GetBudget", pb.GetBudgetRequest(), _budget_state)


def _list_payments(limit: int) -> _Rpc[list[PaymentView]]:
    return _Rpc("ListPayments", pb.ListPaymentsRequest(limit=limit), _payment_views)


class _ClientBase:
    """Settings and call options shared by the sync and async clients."""

    def __init__(
        self,
        socket: PathArg | None = None,
        token: str | None = None,
        token_file: PathArg | None = None,
        target: str | None = None,
        timeout: float = 10.0,
        tls: ClientTls | None = None,
        socket_owner: int | str | None = None,
        wait_for_approval: float = 0.0,
    ) -> None:
        tok = load_token(token, token_file)  # local mistakes first, then the socket probe
        self._endpoint = _endpoint(socket, target, tls, socket_owner)
        self._metadata: tuple[tuple[str, str], ...] = (
            (("authorization", f"Bearer {tok}"),) if tok else ()
        )
        self._timeout = timeout
        self._wait_for_approval = wait_for_approval
        """Seconds ``pay`` waits for a human decision on a held payment (0: none)."""
        self._start()

    def _start(self) -> None:
        """Open what the client needs up front (the blocking client: its channel)."""

    @property
    def target(self) -> str:
        """The gRPC target this client dials."""
        return self._endpoint.target

    def _call_options(self, rpc: _Rpc[Any]) -> dict[str, Any]:
        timeout = self._timeout if rpc.timeout is None else rpc.timeout
        options: dict[str, Any] = {"timeout": timeout, "metadata": self._metadata}
        if rpc.wait_for_ready:
            options["wait_for_ready"] = True
        return options


class WalletClient(_ClientBase, Closing):
    """Blocking client; thread-safe (one channel, shared by all calls)."""

    def _start(self) -> None:
        ep = self._endpoint
        if ep.credentials is None:
            self._channel = grpc.insecure_channel(ep.target, options=ep.options)
        else:
            self._channel = grpc.secure_channel(ep.target, ep.credentials, options=ep.options)
        self._stub = pb_grpc.WalletServiceStub(self._channel)

    def pay(
        self, idempotency_key: str, method: str, url: str, **options: Unpack[PayOptions]
    ) -> PayReceipt:
        """Pay one 402 demand; waits up to the timeout for a restarting daemon.

        On DaemonUnavailableError the payment may or may not have been recorded:
        retry with the same idempotency key, which returns the same header.
        Above an approval threshold it raises ApprovalRequiredError, unless
        ``wait_for_approval`` (here or the client's) lets it wait for the decision.
        """
        plan = _pay_plan(idempotency_key, method, url, options, self._wait_for_approval)
        return run(plan, self._call)

    def report_outcome(self, payment_id: str, http_status: int, payment_response: str = "") -> str:
        """Tell the daemon what the paid request returned; returns the payment's status.

        Raises PaidAnswerLostError when the server refused a payment that the
        chain shows already used (the daemon has recorded it settled).
        """
        return self._call(_report_outcome(payment_id, http_status, payment_response))

    def get_budget(self) -> BudgetState:
        """What remains in each of this client's budget windows."""
        return self._call(_get_budget())

    def list_payments(self, limit: int = 100) -> list[PaymentView]:
        """This client's payments, newest first."""
        return self._call(_list_payments(limit))

    def get_spend_report(self, **options: Unpack[ReportOptions]) -> SpendReport:
        """This client's spend report (scope read): counts and amounts by status.

        ``group_by`` takes payee, host, model, day, status, approval and approver;
        times are Unix ms.
        """
        return self._call(_spend_report_rpc(options))

    def list_approvals(self, status: str | None = None, limit: int = 100) -> list[Approval]:
        """Payments held for approval, every client's, newest first (scope approve)."""
        return self._call(_list_approvals(status, limit))

    def approve(self, approval_id: str, note: str = "") -> Approval:
        """Approve a held payment of another client (scope approve); its retry then signs."""
        return self._call(_decide(approval_id, "approve", note))

    def deny(self, approval_id: str, note: str = "") -> Approval:
        """Deny a held payment of another client (scope approve); nothing is ever signed."""
        return self._call(_decide(approval_id, "deny", note))

    def watch_approvals(self, seconds: float | None = None) -> Iterator[ApprovalEvent]:
        """Every approval waiting now, then each new one and each decision (scope approve).

        Runs until the caller stops iterating (the stream is cancelled then), or
        for ``seconds`` when given; a daemon that goes away raises
        DaemonUnavailableError.
        """
        call: Any = self._stub.WatchApprovals(
            pb.WatchApprovalsRequest(), timeout=seconds, metadata=self._metadata
        )
        try:
            with map_rpc_errors(), _until_deadline(seconds):
                for msg in call:
                    yield _approval_event(msg)
        finally:
            call.cancel()

    def health(self) -> bool:
        """True when the daemon answers and its wallet service is SERVING."""
        check = self._channel.unary_unary(
            HEALTH_CHECK, request_serializer=None, response_deserializer=None
        )
        try:
            data = check(_health_request(SERVICE_NAME), timeout=self._timeout)
        except grpc.RpcError:
            return False
        return isinstance(data, bytes) and _health_serving(data)

    def close(self) -> None:
        """Close the channel; the client cannot be used afterwards."""
        self._channel.close()

    def _call(self, rpc: _Rpc[T]) -> T:
        with map_rpc_errors():
            response = getattr(self._stub, rpc.method)(rpc.request, **self._call_options(rpc))
            if rpc.stream:
                response = list(response)
        return rpc.read(response)


class AsyncWalletClient(_ClientBase, AsyncClosing):
    """asyncio client; the channel is created lazily inside the running loop.

    A grpc.aio channel is bound to the loop that created it, so constructing the
    client opens no channel (it only checks a Unix socket, ``check_socket``), and
    a call from a different loop opens a new channel.
    """

    _channel: grpc.aio.Channel | None = None
    _stub: pb_grpc.WalletServiceStub | None = None
    _loop: asyncio.AbstractEventLoop | None = None

    def _current_channel(self) -> grpc.aio.Channel:
        """The channel of the running loop, opened on first use."""
        loop = asyncio.get_running_loop()
        if self._channel is None or self._loop is not loop:
            ep = self._endpoint
            if ep.credentials is None:
                self._channel = grpc.aio.insecure_channel(ep.target, options=ep.options)
            else:
                self._channel = grpc.aio.secure_channel(
                    ep.target, ep.credentials, options=ep.options
                )
            self._stub = None
            self._loop = loop
        return self._channel

    def _current_stub(self) -> pb_grpc.WalletServiceStub:
        """The stub of the running loop's channel, made once per channel."""
        channel = self._current_channel()
        if self._stub is None:
            self._stub = pb_grpc.WalletServiceStub(channel)
        return self._stub

    async def pay(
        self, idempotency_key: str, method: str, url: str, **options: Unpack[PayOptions]
    ) -> PayReceipt:
        """Pay one 402 demand; see WalletClient.pay."""
        plan = _pay_plan(idempotency_key, method, url, options, self._wait_for_approval)
        return await arun(plan, self._call)

    async def report_outcome(
        self, payment_id: str, http_status: int, payment_response: str = ""
    ) -> str:
        """Tell the daemon what the paid request returned; see WalletClient.report_outcome."""
        return await self._call(_report_outcome(payment_id, http_status, payment_response))

    async def get_budget(self) -> BudgetState:
        """What remains in each of this client's budget windows."""
        return await self._call(_get_budget())

    async def list_payments(self, limit: int = 100) -> list[PaymentView]:
        """This client's payments, newest first."""
        return await self._call(_list_payments(limit))

    async def get_spend_report(self, **options: Unpack[ReportOptions]) -> SpendReport:
        """This client's spend report; see WalletClient.get_spend_report."""
        return await self._call(_spend_report_rpc(options))

    async def list_approvals(self, status: str | None = None, limit: int = 100) -> list[Approval]:
        """Payments held for approval; see WalletClient.list_approvals."""
        return await self._call(_list_approvals(status, limit))

    async def approve(self, approval_id: str, note: str = "") -> Approval:
        """Approve a held payment; see WalletClient.approve."""
        return await self._call(_decide(approval_id, "approve", note))

    async def deny(self, approval_id: str, note: str = "") -> Approval:
        """Deny a held payment; see WalletClient.deny."""
        return await self._call(_decide(approval_id, "deny", note))

    async def watch_approvals(self, seconds: float | None = None) -> AsyncIterator[ApprovalEvent]:
        """See WalletClient.watch_approvals."""
        call: Any = self._current_stub().WatchApprovals(  # a grpc.aio stream
            pb.WatchApprovalsRequest(), timeout=seconds, metadata=self._metadata
        )
        try:
            with map_rpc_errors(), _until_deadline(seconds):
                async for msg in call:
                    yield _approval_event(msg)
        finally:
            call.cancel()

    async def health(self) -> bool:
        """True when the daemon answers and its wallet service is SERVING."""
        check = self._current_channel().unary_unary(
            HEALTH_CHECK, request_serializer=None, response_deserializer=None
        )
        try:
            data = await check(_health_request(SERVICE_NAME), timeout=self._timeout)
        except grpc.RpcError:
            return False
        return isinstance(data, bytes) and _health_serving(data)

    async def aclose(self) -> None:
        """Close the channel of the running loop, if one was opened."""
        channel, self._channel, self._loop, self._stub = self._channel, None, None, None
        if channel is not None:
            await channel.close(grace=None)

    async def _call(self, rpc: _Rpc[T]) -> T:
        stub = self._current_stub()
        with map_rpc_errors():
            call = getattr(stub, rpc.method)(rpc.request, **self._call_options(rpc))
            response = [m async for m in call] if rpc.stream else await call
        return rpc.read(response)
