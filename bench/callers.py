"""Caller processes released together at a barrier, and what they measured, summed up.

Pay over the socket and gRPC alone both run N separate caller processes against
one server process: each connects and warms up, all start at one barrier (this
process too, so the server's CPU is counted from then), and each sends back
``(start, end, latencies in µs, CPU seconds, refusals)`` for its calls.
"""

from __future__ import annotations

import multiprocessing as mp
from collections.abc import Callable
from typing import Any

from bench.stats import Result, process_cpu

Part = tuple[float, float, list[float], float, int]
"""One caller's (start, end, latencies in µs, CPU seconds, refusals)."""


def _run(fn: Callable[..., Part], args: tuple[Any, ...], index: int, barrier: object,
         out: object) -> None:  # fmt: skip
    try:
        out.put(fn(*args, barrier))  # type: ignore[attr-defined]
    except BaseException as exc:  # the parent must hear of it, not wait for a result
        out.put(f"caller {index} failed: {exc!r}"[:500])  # type: ignore[attr-defined]


def fan_out(
    fn: Callable[..., Part],
    args_of: Callable[[int], tuple[Any, ...]],
    callers: int,
    server_pid: int,
    name: str,
) -> tuple[Result, int]:
    """Run ``fn(*args_of(i), barrier)`` in ``callers`` processes; the summed Result and refusals.

    ``fn`` must be a module-level function (the processes are spawned) that
    waits on the barrier once it is warm and returns its Part.
    """
    ctx = mp.get_context("spawn")
    barrier, out = ctx.Barrier(callers + 1), ctx.Queue()  # + 1: this process
    procs = [ctx.Process(target=_run, args=(fn, args_of(i), i, barrier, out))
             for i in range(callers)]  # fmt: skip
    for p in procs:
        p.start()
    barrier.wait(timeout=600)  # every caller is connected and warm
    server_cpu = process_cpu(server_pid)
    parts = [out.get(timeout=600) for _ in procs]
    server_cpu = process_cpu(server_pid) - server_cpu
    for p in procs:
        p.join()
    failed = [p for p in parts if isinstance(p, str)]
    if failed:
        raise RuntimeError("; ".join(failed))
    start, end = min(p[0] for p in parts), max(p[1] for p in parts)
    latencies = [lat for p in parts for lat in p[2]]
    cpu = server_cpu + sum(p[3] for p in parts)
    ops = sum(len(p[2]) for p in parts)
    return Result(name, ops, end - start, latencies, cpu), sum(p[4] for p in parts)
