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
* **durable commit**: one small SQLite insert per transaction in WAL mode with
  ``synchronous=FULL`` on the same filesystem as the benchmark's ledgers. A
  single caller's Pay waits for one such commit (it has no one to share it with).
"""

from __future__ import annotations

import asyncio
import multiprocessing as mp
import os
import shutil
import sqlite3
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc

from bench.callers import Part, fan_out
from bench.stats import Result

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


def _serve(socket: str, kind: str, ready: object, stop: object) -> None:
    if kind == "aio":
        asyncio.run(_serve_aio(socket, ready, stop))
        return
    server = grpc.server(ThreadPoolExecutor(max_workers=16))
    server.add_generic_rpc_handlers(_handlers(_echo))
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


def grpc_alone(callers: int, calls: int, kind: str = "sync") -> Result:
    """``callers`` processes x ``calls`` round trips to a do-nothing grpc server.

    ``kind`` is "sync" (walletd's: a thread pool) or "aio" (``grpc.aio``).
    """
    ctx = mp.get_context("spawn")
    root = tempfile.mkdtemp(prefix="wd-floor-", dir="/tmp")
    socket = os.path.join(root, "floor.sock")
    ready, stop = ctx.Event(), ctx.Event()
    server = ctx.Process(target=_serve, args=(socket, kind, ready, stop))
    server.start()
    try:
        if not ready.wait(30):
            raise RuntimeError("the bare grpc server did not start")
        name = f"gRPC {kind} alone, {callers} callers"
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
