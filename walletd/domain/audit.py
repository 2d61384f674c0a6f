"""The tamper-evident ledger: what each hash covers, and the walk that checks the chains.

Four append-only tables are hash-chained: ``payment_events``, ``decisions``,
``key_events`` and ``admin_events`` (each its own chain).
Each row stores ``prev_hash`` (the ``hash`` of the row before it in id order,
or ``GENESIS`` for the first) and its own ``hash``::

    hash = sha256(canonical({"scheme": SCHEME, "kind": kind, <the covered fields>}))

``canonical`` is JSON with sorted keys, no spaces and ASCII only, so the bytes
hashed do not depend on the database, the driver or the Python version. The
``data`` and ``labels`` columns are hashed as the stored text, not re-encoded.

What is covered, and why:

* **an event**: its id, payment id, time, status, cause, data, ``prev_hash``,
  and ``payment_hash`` — the digest of *every* column of its payment row as it
  was right after the event (``PAYMENT_FIELDS`` and ``PAYMENT_FIELDS_ADDED``,
  mutable state included).
* **a payment row** is checked against the ``payment_hash`` of its *latest*
  event: every change to a payment (status, release, settlement) is made in
  the same transaction as an event, so the current row must equal the state
  the newest event recorded. Editing an amount, payee or status shows up there.
* **a decision**: every column (``DECISION_FIELDS``).
* **a key event** (passphrase change, rotation): every column
  (``KEY_EVENT_FIELDS``), so which key signed when cannot be rewritten quietly.
* **an admin event** (client added or revoked, budget set, freeze or resume):
  every column (``ADMIN_EVENT_FIELDS``); its ``data`` holds the state the
  change left (``AdminReplay`` says how each operation applies). The first
  one is a ``snapshot`` of every client and the wallet row, written when the
  table was created. Replaying the chain gives what the ``clients`` rows and
  the ``wallet_state`` row must hold now; each column that differs is named.
* **an approval** (a payment held above a threshold, and the human decision
  on it) is checked against the newest event of its payment that recorded
  it: every change to an ``approvals`` row is made with such an event, whose
  ``data`` holds the whole approval (``ApprovalCheck``), so an edited
  decision, approver, note or expiry shows up there.
* **the running totals** (``spend_buckets``, what Pay reads to enforce budget
  windows) are not hashed but recomputed: ``BucketCheck`` sums every payment
  that counts as spent into the buckets ``walletd.domain.buckets`` says it adds
  to, and names every bucket whose stored amount differs. Fine buckets older
  than the prune horizon are skipped (they may have been deleted, and no
  window reads them), and so is a scope whose lifetime total saturated (its
  windows are summed from the payment rows, which the chain covers).

What the chains alone cannot see is a cut-off tail (deleting the newest rows
leaves a shorter but consistent chain). That is what ``walletd audit head`` is
for: keep its output (one head per chain) somewhere walletd cannot write, and
pass it back to ``walletd audit verify --anchor``; every anchored row must
still be there with the same hash. Anyone who can write the database *and* run
this code can rebuild every hash; the chain makes edits evident, the anchored
heads make rewriting or truncating history evident.
"""

from __future__ import annotations

import hashlib
import json
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from walletd.domain import buckets, lifecycle, limits

SCHEME = "walletd-ledger-v1"
"""Part of every hashed document; a change of encoding must change it."""

GENESIS = "0" * 64
"""The ``prev_hash`` of the first row of each chain."""

PAYMENT_FIELDS: tuple[str, ...] = (
    "id",
    "client_id",
    "idempotency_key",
    "fingerprint",
    "status",
    "amount",
    "payee",
    "network",
    "asset",
    "payer",
    "method",
    "url",
    "host",
    "nonce",
    "valid_after",
    "valid_before",
    "header_name",
    "header_value",
    "labels",
    "created_at_ms",
    "released_at_ms",
    "reported_tx",
    "settled_tx",
)
"""The columns of ``payments`` (as of revision 0003) an event's ``payment_hash`` digests."""

PAYMENT_FIELDS_ADDED: Mapping[str, Any] = {"kind": "exact", "authorized": 0}
"""Payment columns added after 0003, with the value every older row has.

Each is hashed only when it differs from that value, so snapshots taken before
the column existed stay valid while any non-default value (or an edit away
from one) is covered. A new payment column must be added here.
"""

