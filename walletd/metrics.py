"""Prometheus metrics: counters fed at the service edge, gauges computed at scrape time.

Two halves, both kept out of the domain and the service:

* ``MeteredWalletApi`` wraps the daemon's ``WalletApi`` (the edge the gRPC
  servicer calls) and counts every Pay by client and outcome, the amounts
  signed, refusals by reason and rule, and Pay's latency. Counters live for
  the process, as Prometheus expects (``rate()`` handles restarts); the
  decision log is the durable record.
* ``LedgerCollector`` answers each scrape from the ledger, read-only: what
  each client's (and the global) budget window still allows, what is
  outstanding, the wallet's USDC balance from the reconciler's cache, and the
  reconciler's lag: how long the oldest open payment is past its validBefore,
  and how long ago the last pass ended.

Labels never carry secrets: client names, outcomes, reason codes, rule and
window names only, but those names, budgets and spend are business facts, and
``serve(listen, ...)`` exposes ``/metrics`` over plain HTTP with no
authentication. A bare port (``9464``, ``:9464``) binds loopback (127.0.0.1);
any other host is bound as asked, with a warning in the log: only put it on a
private interface that only the scraper can reach.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, Counter, Histogram, start_http_server
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from walletd.db import queries
from walletd.db.ledger import Store
from walletd.domain import lifecycle
from walletd.domain.budget import BudgetState, window_states
from walletd.domain.payment import Caller, PayCommand, PaymentView, PayReceipt
from walletd.domain.report import ReportQuery, SpendReport
from walletd.errors import (
    ApprovalRequiredError,
    AuthError,
    InvalidRequestError,
    RefusedError,
    WalletdError,
)
from walletd.service.clock import now_ms
from walletd.service.ports import WalletApi
from walletd.service.reconcile import FundsCache

log = logging.getLogger("walletd.metrics")

GLOBAL = "_global"
"""The ``client`` label of the global budget's windows."""

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class PayCounters:
    """The counters and the histogram of Pay, registered on one registry."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.calls = Counter(
            "walletd_pay_requests",
            "Pay calls by client and outcome (paid, replayed, held, refused, error).",
            ["client", "outcome"],
            registry=registry,
        )
        self.amount = Counter(
            "walletd_pay_amount_atomic",
            "USDC atomic units of Pay replies by client and outcome (paid: newly signed; "
            "replayed: the same authorization returned again).",
            ["client", "outcome"],
            registry=registry,
        )
        self.refusals = Counter(
            "walletd_refusals",
            "Refused Pay calls by reason and by the rule or budget window that refused.",
            ["reason", "rule"],
            registry=registry,
        )
        self.latency = Histogram(
            "walletd_pay_latency_seconds",
            "Time Pay took inside the daemon, by outcome.",
            ["outcome"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )


def _outcome(err: Exception) -> str:
    """How a failed Pay is counted: as the decision log counts it."""
    if isinstance(err, ApprovalRequiredError):
        return "held"  # waiting for an approver: not a refusal
    if isinstance(err, RefusedError | InvalidRequestError):
        return "refused"
    if isinstance(err, AuthError):
        return "unauthenticated"
    return "error"


class MeteredWalletApi:
    """A ``WalletApi`` that counts and times Pay, then defers everything to ``inner``."""

    def __init__(self, inner: WalletApi, counters: PayCounters) -> None:
        self._inner = inner
        self._counters = counters

    def authenticate(self, token: str) -> Caller:
        """As ``inner``."""
        return self._inner.authenticate(token)

    def identify(self, token: str) -> Caller:
        """As ``inner``."""
        return self._inner.identify(token)

    def pay(self, caller: Caller, cmd: PayCommand) -> PayReceipt:
        """Pay through ``inner``, counting the outcome and timing it."""
        started = time.perf_counter()
        try:
            receipt = self._inner.pay(caller, cmd)
        except Exception as err:
            self._count(caller.name, _outcome(err), started, 0)
            if isinstance(err, WalletdError) and _outcome(err) == "refused":
                rule = err.details.get("rule") or err.details.get("window") or ""
                self._counters.refusals.labels(err.reason, rule).inc()
            raise
        outcome = "replayed" if receipt.reused else "paid"
        self._count(caller.name, outcome, started, receipt.amount)
        return receipt

    def _count(self, client: str, outcome: str, started: float, amount: int) -> None:
        self._counters.latency.labels(outcome).observe(time.perf_counter() - started)
        self._counters.calls.labels(client, outcome).inc()
        if amount:
            self._counters.amount.labels(client, outcome).inc(amount)

    def report_outcome(
        self, caller: Caller, payment_id: str, http_status: int, payment_response: str
    ) -> str:
        """As ``inner``."""
        return self._inner.report_outcome(caller, payment_id, http_status, payment_response)

    def get_budget(self, caller: Caller) -> BudgetState:
        """As ``inner``."""
        return self._inner.get_budget(caller)

    def list_payments(self, caller: Caller, limit: int) -> list[PaymentView]:
        """As ``inner``."""
        return self._inner.list_payments(caller, limit)

    def spend_report(self, caller: Caller, query: ReportQuery) -> SpendReport:
        """As ``inner``."""
        return self._inner.spend_report(caller, query)


class TimedFundsCache(FundsCache):
    """The reconciler's balance cache, remembering when a pass last refreshed it."""

    def __init__(self, low_balance: int = 0) -> None:
        super().__init__(low_balance)
        self._updated_at: float | None = None

    def update(self, balance: int) -> None:
        """Store the balance read at the end of a pass, and the time."""
        super().update(balance)
        self._updated_at = time.monotonic()

    def seconds_since_update(self) -> float | None:
        """Seconds since the last completed pass, or None before the first."""
        updated = self._updated_at
        return None if updated is None else time.monotonic() - updated


