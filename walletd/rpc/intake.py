"""How the gRPC server takes calls in: a thread each at once, a bounded wait for the request.

The synchronous grpc server reads a call's request message in a pool thread.
A peer that sends a call's HEADERS and then nothing would hold that thread
until the call ends, which it never does without a deadline: a few such
streams used to take every worker, and every other Pay waited.

So every accepted call runs in its own thread at once (the pool is as large as
``MAX_CONCURRENT_RPCS``, the number of calls the server accepts at all), and
``Intake``, a server interceptor, turns each unary-request method into a
stream-request one so that it sees the call before its message:

* it waits at most ``REQUEST_WAIT_S`` for each request message; a late one
  gets the call cancelled (``RequestWait``, one watcher thread for all calls);
* a unary call then takes one of ``work_slots`` (the old worker count: the
  ledger's connection pool has one connection per slot) for its handler.

Calls waiting for their message cost a thread and no slot, so stalled streams
delay nobody's Pay; what they can hold is bounded by the call limit and lasts
``REQUEST_WAIT_S``.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import grpc

if TYPE_CHECKING:
    _Interceptor = grpc.ServerInterceptor[Any, Any]
else:
    _Interceptor = grpc.ServerInterceptor

MAX_CONCURRENT_RPCS = 2048
"""Calls the server holds at once (running, waiting for a slot or for their request)."""

REQUEST_WAIT_S = 5.0
"""How long an accepted call may take to deliver each request message."""

_TICK_S = 0.25
"""The watcher cancels late calls in batches at most this often."""


class _Watch:
    __slots__ = ("context", "due")

    def __init__(self, context: grpc.ServicerContext, due: float) -> None:
        self.context: grpc.ServicerContext | None = context
        self.due = due


class RequestWait:
    """Cancels each watched call that is still waiting ``wait_s`` after it started to.

    Every watch has the same length, so they fall due in the order they were
    made: a deque, and one thread sleeping until the oldest is due.
    """

    def __init__(self, wait_s: float = REQUEST_WAIT_S) -> None:
        self.wait_s = wait_s
        self._due: deque[_Watch] = deque()
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None

    def watch(self, context: grpc.ServicerContext) -> _Watch:
        """Start watching a call; ``done`` must follow once its message has arrived."""
        entry = _Watch(context, time.monotonic() + self.wait_s)
        with self._cond:
            self._due.append(entry)
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="walletd-request-wait", daemon=True
                )
                self._thread.start()
            elif len(self._due) == 1:
                self._cond.notify()
        return entry

    def done(self, entry: _Watch) -> None:
        """The call's message arrived (or it ended): it is not cancelled."""
        with self._cond:
            entry.context = None

    def _run(self) -> None:
        while True:
            late: list[grpc.ServicerContext] = []
            with self._cond:
                while not self._due:
                    self._cond.wait()
                now = time.monotonic()
                while self._due and self._due[0].due <= now:
                    entry = self._due.popleft()
                    if entry.context is not None:
                        late.append(entry.context)
                        entry.context = None
                wait = self._due[0].due - now if self._due else None
            for context in late:
                context.cancel()  # type: ignore[no-untyped-call]
            if wait is not None:
                time.sleep(max(wait, _TICK_S))


_WAIT = RequestWait()
"""Shared by every server of the process (one watcher thread)."""


class _LateRequest(Exception):
    """The call was cancelled (by the watcher or the peer) before its message arrived."""


def _next_request(requests: Iterator[Any], wait: RequestWait, context: grpc.ServicerContext) -> Any:
    """The next request message, waiting at most ``wait.wait_s``; StopIteration at the end."""
    entry = wait.watch(context)
    try:
        return next(requests)
    except grpc.RpcError:
        raise _LateRequest from None
    finally:
        wait.done(entry)


class Intake(_Interceptor):
    """Wraps every method handler as described in the module docstring."""

    def __init__(self, work_slots: int, wait: RequestWait = _WAIT) -> None:
        self._slots = threading.BoundedSemaphore(work_slots)
        self._wait = wait
        self._wrapped: dict[str, grpc.RpcMethodHandler[Any, Any]] = {}
        """Per method, only for methods that exist (so unknown names cannot grow it)."""

    def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], grpc.RpcMethodHandler[Any, Any] | None],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any] | None:
        """The method's handler, wrapped once and then reused for every call."""
        method: str = handler_call_details.method
        wrapped = self._wrapped.get(method)
        if wrapped is None:
            handler = continuation(handler_call_details)
            if handler is None:
                return None
            wrapped = self._wrapped.setdefault(method, self._wrap(handler))
        return wrapped

    def _wrap(self, handler: grpc.RpcMethodHandler[Any, Any]) -> grpc.RpcMethodHandler[Any, Any]:
        des, ser = handler.request_deserializer, handler.response_serializer
        if handler.unary_unary is not None:
            return grpc.stream_unary_rpc_method_handler(self._unary(handler.unary_unary), des, ser)
        if handler.unary_stream is not None:
            return grpc.stream_stream_rpc_method_handler(
                self._unary_stream(handler.unary_stream), des, ser
            )
        if handler.stream_unary is not None:
            return grpc.stream_unary_rpc_method_handler(
                self._streaming(handler.stream_unary), des, ser
            )
        assert handler.stream_stream is not None
        return grpc.stream_stream_rpc_method_handler(
            self._streaming(handler.stream_stream), des, ser
        )

    def _one_request(self, requests: Iterator[Any], context: grpc.ServicerContext) -> Any:
        """The single request of a unary-request call, or the call ends here (aborted)."""
        try:
            return _next_request(requests, self._wait, context)
        except StopIteration:
            context.abort(grpc.StatusCode.UNIMPLEMENTED, "exactly one request message expected")
        except _LateRequest:
            context.abort(
                grpc.StatusCode.CANCELLED,
                f"no request message within {self._wait.wait_s:g} s",
            )

    def _unary(self, behavior: Callable[[Any, grpc.ServicerContext], Any]) -> Callable[..., Any]:
        def handle(requests: Iterator[Any], context: grpc.ServicerContext) -> Any:
            request = self._one_request(requests, context)
            with self._slots:
                return behavior(request, context)

        return handle

    def _unary_stream(
        self, behavior: Callable[[Any, grpc.ServicerContext], Iterator[Any]]
    ) -> Callable[..., Iterator[Any]]:
        def handle(requests: Iterator[Any], context: grpc.ServicerContext) -> Iterator[Any]:
            yield from behavior(self._one_request(requests, context), context)

        return handle

    def _streaming(self, behavior: Callable[[Iterator[Any], Any], Any]) -> Callable[..., Any]:
        def handle(requests: Iterator[Any], context: grpc.ServicerContext) -> Any:
            return behavior(self._guarded(requests, context), context)

        return handle

    def _guarded(self, requests: Iterator[Any], context: grpc.ServicerContext) -> Iterator[Any]:
        """``requests``, each message waited for at most ``REQUEST_WAIT_S``."""
        while True:
            try:
                yield _next_request(requests, self._wait, context)
            except (StopIteration, _LateRequest):
                return