EVENT_FIELDS: tuple[str, ...] = (
    "id",
    "payment_id",
    "at_ms",
    "status",
    "cause",
    "data",
    "payment_hash",
    "prev_hash",
)
"""The columns of ``payment_events`` an event's ``hash`` covers (all but ``hash``)."""

DECISION_FIELDS: tuple[str, ...] = (
    "id",
    "at_ms",
    "client_id",
    "client",
    "outcome",
    "reason",
    "rule",
    "message",
    "idempotency_key",
    "host",
    "payee",
    "amount",
    "labels",
    "payment_id",
    "prev_hash",
)
"""The columns of ``decisions`` a decision's ``hash`` covers (all but ``hash``)."""

KEY_EVENT_FIELDS: tuple[str, ...] = (
    "id",
    "at_ms",
    "operation",
    "old_address",
    "new_address",
    "data",
    "prev_hash",
)
"""The columns of ``key_events`` a key event's ``hash`` covers (all but ``hash``)."""

ADMIN_EVENT_FIELDS: tuple[str, ...] = (
    "id",
    "at_ms",
    "operation",
    "client",
    "data",
    "prev_hash",
)
"""The columns of ``admin_events`` an admin event's ``hash`` covers (all but ``hash``)."""

EVENTS = "payment_events"
DECISIONS = "decisions"
PAYMENTS = "payments"
KEY_EVENTS = "key_events"
ADMIN_EVENTS = "admin_events"
CLIENTS = "clients"
WALLET = "wallet_state"
BUCKETS = "spend_buckets"

CHAINS: tuple[str, ...] = (EVENTS, DECISIONS, KEY_EVENTS, ADMIN_EVENTS)
"""Every hash-chained table, in the order ``audit head`` prints them."""

LIMIT_FIELDS: tuple[str, ...] = (
    "per_request",
    "hourly",
    "daily",
    "monthly",
    "total",
    "payees",
    "hosts",
)
"""A budget's columns (in ``clients`` and ``wallet_state``)."""

CLIENT_FIELDS: tuple[str, ...] = (
    "id",
    "name",
    "token_hash",
    "scopes",
    "created_at_ms",
    "revoked_at_ms",
    *LIMIT_FIELDS,
)
"""Every column of ``clients``: what a ``client-add`` and a ``snapshot`` record."""

WALLET_FIELDS: tuple[str, ...] = ("frozen", *LIMIT_FIELDS)
"""The columns of the ``wallet_state`` row the admin events decide."""

FIELDS_ADDED: Mapping[str, Any] = {"approve_above": None}
"""Columns of ``clients`` and ``wallet_state`` added after 0007, with the value older rows
and events have (an older snapshot or ``client-add`` without them replays to it)."""

SNAPSHOT = "snapshot"
"""data: ``{"clients": [every CLIENT_FIELDS row], "wallet": WALLET_FIELDS}``; replaces all."""
CLIENT_ADD = "client-add"
"""client: the name; data: the new row's ``CLIENT_FIELDS``."""
CLIENT_REVOKE = "client-revoke"
"""client: the name; data: ``{"revoked_at_ms": ...}``."""
BUDGET_SET = "budget-set"
"""client: the name, or empty for the global budget; data: the new ``LIMIT_FIELDS``."""
FREEZE = "freeze"
"""client: empty; data: ``{"frozen": true|false}`` (freeze, or resume)."""
LIMIT_SET = "limit-set"
"""client: the owner's name, or empty for a global limit; data: ``{"selector": ...}`` and
the limit's ``limits.LIMIT_FIELDS`` (all null: the limit was removed)."""
LIMITS = "scoped_limits"
APPROVAL_THRESHOLD = "approval-threshold"
"""client: the name, or empty for the global one; data: ``{"approve_above": amount|null}``."""


def canonical(doc: Mapping[str, Any]) -> bytes:
    """The one byte encoding that is hashed: sorted keys, no whitespace, ASCII."""
    return json.dumps(
        doc, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False
    ).encode("ascii")