def _gauge(name: str, doc: str, labels: list[str] | None = None) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, doc, labels=labels)


def _reading(name: str, doc: str, value: float) -> GaugeMetricFamily:
    """A gauge with one unlabelled sample."""
    return GaugeMetricFamily(name, doc, value=value)


class LedgerCollector(Collector):
    """Budgets, outstanding amounts, balances and reconciler lag, read at each scrape."""

    def __init__(
        self,
        store: Store,
        funds: FundsCache | None,
        address: str,
        clock: Callable[[], int] = now_ms,
    ) -> None:
        self._store = store
        self._funds = funds
        self._address = address
        """The current key: its outstanding authorizations are the ones its balance must cover."""
        self._clock = clock

    def collect(self) -> Iterator[Metric]:
        """One consistent read of the ledger; a failing ledger shows as ledger_up 0."""
        up = _gauge("walletd_metrics_ledger_up", "1 when the ledger could be read for this scrape.")
        try:
            families = self._ledger_families()
        except WalletdError as err:
            log.warning("metrics: ledger read failed: %s", err.message)
            up.add_metric([], 0)
            yield up
            yield from self._funds_families()
            return
        up.add_metric([], 1)
        yield up
        yield from families
        yield from self._funds_families()

    def _ledger_families(self) -> list[Metric]:
        now = self._clock()
        limit = _gauge("walletd_budget_limit_atomic", "Budget limit.", ["client", "window"])
        spent = _gauge("walletd_budget_spent_atomic", "Spent in the window.", ["client", "window"])
        remaining = _gauge(
            "walletd_budget_remaining_atomic",
            "What the window still allows (USDC atomic units).",
            ["client", "window"],
        )
        with self._store.read() as tx:
            wallet = tx.wallet_state()
            scopes = [(GLOBAL, wallet.budget, tx.spent(None, now))]
            for client in tx.list_clients():
                if not client.revoked:
                    scopes.append((client.name, client.budget, tx.spent(client.id, now)))
            (count, amount), (old_count, old_amount) = tx.outstanding_by_key(self._address)
            pending_approvals = tx.pending_count()
        for name, budget, used in scopes:
            for state in window_states(budget, used):
                labels = [name, state.window]
                limit.add_metric(labels, state.limit or 0)
                spent.add_metric(labels, state.spent)
                remaining.add_metric(labels, state.remaining or 0)
        with self._store.connection() as conn:
            overdue = queries.oldest_overdue(conn, tuple(lifecycle.OPEN_STATUSES), now // 1000)
        lag = 0 if overdue is None else now // 1000 - overdue
        return [
            limit,
            spent,
            remaining,
            _reading(
                "walletd_reconcile_overdue_seconds",
                "How long the oldest still-open payment is past its validBefore (0: none).",
                lag,
            ),
            _reading(
                "walletd_frozen", "1 when the operator froze all payments.", int(wallet.frozen)
            ),
            _reading(
                "walletd_approvals_pending",
                "Payments held above an approval threshold, waiting for a decision.",
                pending_approvals,
            ),
            _reading(
                "walletd_outstanding_payments",
                "The current key's payments counted as spent, not settled.",
                count,
            ),
            _reading("walletd_outstanding_atomic", "Their amount (USDC atomic units).", amount),
            _reading(
                "walletd_retired_keys_outstanding_payments",
                "Retired keys' payments not settled (not drawn on the current key's balance).",
                old_count,
            ),
            _reading(
                "walletd_retired_keys_outstanding_atomic",
                "Their amount (atomic units).",
                old_amount,
            ),
        ]

    def _funds_families(self) -> Iterator[Metric]:
        if self._funds is None:
            return
        balance = self._funds.balance()
        if balance is not None:
            yield _reading(
                "walletd_wallet_usdc_atomic", "Wallet USDC balance at the last pass.", balance
            )
        if isinstance(self._funds, TimedFundsCache):
            age = self._funds.seconds_since_update()
            if age is not None:
                yield _reading(
                    "walletd_reconcile_last_pass_age_seconds",
                    "Seconds since the reconciler last completed a pass.",
                    age,
                )


@dataclass
class MetricsServer:
    """The running ``/metrics`` HTTP server."""

    httpd: WSGIServer
    thread: threading.Thread

    @property
    def address(self) -> str:
        """``host:port`` actually bound (the port is real even when 0 was asked)."""
        host, port = self.httpd.server_address[:2]
        name = host.decode() if isinstance(host, bytes) else host
        return f"{name}:{port}"

    def stop(self) -> None:
        """Stop serving and close the socket."""
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(5)


DEFAULT_METRICS_HOST = "127.0.0.1"


def parse_listen(listen: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[::1]:PORT`` for IPv6), or a bare ``PORT``/``:PORT`` on loopback.

    Raises:
        InvalidRequestError: neither.
    """
    host, _sep, port = listen.rpartition(":")
    host = host.strip("[]") or DEFAULT_METRICS_HOST
    if not port.isdigit() or int(port) > 65535:
        raise InvalidRequestError(f"--metrics must be [HOST:]PORT, got {listen!r}")
    return host, int(port)


def instrument(
    api: WalletApi, store: Store, funds: FundsCache | None, address: str
) -> tuple[MeteredWalletApi, CollectorRegistry]:
    """Wrap ``api`` with counters and register the ledger collector, on a fresh registry.

    ``address`` is the current key's: the outstanding gauges are split by it.
    """
    registry = CollectorRegistry()
    registry.register(LedgerCollector(store, funds, address))
    return MeteredWalletApi(api, PayCounters(registry)), registry


def serve(listen: str, registry: CollectorRegistry) -> MetricsServer:
    """Serve ``registry`` at ``http://listen/metrics`` in a daemon thread.

    Raises:
        InvalidRequestError: a bad address, or the port cannot be bound.
    """
    from walletd.config import is_loopback_host

    host, port = parse_listen(listen)
    try:
        httpd, thread = start_http_server(port, addr=host, registry=registry)
    except OSError as exc:
        raise InvalidRequestError(f"cannot serve metrics on {listen}: {exc.strerror}") from exc
    server = MetricsServer(httpd, thread)
    log.info("walletd metrics on http://%s/metrics", server.address)
    if not is_loopback_host(host):
        log.warning(
            "metrics are served without authentication on %s, not loopback: anyone who can "
            "reach it sees client names, budgets and spend; bind 127.0.0.1 or a private "
            "interface only the scraper reaches",
            server.address,
        )
    return server
