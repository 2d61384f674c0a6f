"""The tamper-evident ledger: what each hash covers, and the walk that checks the chains.

Three append-only tables are hash-chained: ``payment_events``, ``decisions``
and ``key_events`` (each its own chain).
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

What it cannot see: the clients table (budgets and tokens are operator
settings, not money movements), and a cut-off tail (deleting the newest rows
leaves a shorter but consistent chain). The tail is what ``walletd audit head``
is for: anchor the printed head off-site and compare later. Anyone who can
write the database *and* run this code can rebuild every hash; the chain makes
edits evident, the anchored head makes rewriting history evident.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

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

PAYMENT_FIELDS_ADDED: Mapping[str, Any] = {"kind": "exact"}
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

EVENTS = "payment_events"
DECISIONS = "decisions"
PAYMENTS = "payments"
KEY_EVENTS = "key_events"


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


@dataclass(frozen=True)
class Break:
    """One place where the ledger does not match its chain."""

    table: str
    """``payment_events``, ``decisions``, ``key_events`` or ``payments``."""
    row_id: int | None
    """The event or decision id (for a payment, its newest event's id, if any)."""
    payment_id: str | None
    problem: str

    def describe(self) -> str:
        """One line naming the row, for humans."""
        where = f"{self.table} id={self.row_id}" if self.row_id is not None else self.table
        if self.payment_id:
            where += f" payment={self.payment_id}"
        return f"{where}: {self.problem}"


@dataclass(frozen=True)
class AuditResult:
    """The outcome of recomputing both chains."""

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


def _order(brk: Break) -> tuple[int, int]:
    return (0 if brk.row_id is not None else 1, brk.row_id or 0)


def result(
    events: ChainWalk,
    payments: PaymentCheck,
    decisions: ChainWalk,
    keys: ChainWalk | None = None,
) -> AuditResult:
    """Combine the walks: event problems by event id first, then decisions, then key events."""
    payments.finish()
    keys = keys if keys is not None else key_events_walk()
    event_breaks = sorted([*events.breaks, *payments.breaks], key=_order)
    all_breaks: Iterable[Break] = [
        *event_breaks,
        *sorted(decisions.breaks, key=_order),
        *sorted(keys.breaks, key=_order),
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
    )