def _digest(kind: str, fields: tuple[str, ...], row: Mapping[str, Any]) -> str:
    doc = {name: row[name] for name in fields}
    doc["scheme"] = SCHEME
    doc["kind"] = kind
    return hashlib.sha256(canonical(doc)).hexdigest()


def payment_digest(row: Mapping[str, Any]) -> str:
    """The digest of a payment row's every column (``PAYMENT_FIELDS`` and ``_ADDED``)."""
    doc = {name: row[name] for name in PAYMENT_FIELDS}
    for name, default in PAYMENT_FIELDS_ADDED.items():
        value = row.get(name, default)
        if value != default:
            doc[name] = value
    return _digest("payment", tuple(doc), doc)


def event_hash(row: Mapping[str, Any]) -> str:
    """The hash of one payment event (``EVENT_FIELDS``, ``prev_hash`` included)."""
    return _digest("payment_event", EVENT_FIELDS, row)


def decision_hash(row: Mapping[str, Any]) -> str:
    """The hash of one Pay decision (``DECISION_FIELDS``, ``prev_hash`` included)."""
    return _digest("decision", DECISION_FIELDS, row)


def key_event_hash(row: Mapping[str, Any]) -> str:
    """The hash of one key event (``KEY_EVENT_FIELDS``, ``prev_hash`` included)."""
    return _digest("key_event", KEY_EVENT_FIELDS, row)


def admin_event_hash(row: Mapping[str, Any]) -> str:
    """The hash of one admin event (``ADMIN_EVENT_FIELDS``, ``prev_hash`` included)."""
    return _digest("admin_event", ADMIN_EVENT_FIELDS, row)


@dataclass(frozen=True)
class Break:
    """One place where the ledger does not match its chain."""

    table: str
    """A chained table, ``payments``, ``clients``, ``wallet_state`` or ``spend_buckets``."""
    row_id: int | None
    """The event or decision id (for a payment, its newest event's id, if any)."""
    payment_id: str | None
    problem: str
    subject: str | None = None
    """What the problem is about, when not a chained row: ``client alpha``, ``global``,
    or a bucket such as ``client alpha day 2026-12-07T00:00:00Z``."""

    def describe(self) -> str:
        """One line naming the row, for humans."""
        where = f"{self.table} id={self.row_id}" if self.row_id is not None else self.table
        if self.payment_id:
            where += f" payment={self.payment_id}"
        if self.subject:
            where += f" ({self.subject})"
        return f"{where}: {self.problem}"


@dataclass(frozen=True)
class AuditResult:
    """The outcome of recomputing every chain, the client and wallet rows and the running totals."""

    events: int
    decisions: int
    payments: int
    events_head: str
    decisions_head: str
    breaks: tuple[Break, ...] = ()
    """The problems found: events, then decisions, then key events, each in id order (capped)."""
    break_count: int = 0
    key_events: int = 0
    key_events_head: str = GENESIS
    admin_events: int = 0
    admin_events_head: str = GENESIS
    clients: int = 0
    """Client rows checked against the admin events."""
    buckets: int = 0
    """Running-total buckets compared with the sums of the payments."""

    @property
    def heads(self) -> dict[str, str]:
        """The newest hash of each chain, by table."""
        return {
            EVENTS: self.events_head,
            DECISIONS: self.decisions_head,
            KEY_EVENTS: self.key_events_head,
            ADMIN_EVENTS: self.admin_events_head,
        }

    @property
    def ok(self) -> bool:
        """True when every hash and every payment row checks out."""
        return self.break_count == 0

    @property
    def first_break(self) -> Break | None:
        """The earliest broken link, or None."""
        return self.breaks[0] if self.breaks else None


MAX_BREAKS = 100
"""How many problems a result lists (the count is always exact)."""


