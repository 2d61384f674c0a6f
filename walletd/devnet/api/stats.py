"""What the local paid API saw, counted per route, for tests to assert on.

The counters are fed by the gateway (requests, statuses, settlements) and by the
direct-transfer paywall (settlements); tests read them in-process through
:func:`~walletd.devnet.api.api_stats`, or over HTTP at ``GET /_devnet/stats``.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

__all__ = ["ApiStats", "RouteStats"]


@dataclass
class RouteStats:
    """Counters for one ``"METHOD /path"``."""

    requests: int = 0
    with_payment_header: int = 0
    without_payment_header: int = 0
    with_api_key: int = 0
    paid: int = 0
    payment_required: int = 0
    statuses: dict[int, int] = field(default_factory=dict)


class ApiStats:
    """What the API saw, for tests to assert on (thread-safe; the server runs in a thread).

    ``paid`` counts responses that carried a successful ``PAYMENT-RESPONSE``, i.e. the
    facilitator settled on chain; ``payment_required`` counts 402 answers.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._routes: dict[str, RouteStats] = {}
        self._transactions: list[str] = []

    def record_request(self, route: str, *, has_payment: bool, has_api_key: bool) -> None:
        """Count one incoming request."""
        with self._lock:
            stats = self._routes.setdefault(route, RouteStats())
            stats.requests += 1
            stats.with_payment_header += has_payment
            stats.without_payment_header += not has_payment
            stats.with_api_key += has_api_key

    def record_settlement(self, route: str, transaction: str) -> None:
        """Count one successful settlement and keep its transaction hash."""
        with self._lock:
            self._routes.setdefault(route, RouteStats()).paid += 1
            self._transactions.append(transaction)

    def record_status(self, route: str, status: int) -> None:
        """Count the status actually sent to the client."""
        with self._lock:
            stats = self._routes.setdefault(route, RouteStats())
            stats.statuses[status] = stats.statuses.get(status, 0) + 1
            stats.payment_required += status == 402

    def route(self, route: str) -> RouteStats:
        """A copy of one route's counters (zeros if never seen)."""
        with self._lock:
            stats = self._routes.get(route, RouteStats())
            return RouteStats(**{**stats.__dict__, "statuses": dict(stats.statuses)})

    @property
    def transactions(self) -> list[str]:
        """Settlement transaction hashes, oldest first."""
        with self._lock:
            return list(self._transactions)

    @property
    def paid(self) -> int:
        """Settled requests over all routes."""
        with self._lock:
            return sum(stats.paid for stats in self._routes.values())

    @property
    def payment_required(self) -> int:
        """402 answers over all routes."""
        with self._lock:
            return sum(stats.payment_required for stats in self._routes.values())

    def snapshot(self) -> dict[str, Any]:
        """A JSON-ready copy, as served at ``GET /_devnet/stats``."""
        with self._lock:
            routes = {
                name: {**stats.__dict__, "statuses": {str(k): v for k, v in stats.statuses.items()}}
                for name, stats in self._routes.items()
            }
            return {"routes": routes, "transactions": list(self._transactions)}

    def reset(self) -> None:
        """Forget everything (between tests)."""
        with self._lock:
            self._routes.clear()
            self._transactions.clear()
