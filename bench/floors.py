"""What no Pay can beat on this machine: a bare gRPC round trip and one durable commit.

These lines put the targets in proportion. They are measured in the same run as
the anchor and Pay, so their ratios are comparable:

* **gRPC alone**: a synchronous grpc server like walletd's (a pool of 16 worker
  threads, a Unix socket) whose handler does nothing but answer with a reply the
  size of a Pay receipt, called by the same number of caller processes with the
  same kind of channel, request size and bearer metadata. Pay does this round
  trip plus its own work, so its throughput and latency cannot pass this line.
  The same with the ``grpc.aio`` server (one event loop, no worker threads)
  shows whether switching walletd's server kind would lift that ceiling.
* **lean durable Pay**: the least a durable Pay can do in Python behind that
  same server: per call it decodes the demand (walletd's own decoder),
  makes the EIP-712 digest, signs it and builds the header with walletd's
  code, and adds one row under a group commit (WAL, ``synchronous=FULL``,
  one running total per batch) before it answers. No policy, no budget
  windows, no audit chain, no decision log, no idempotency lookup. It shows
  what this transport and this durability allow a Python daemon here, so the
  distance from it to Pay is walletd's own bookkeeping.
* **durable commit**: one small SQLite insert per transaction in WAL mode with
  ``synchronous=FULL`` on the same filesystem as the benchmark's ledgers. A
  single caller's Pay waits for one such commit (it has no one to share it with).
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing as mp
import os
import shutil
import sqlite3
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc

from bench.callers import Part, fan_out
from bench.stats import Result
from tests.plugins.daemon import demand_header

METHOD = "/bench.Floor/Echo"
REQUEST = b"r" * 700
"""About a Pay request: the PAYMENT-REQUIRED value, URL and idempotency key."""
REPLY = b"h" * 1100
"""About a Pay reply: the base64 PAYMENT-SIGNATURE header and the receipt fields."""


def _echo(request: bytes, context: grpc.ServicerContext) -> bytes:
    return REPLY


async def _echo_async(request: bytes, context: grpc.aio.ServicerContext[bytes, bytes]) -> bytes:
    return REPLY


def _handlers(fn: object) -> list[grpc.GenericRpcHandler[bytes, bytes]]:
    handler = grpc.unary_unary_rpc_method_handler(fn)  # type: ignore[arg-type]
    return [grpc.method_handlers_generic_handler("bench.Floor", {"Echo": handler})]


def _serve(socket: str, kind: str, ready: object, stop: object, nice: int = 0) -> None:
    if nice:
        with contextlib.suppress(PermissionError):  # as pay_load.daemon: it runs at 0 then
            os.nice(nice)
    if kind == "aio":
        asyncio.run(_serve_aio(socket, ready, stop))
        return
    handler = _lean_pay_handler(socket + ".db") if kind == "lean" else _echo
    server = grpc.server(ThreadPoolExecutor(max_workers=16))
    server.add_generic_rpc_handlers(_handlers(handler))
    server.add_insecure_port(f"unix:{socket}")
    server.start()
    ready.set()  # type: ignore[attr-defined]
    stop.wait()  # type: ignore[attr-defined]
    server.stop(0)


async def _serve_aio(socket: str, ready: object, stop: object) -> None:
    server = grpc.aio.server()
    server.add_generic_rpc_handlers(_handlers(_echo_async))
    server.add_insecure_port(f"unix:{socket}")
    await server.start()
    ready.set()  # type: ignore[attr-defined]
    await asyncio.get_running_loop().run_in_executor(None, stop.wait)  # type: ignore[attr-defined]
    await server.stop(0)


class _LeanLedger:
    """One SQLite file, and a group commit in its simplest form (leader takes the queue)."""

    def __init__(self, path: str) -> None:
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        for pragma in ("journal_mode=WAL", "synchronous=FULL"):
            self._db.execute(f"PRAGMA {pragma}")
        self._db.execute("CREATE TABLE p (nonce BLOB PRIMARY KEY, amount INTEGER, header TEXT)")
        self._db.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, spent INTEGER)")
        self._db.execute("INSERT INTO t VALUES (1, 0)")
        self._queue: list[tuple[tuple[bytes, int, str], threading.Event]] = []
        self._queued = threading.Lock()
        self._leading = threading.Lock()

    def record(self, row: tuple[bytes, int, str]) -> None:
        """Return once ``row`` is durably committed (by this thread or another's batch)."""
        done = threading.Event()
        with self._queued:
            self._queue.append((row, done))
        while not done.is_set():
            with self._leading:
                if not done.is_set():
                    self._commit()

    def _commit(self) -> None:
        with self._queued:
            batch, self._queue = self._queue, []
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        db.executemany("INSERT INTO p VALUES (?, ?, ?)", [row for row, _ in batch])
        db.execute("UPDATE t SET spent = spent + ? WHERE id = 1", (sum(r[1] for r, _ in batch),))
        db.execute("COMMIT")
        for _, done in batch:
            done.set()


def _lean_pay_handler(path: str) -> object:
    """The lean Pay: decode, digest, sign, header, one durable row (see the module docstring)."""
    from walletd.domain.demand import Requirement, decode_demand
    from walletd.domain.eip3009 import Authorization, authorization_digest, payment_header
    from walletd.domain.networks import BASE
    from walletd.keys.signer import LocalSigner

    signer, ledger = LocalSigner(os.urandom(31) + b"\1"), _LeanLedger(path)
    header = demand_header()

    def pay(request: bytes, context: grpc.ServicerContext) -> bytes:
        demand = decode_demand(header, b"")
        req = demand.entries[0]
        assert isinstance(req, Requirement)
        now = int(time.time())
        auth = Authorization(signer.address, req.pay_to, req.amount, now - 600,
                             now + req.max_timeout_seconds, os.urandom(32))  # fmt: skip
        signature = signer.sign_hash(authorization_digest(BASE, auth))
        _, value = payment_header(
            version=demand.version, network=BASE, accepted=req.raw,
            resource=demand.resource, auth=auth, signature=signature,
        )  # fmt: skip
        ledger.record((auth.nonce, auth.value, value))
        return value.encode()

    return pay


def _calls(socket: str, calls: int, barrier: object) -> Part:
    metadata = (("authorization", "Bearer " + "t" * 43),)
    with grpc.insecure_channel(f"unix:{socket}") as channel:
        echo = channel.unary_unary(METHOD, request_serializer=None, response_deserializer=None)
        for _ in range(20):
            echo(REQUEST, timeout=10, metadata=metadata, wait_for_ready=True)
        barrier.wait()  # type: ignore[attr-defined]
        latencies = []
        cpu, start = time.process_time(), time.perf_counter()
        for _ in range(calls):
            t0 = time.perf_counter_ns()
            echo(REQUEST, timeout=10, metadata=metadata, wait_for_ready=True)
            latencies.append((time.perf_counter_ns() - t0) / 1000)
        end, cpu = time.perf_counter(), time.process_time() - cpu
    return start, end, latencies, cpu, 0


def grpc_alone(callers: int, calls: int, kind: str = "sync", nice: int = 0) -> Result:
    """``callers`` processes x ``calls`` round trips to a do-nothing grpc server.

    ``kind`` is "sync" (walletd's: a thread pool), "aio" (``grpc.aio``) or
    "lean" (the sync server answering with the lean durable Pay); the server
    runs at ``nice`` when this process may set it.
    """
    ctx = mp.get_context("spawn")
    root = tempfile.mkdtemp(prefix="wd-floor-", dir="/tmp")
    socket = os.path.join(root, "floor.sock")
    ready, stop = ctx.Event(), ctx.Event()
    server = ctx.Process(target=_serve, args=(socket, kind, ready, stop, nice))
    server.start()
    try:
        if not ready.wait(30):
            raise RuntimeError("the bare grpc server did not start")
        name = f"gRPC {kind} alone, {callers} callers"
        if kind == "lean":
            name = f"lean durable Pay, {callers} callers"
        result, _ = fan_out(_calls, lambda _: (socket, calls), callers, server.pid or 0, name)
    finally:
        stop.set()
        server.join(10)
        shutil.rmtree(root, ignore_errors=True)
    return result


def durable_commit(commits: int) -> Result:
    """``commits`` one-row SQLite transactions, WAL and ``synchronous=FULL``, one thread."""
    root = Path(tempfile.mkdtemp(prefix="wd-floor-", dir="/tmp"))
    try:
        db = sqlite3.connect(root / "floor.db", isolation_level=None)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=FULL")
        db.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, v BLOB)")
        latencies = []
        cpu, start = time.process_time(), time.perf_counter()
        for _ in range(commits):
            t0 = time.perf_counter_ns()
            db.execute("BEGIN IMMEDIATE")
            db.execute("INSERT INTO t (v) VALUES (?)", (REPLY,))
            db.execute("COMMIT")
            latencies.append((time.perf_counter_ns() - t0) / 1000)
        seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
        db.close()
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return Result("one durable SQLite commit (fsync), 1 thread", commits, seconds, latencies, cpu)