@dataclass
class ChainWalk:
    """Walks one chain in id order, recomputing each hash and each back-link.

    After a broken link the walk continues from the *stored* hash, so one edited
    row is reported once instead of breaking everything after it.
    """

    table: str
    fields: tuple[str, ...]
    kind: str
    count: int = 0
    head: str = GENESIS
    breaks: list[Break] = field(default_factory=list)

    def feed(self, row: Mapping[str, Any]) -> None:
        """Check one row (a mapping with every covered field and ``hash``)."""
        self.count += 1
        payment_id = row.get("payment_id")
        if row["prev_hash"] != self.head:
            self.breaks.append(
                Break(
                    self.table,
                    row["id"],
                    payment_id,
                    "prev_hash does not match the row before it "
                    "(a row was removed, inserted or reordered)",
                )
            )
        if _digest(self.kind, self.fields, row) != row["hash"]:
            self.breaks.append(
                Break(self.table, row["id"], payment_id, "hash does not match the row (edited)")
            )
        self.head = str(row["hash"])


def events_walk() -> ChainWalk:
    """A walk over ``payment_events``."""
    return ChainWalk(EVENTS, EVENT_FIELDS, "payment_event")


def decisions_walk() -> ChainWalk:
    """A walk over ``decisions``."""
    return ChainWalk(DECISIONS, DECISION_FIELDS, "decision")


def key_events_walk() -> ChainWalk:
    """A walk over ``key_events``."""
    return ChainWalk(KEY_EVENTS, KEY_EVENT_FIELDS, "key_event")


def admin_events_walk() -> ChainWalk:
    """A walk over ``admin_events``."""
    return ChainWalk(ADMIN_EVENTS, ADMIN_EVENT_FIELDS, "admin_event")


class PaymentCheck:
    """Checks each payment row against the snapshot its newest event recorded."""

    def __init__(self) -> None:
        self._latest: dict[str, tuple[int, str]] = {}
        self.count = 0
        self.breaks: list[Break] = []

    def saw_event(self, row: Mapping[str, Any]) -> None:
        """Remember an event (fed in id order, so the last one seen is the newest)."""
        self._latest[str(row["payment_id"])] = (int(row["id"]), str(row["payment_hash"]))

    def feed(self, payment: Mapping[str, Any]) -> None:
        """Check one payment row (every ``PAYMENT_FIELDS`` column)."""
        self.count += 1
        latest = self._latest.pop(str(payment["id"]), None)
        if latest is None:
            self.breaks.append(
                Break(
                    PAYMENTS, None, payment["id"], "payment has no events (added outside walletd)"
                )
            )
        elif payment_digest(payment) != latest[1]:
            self.breaks.append(
                Break(
                    EVENTS,
                    latest[0],
                    payment["id"],
                    "payment row differs from the state its latest event recorded (edited)",
                )
            )

    def finish(self) -> None:
        """Report events whose payment row is gone."""
        for payment_id, (event_id, _) in self._latest.items():
            self.breaks.append(Break(EVENTS, event_id, payment_id, "payment row is missing"))
        self._latest.clear()


def _value(name: str, value: Any) -> Any:
    """A column as the admin events record it (``frozen`` is a bool on every backend)."""
    return bool(value) if name == "frozen" else value


def _added(row: Mapping[str, Any]) -> dict[str, Any]:
    return {name: row.get(name, default) for name, default in FIELDS_ADDED.items()}


def client_state(row: Mapping[str, Any]) -> dict[str, Any]:
    """A ``clients`` row as an admin event records it (``CLIENT_FIELDS``, ``FIELDS_ADDED``)."""
    return {name: row[name] for name in CLIENT_FIELDS} | _added(row)


def wallet_state(row: Mapping[str, Any]) -> dict[str, Any]:
    """The ``wallet_state`` row as an admin event records it (``WALLET_FIELDS``, ``_ADDED``)."""
    return {name: _value(name, row[name]) for name in WALLET_FIELDS} | _added(row)


class AdminReplay:
    """Replays the admin events into the client and wallet state they must have left.

    Fed the chain in id order (after ``ChainWalk`` checked each hash), then the
    live ``clients`` rows and the ``wallet_state`` row; every column that differs
    from the replayed state is a break naming the client (or ``global``). A new
    kind of policy object gets its own operation here and its own check.
    """

    def __init__(self) -> None:
        self.clients: dict[str, dict[str, Any]] = {}
        self.wallet: dict[str, Any] | None = None
        self.limits: dict[tuple[str, str], dict[str, Any]] = {}
        """(owner name or "", selector) -> the limit's ``LIMIT_FIELDS``."""
        self.count = 0
        self.breaks: list[Break] = []
        self._seen: set[str] = set()
        self._seen_limits: set[tuple[str, str]] = set()

    def feed(self, row: Mapping[str, Any]) -> None:
        """Apply one admin event (a mapping with ``ADMIN_EVENT_FIELDS``)."""
        op, name, ident = str(row["operation"]), str(row["client"]), int(row["id"])
        try:
            data = json.loads(row["data"])
            self._apply(op, name, data)
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            self.breaks.append(
                Break(ADMIN_EVENTS, ident, None, f"cannot replay {op!r}: {exc!r}", name or None)
            )

    def _apply(self, op: str, name: str, data: dict[str, Any]) -> None:
        if op == SNAPSHOT:
            self.clients = {str(c["name"]): client_state(c) for c in data["clients"]}
            self.wallet = wallet_state(data["wallet"])
        elif op == CLIENT_ADD:
            self.clients[name] = client_state(data)
        elif op == CLIENT_REVOKE:
            self.clients[name]["revoked_at_ms"] = data["revoked_at_ms"]
        elif op == BUDGET_SET:
            target = self.clients[name] if name else self.wallet
            if target is None:
                raise KeyError("no wallet state before this event")
            target.update({f: data[f] for f in LIMIT_FIELDS})
        elif op == FREEZE:
            if self.wallet is None:
                raise KeyError("no wallet state before this event")
            self.wallet["frozen"] = bool(data["frozen"])
        elif op == LIMIT_SET:
            if name and name not in self.clients:
                raise KeyError(f"no client {name!r} before this event")
            values = {f: data[f] for f in limits.LIMIT_FIELDS}
            key = (name, str(data["selector"]))
            if all(v is None for v in values.values()):
                self.limits.pop(key, None)
            else:
                self.limits[key] = values
        elif op == APPROVAL_THRESHOLD:
            target = self.clients[name] if name else self.wallet
            if target is None:
                raise KeyError("no wallet state before this event")
            target["approve_above"] = data["approve_above"]
        else:
            raise ValueError("unknown operation")

    def check_limit(self, owner_name: str, row: Mapping[str, Any]) -> None:
        """Compare one live ``scoped_limits`` row (its owner's name: "" for global)."""
        key = (owner_name, str(row["selector"]))
        self._seen_limits.add(key)
        subject = f"{'client ' + owner_name if owner_name else 'global'} limit [{key[1]}]"
        expected = self.limits.get(key)
        live = {f: row[f] for f in limits.LIMIT_FIELDS}
        if expected is None:
            problem = "limit is not in the admin events (added outside walletd)"
            self.breaks.append(Break(LIMITS, int(row["id"]), None, problem, subject))
            return
        for column, value in live.items():
            if value != expected.get(column):
                problem = (
                    f"limit edited: {column} is {value!r}, "
                    f"the admin events say {expected.get(column)!r}"
                )
                self.breaks.append(Break(LIMITS, int(row["id"]), None, problem, subject))

    def check_client(self, row: Mapping[str, Any]) -> None:
        """Compare one live ``clients`` row with the replayed state."""
        self.count += 1
        name = str(row["name"])
        self._seen.add(name)
        subject = f"client {name}"
        expected = self.clients.get(name)
        if expected is None:
            problem = "client is not in the admin events (added outside walletd)"
            self.breaks.append(Break(CLIENTS, int(row["id"]), None, problem, subject))
            return
        self._differ(CLIENTS, int(row["id"]), subject, client_state(row), expected)

    def check_wallet(self, row: Mapping[str, Any] | None) -> None:
        """Compare the live ``wallet_state`` row (freeze flag, global budget)."""
        if self.wallet is None or row is None:
            if self.wallet is not None or row is not None:
                problem = "the wallet row and the admin events disagree on whether it exists"
                self.breaks.append(Break(WALLET, None, None, problem, "global"))
            return
        self._differ(WALLET, None, "global", wallet_state(row), self.wallet)

    def _differ(
        self,
        table: str,
        row_id: int | None,
        subject: str,
        live: Mapping[str, Any],
        expected: Mapping[str, Any],
    ) -> None:
        for column, value in live.items():
            if value != expected.get(column):
                what = (
                    "budget"
                    if column in LIMIT_FIELDS
                    else "approval threshold"
                    if column in FIELDS_ADDED
                    else "row"
                )
                problem = (
                    f"{what} edited: {column} is {value!r}, "
                    f"the admin events say {expected.get(column)!r}"
                )
                self.breaks.append(Break(table, row_id, None, problem, subject))

    def finish(self) -> None:
        """Report clients the events added whose rows are gone."""
        for name in sorted(set(self.clients) - self._seen):
            problem = "client row is missing (the admin events added it)"
            self.breaks.append(Break(CLIENTS, None, None, problem, f"client {name}"))
        for owner, selector in sorted(set(self.limits) - self._seen_limits):
            problem = "limit row is missing (the admin events set it)"
            who = f"client {owner}" if owner else "global"
            self.breaks.append(Break(LIMITS, None, None, problem, f"{who} limit [{selector}]"))


APPROVALS = "approvals"


class ApprovalCheck:
    """Checks each ``approvals`` row against the newest payment event that recorded it.

    Events are fed in id order (``saw_event``); one whose data names an
    ``approval_id`` records the whole approval as it was left
    (``walletd.domain.approval.Approval.state``). Then each row is compared
    (``feed``, with ``event_state`` of the row).
    """

    def __init__(self) -> None:
        self._latest: dict[str, tuple[int, str, dict[str, Any]]] = {}
        self.count = 0
        self.breaks: list[Break] = []

    def saw_event(self, row: Mapping[str, Any]) -> None:
        """Remember an event that records an approval (others are skipped cheaply)."""
        text = str(row["data"])
        if '"approval_id"' not in text:
            return
        try:
            data = json.loads(text)
        except ValueError:
            return
        if isinstance(data, dict) and "approval_status" in data:
            found = (int(row["id"]), str(row["payment_id"]), data)
            self._latest[str(data["approval_id"])] = found

    def feed(self, approval_id: str, payment_id: str, state: Mapping[str, Any]) -> None:
        """Check one approval row, as ``approval.event_state`` gives it."""
        self.count += 1
        latest = self._latest.pop(approval_id, None)
        if latest is None:
            problem = "approval has no event (added outside walletd)"
            self.breaks.append(Break(APPROVALS, None, payment_id, problem, approval_id))
            return
        event_id, event_payment, recorded = latest
        for name, value in state.items():
            if recorded.get(name) != value or event_payment != payment_id:
                problem = (
                    f"approval edited: {name} is {value!r}, its latest event "
                    f"says {recorded.get(name)!r}"
                )
                self.breaks.append(Break(EVENTS, event_id, payment_id, problem, approval_id))

    def finish(self) -> None:
        """Report approvals the events recorded whose rows are gone."""
        for approval_id, (event_id, payment_id, _) in sorted(self._latest.items()):
            problem = "approval row is missing (its events recorded it)"
            self.breaks.append(Break(EVENTS, event_id, payment_id, problem, approval_id))
        self._latest.clear()


SPAN_NAMES: Mapping[int, str] = {
    buckets.SECOND: "second",
    buckets.MINUTE: "minute",
    buckets.HOUR: "hour",
    buckets.DAY: "day",
    buckets.LIFETIME: "lifetime",
}


class BucketCheck:
    """Recomputes the running totals (``spend_buckets``) from the payment rows, exactly.

    A payment counts in its client's scope and the global scope (0), in every
    bucket ``buckets.bucket_keys`` gives for its creation time, unless its
    status releases the budget (``lifecycle.releases``). Fine buckets starting
    before ``horizon_ms`` are not compared (pruning deletes them; every window
    that would read them sums the rows instead), nor are ``saturated`` scopes
    (their lifetime total outgrew BIGINT and every window of theirs reads rows).
    """

    def __init__(
        self,
        horizon_ms: int,
        saturated: Iterable[int],
        names: Mapping[int, str],
        scoped: Iterable[limits.ScopedLimit] = (),
    ) -> None:
        self.horizon_ms = horizon_ms
        self.saturated = frozenset(saturated)
        self.names = names
        self.scoped = tuple(scoped)
        """The scoped limits: each keeps an amount and a signature-count scope."""
        self._scope_names = {
            scope: f"{self._owner(lim.owner)} limit [{lim.selector.text}] {what}"
            for lim in self.scoped
            for scope, what in ((lim.amount_scope, "amount"), (lim.count_scope, "signatures"))
        }
        self.expected: dict[tuple[int, int, int], int] = defaultdict(int)
        self.count = 0
        self.breaks: list[Break] = []

    def _kept(self, scope: int, span: int, start: int) -> bool:
        if scope in self.saturated:
            return False
        return not (span in buckets.FINE_SPANS and start < self.horizon_ms)

    def _owner(self, owner: int) -> str:
        return "global" if owner == GLOBAL_SCOPE else f"client {self.names.get(owner, owner)}"

    def saw_payment(self, row: Mapping[str, Any]) -> None:
        """Add one payment row (every ``payments`` column).

        It counts in its client's and the global scope while unreleased; a scoped
        limit that selects it (by ``labels``, ``host``, ``payee``) counts its
        signature for good and its amount while unreleased.
        """
        released = lifecycle.releases(str(row["status"]))
        keys = buckets.bucket_keys(int(row["created_at_ms"]))
        amount = int(row["amount"])
        counted = [] if released else [(int(row["client_id"]), amount), (GLOBAL_SCOPE, amount)]
        if self.scoped:
            subject = limits.Subject(
                int(row["client_id"]), json.loads(row["labels"]), row["host"], row["payee"]
            )
            for lim in self.scoped:
                if lim.applies(subject):
                    counted.append((lim.count_scope, 1))
                    if not released:
                        counted.append((lim.amount_scope, amount))
        for scope, value in counted:
            for span, start in keys:
                if self._kept(scope, span, start):
                    self.expected[(scope, span, start)] += value

    def feed(self, row: Mapping[str, Any]) -> None:
        """Compare one stored bucket (``scope``, ``span``, ``start_ms``, ``amount``)."""
        key = (int(row["scope"]), int(row["span"]), int(row["start_ms"]))
        if key == HORIZON_KEY or not self._kept(*key):
            return
        self.count += 1
        if key[1] not in SPAN_NAMES:
            self._break(key, int(row["amount"]), 0, "not a bucket walletd writes")
            return
        expected = self.expected.pop(key, 0)
        if int(row["amount"]) != expected:
            self._break(key, int(row["amount"]), expected, "")

    def finish(self) -> None:
        """Report buckets the payments fill that the table does not hold."""
        for key, expected in sorted(self.expected.items()):
            if expected != 0:
                self._break(key, None, expected, "")
        self.expected.clear()

    def describe(self, key: tuple[int, int, int]) -> str:
        """``client alpha day 2026-12-07T00:00:00Z``, ``global lifetime`` and so on."""
        scope, span, start = key
        who = self._scope_names.get(scope) or self._owner(scope)
        if span == buckets.LIFETIME:
            return f"{who} lifetime"
        when = datetime.fromtimestamp(start // 1000, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        return f"{who} {SPAN_NAMES.get(span, f'span={span}')} {when}"

    def _break(self, key: tuple[int, int, int], live: int | None, expected: int, why: str) -> None:
        stored = "missing" if live is None else f"{live}"
        problem = why or (
            f"running total edited: stored {stored}, the payments sum to {expected} "
            f"(scope={key[0]} span={key[1]} start_ms={key[2]})"
        )
        self.breaks.append(Break(BUCKETS, None, None, problem, self.describe(key)))


GLOBAL_SCOPE = 0
"""The scope of the every-client totals (``walletd.db.hot.GLOBAL_SCOPE``)."""

HORIZON_KEY = (GLOBAL_SCOPE, -1, 0)
"""The (scope, span, start) of the row that holds the prune horizon, not a bucket."""


def _order(brk: Break) -> tuple[int, int]:
    return (0 if brk.row_id is not None else 1, brk.row_id or 0)


def result(
    events: ChainWalk,
    payments: PaymentCheck,
    decisions: ChainWalk,
    keys: ChainWalk | None = None,
    admin: tuple[ChainWalk, AdminReplay] | None = None,
    spend: BucketCheck | None = None,
    approvals: ApprovalCheck | None = None,
) -> AuditResult:
    """Combine the walks.

    Event problems by event id first, then decisions, key events and admin
    events, then the client and wallet rows, then the running totals.
    """
    payments.finish()
    if approvals is not None:
        approvals.finish()
    keys = keys if keys is not None else key_events_walk()
    admin_walk, replay = admin if admin is not None else (admin_events_walk(), AdminReplay())
    replay.finish()
    event_breaks = sorted([*events.breaks, *payments.breaks], key=_order)
    all_breaks: Iterable[Break] = [
        *event_breaks,
        *sorted(decisions.breaks, key=_order),
        *sorted(keys.breaks, key=_order),
        *sorted(admin_walk.breaks, key=_order),
        *replay.breaks,
        *(approvals.breaks if approvals is not None else ()),
        *(spend.breaks if spend is not None else ()),
    ]
    listed = tuple(all_breaks)
    return AuditResult(
        events=events.count,
        decisions=decisions.count,
        payments=payments.count,
        events_head=events.head,
        decisions_head=decisions.head,
        breaks=listed[:MAX_BREAKS],
        break_count=len(listed),
        key_events=keys.count,
        key_events_head=keys.head,
        admin_events=admin_walk.count,
        admin_events_head=admin_walk.head,
        clients=replay.count,
        buckets=spend.count if spend is not None else 0,
    )


@dataclass(frozen=True)
class Anchor:
    """A chain's head as ``walletd audit head`` printed it: that row must still hold that hash."""

    chain: str
    row_id: int
    hash: str

    def describe(self) -> str:
        """``payment_events 5:<hash>``, the form ``audit head`` prints."""
        return f"{self.chain} {self.row_id}:{self.hash}"


def _anchor(chain: str, ident: object, digest: object) -> Anchor:
    if chain not in CHAINS:
        raise ValueError(f"unknown chain {chain!r} (one of {', '.join(CHAINS)})")
    text = str(digest).lower()
    if (
        not str(ident).isdigit()
        or len(text) != 64
        or any(c not in "0123456789abcdef" for c in text)
    ):
        raise ValueError(
            f"{chain} anchor must be ID:HASH (a 64-hex-digit hash), not {ident}:{digest}"
        )
    return Anchor(chain, int(str(ident)), text)


def parse_anchors(text: str) -> list[Anchor]:
    """The anchors in ``text``: what ``walletd audit head`` printed, as JSON or as text.

    Accepted, one per line (or the whole JSON object ``audit head --json`` prints):
    ``CHAIN ID:HASH`` (the text form), ``CHAIN:ID:HASH``, and ``ID:HASH``, which
    anchors ``payment_events`` (the form from before every chain had an anchor).

    Raises:
        ValueError: nothing that reads as an anchor, or a malformed one.
    """
    stripped = text.strip()
    if stripped.startswith("{"):
        doc = json.loads(stripped)
        if not isinstance(doc, dict):
            raise ValueError("the JSON anchor must be the object `audit head --json` prints")
        return [_anchor(str(c), h.get("id"), h.get("hash")) for c, h in doc.items()]
    found: list[Anchor] = []
    for line in stripped.splitlines():
        line = line.strip()
        if not line:
            continue
        chain, _, rest = line.rpartition(" ")
        parts = rest.split(":")
        if not chain and len(parts) == 3:
            chain, parts = parts[0], parts[1:]
        if len(parts) != 2:
            raise ValueError(f"{line!r} is not CHAIN ID:HASH, CHAIN:ID:HASH or ID:HASH")
        found.append(_anchor(chain.strip() or EVENTS, parts[0], parts[1]))
    if not found:
        raise ValueError("no anchor given")
    return found


def anchor_holds(anchor: Anchor, stored: str | None) -> str | None:
    """None when the anchored row still has its hash, else what is wrong with it.

    ``stored`` is the hash the row with the anchor's id holds now (None: no such
    row). An anchor of an empty chain (id 0, ``GENESIS``) always holds.
    """
    if anchor.row_id == 0 and anchor.hash == GENESIS:
        return None
    if stored is None:
        return f"row {anchor.row_id} is gone (the chain was cut back)"
    if stored != anchor.hash:
        return f"row {anchor.row_id} no longer has hash {anchor.hash} (rewritten)"
    return None
