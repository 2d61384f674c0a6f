"""The read side for audits and reports: SQL GROUP BY in, domain report types out.

Everything here only reads. ``read_only(url)`` opens the ledger so that it
*cannot* write or take the write lock: SQLite through a ``mode=ro`` URI with
``query_only`` on (WAL readers never block the daemon's writers, and are never
blocked by them); PostgreSQL in a READ ONLY, REPEATABLE READ transaction, so
every query of one report sees the same snapshot. It works whether or not the
daemon runs. The daemon itself calls the same functions on its read engine.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Any, cast

from sqlalchemy import (
    JSON,
    ColumnElement,
    Connection,
    Engine,
    and_,
    case,
    cast as sql_cast,
    create_engine,
    event,
    func,
    literal,
    select,
)
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError

from walletd.db import tables
from walletd.db.limits import LIMIT_COLUMNS, limit_row
from walletd.db.migrate import require_current
from walletd.domain import approval, audit, buckets, report
from walletd.domain.report import (
    PAYMENT_BUCKETS,
    REFUSED,
    STATUS_BUCKET,
    Overview,
    RefusalCount,
    ReportQuery,
    ReportRow,
    SpendReport,
    Tally,
)
from walletd.errors import InvalidRequestError, NotFoundError, StorageError

P, D, C, A = tables.Payment, tables.Decision, tables.Client, tables.Approval
STREAM_BATCH = 1000
"""Rows fetched at a time while an audit walks a chain."""


# ------------------------------------------------------------------ read-only access


def readonly_engine(url: str) -> Engine:
    """An engine on the ledger at ``url`` that cannot write (see the module docstring)."""
    parsed = make_url(url)
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        path = parsed.database or ""
        if not path or path == ":memory:":
            raise StorageError("a read-only report needs a SQLite file, not an in-memory ledger")
        engine = create_engine(f"sqlite:///file:{path}?mode=ro&uri=true")

        @event.listens_for(engine, "connect")
        def _query_only(dbapi_conn: Any, _record: Any) -> None:
            cursor = dbapi_conn.cursor()
            cursor.execute("PRAGMA query_only=ON")
            cursor.execute("PRAGMA busy_timeout=30000")
            cursor.close()

        return engine
    if backend == "postgresql":
        if parsed.drivername in ("postgresql", "postgres"):
            parsed = parsed.set(drivername="postgresql+psycopg")
        return create_engine(
            parsed,
            isolation_level="REPEATABLE READ",
            execution_options={"postgresql_readonly": True},
        )
    return create_engine(parsed)


@contextmanager
def read_only(url: str) -> Iterator[Connection]:
    """One read-only transaction on the ledger at ``url``, schema checked first.

    Raises:
        SchemaOutOfDateError: the ledger needs ``walletd db upgrade``.
        StorageError: the ledger cannot be opened or read.
    """
    engine = readonly_engine(url)
    try:
        require_current(engine)
        with engine.connect() as conn, conn.begin():
            yield conn
    except SQLAlchemyError as exc:
        raise StorageError(f"ledger unavailable: {getattr(exc, 'orig', exc)}") from exc
    finally:
        engine.dispose()


# ----------------------------------------------------------------------- spend report


def _model(labels: Any, dialect: str) -> ColumnElement[Any]:
    """The ``model`` label of a JSON-text labels column ("" when absent)."""
    if dialect == "postgresql":
        value: ColumnElement[Any] = func.json_extract_path_text(sql_cast(labels, JSON), "model")
    else:
        value = func.json_extract(labels, "$.model")
    return func.coalesce(value, "")


def _payment_bucket() -> ColumnElement[str]:
    whens = [(P.status == status, literal(bucket)) for status, bucket in STATUS_BUCKET.items()]
    return case(*whens, else_=P.status)


def _payment_dims(dialect: str) -> dict[str, Any]:
    return {
        "client": C.name,
        "payee": func.lower(P.payee),
        "host": P.host,
        "model": _model(P.labels, dialect),
        "day": P.created_at_ms // report.DAY_MS,
        report.HOUR: P.created_at_ms // report.HOUR_MS,
        "status": _payment_bucket(),
        "approval": func.coalesce(A.status, approval.NONE),
        "approver": func.coalesce(A.decided_by, ""),
    }


def _decision_dims(dialect: str) -> dict[str, Any]:
    return {
        "client": C.name,
        "payee": func.lower(D.payee),
        "host": D.host,
        "model": _model(D.labels, dialect),
        "day": D.at_ms // report.DAY_MS,
        report.HOUR: D.at_ms // report.HOUR_MS,
        "status": literal(REFUSED),
        "approval": literal(approval.NONE),
        "approver": literal(""),
    }


def _sum(condition: ColumnElement[bool], value: Any) -> ColumnElement[Any]:
    return func.coalesce(func.sum(case((condition, value), else_=0)), 0)


def _within(stmt: Any, at: Any, query: ReportQuery, client_id: int | None) -> Any:
    if query.since_ms is not None:
        stmt = stmt.where(at >= query.since_ms)
    if query.until_ms is not None:
        stmt = stmt.where(at < query.until_ms)
    if client_id is not None:
        stmt = stmt.where(C.id == client_id)
    return stmt


def _key(values: Any, dims: tuple[str, ...]) -> tuple[str, ...]:
    out = []
    for dim, value in zip(dims, values, strict=True):
        if dim == "day":
            out.append(report.day_label(int(value)))
        elif dim == report.HOUR:
            out.append(report.hour_label(int(value)))
        else:
            out.append("" if value is None else str(value))
    return tuple(out)


def _payment_rows(
    conn: Connection, query: ReportQuery, client_id: int | None
) -> dict[tuple[str, ...], ReportRow]:
    dims = query.group_by
    exprs = _payment_dims(conn.dialect.name)
    group = [exprs[d] for d in dims]
    bucket = _payment_bucket()
    sums: list[ColumnElement[Any]] = []
    for name in (*PAYMENT_BUCKETS, REFUSED):  # refused: a held payment an approver denied
        sums += [_sum(bucket == name, 1), _sum(bucket == name, P.amount)]
    confirmed = and_(P.status == "settled", P.settled_tx.is_not(None))
    sums += [_sum(confirmed, 1), _sum(confirmed, P.amount)]
    counted = bucket != REFUSED  # a denied hold authorized nothing
    sums.append(
        _sum(and_(counted, P.authorized > 0), P.authorized)
        + _sum(and_(counted, P.authorized == 0), P.amount)
    )
    stmt: Any = select(*group, *sums).select_from(P).join(C, C.id == P.client_id)
    if {"approval", "approver"} & set(dims):
        stmt = stmt.outerjoin(A, A.payment_id == P.id)
    stmt = _within(stmt, P.created_at_ms, query, client_id)
    if group:
        stmt = stmt.group_by(*group)
    rows: dict[tuple[str, ...], ReportRow] = {}
    for values in conn.execute(stmt):
        key = _key(values[: len(dims)], dims)
        nums = [int(v) for v in values[len(dims) :]]
        authorized = nums.pop()
        named = (*PAYMENT_BUCKETS, REFUSED)
        statuses = {b: Tally(nums[2 * i], nums[2 * i + 1]) for i, b in enumerate(named)}
        conf = Tally(nums[-2], nums[-1])
        total = sum((statuses[b] for b in PAYMENT_BUCKETS), report.ZERO)
        unconf = Tally(total.count - conf.count, total.amount - conf.amount)
        row = ReportRow(key, statuses, conf, unconf, authorized)
        rows[key] = rows[key].merged(row) if key in rows else row
    return rows


def _refusal_rows(
    conn: Connection, query: ReportQuery, client_id: int | None
) -> dict[tuple[str, ...], ReportRow]:
    dims = query.group_by
    exprs = _decision_dims(conn.dialect.name)
    group = [exprs[d] for d in dims]
    stmt: Any = (
        select(*group, func.count(), func.coalesce(func.sum(D.amount), 0))
        .select_from(D)
        .join(C, C.id == D.client_id)
        .where(D.outcome == REFUSED)
    )
    stmt = _within(stmt, D.at_ms, query, client_id)
    if group:
        stmt = stmt.group_by(*group)
    rows: dict[tuple[str, ...], ReportRow] = {}
    for values in conn.execute(stmt):
        count, amount = int(values[len(dims)]), int(values[len(dims) + 1])
        if count == 0:
            continue  # an ungrouped aggregate over no rows
        key = _key(values[: len(dims)], dims)
        statuses = dict.fromkeys(report.BUCKETS, report.ZERO)
        statuses[REFUSED] = Tally(count, amount)
        row = ReportRow(key, statuses)
        rows[key] = rows[key].merged(row) if key in rows else row
    return rows


def refusal_reasons(
    conn: Connection, query: ReportQuery, client_id: int | None = None
) -> tuple[RefusalCount, ...]:
    """Refusals by reason and rule, most frequent first."""
    stmt: Any = (
        select(D.reason, D.rule, func.count(), func.coalesce(func.sum(D.amount), 0))
        .select_from(D)
        .join(C, C.id == D.client_id)
        .where(D.outcome == REFUSED)
        .group_by(D.reason, D.rule)
    )
    stmt = _within(stmt, D.at_ms, query, client_id)
    found = [RefusalCount(str(r[0]), str(r[1]), int(r[2]), int(r[3])) for r in conn.execute(stmt)]
    return tuple(sorted(found, key=lambda x: (-x.count, x.reason, x.rule)))


def client_id(conn: Connection, name: str) -> int:
    """The id of the named client; raises NotFoundError."""
    found = conn.execute(select(C.id).where(C.name == name)).scalar_one_or_none()
    if found is None:
        raise NotFoundError(f"no client named {name!r}")
    return int(found)


def spend_report(conn: Connection, query: ReportQuery, now_ms: int) -> SpendReport:
    """The report for ``query``: payments by bucket and chain check, refusals from the log.

    Raises:
        NotFoundError: ``query.client`` names no client.
    """
    cid = client_id(conn, query.client) if query.client is not None else None
    rows = _payment_rows(conn, query, cid)
    for key, row in _refusal_rows(conn, query, cid).items():
        rows[key] = rows[key].merged(row) if key in rows else row
    ordered = tuple(rows[k] for k in sorted(rows))
    return SpendReport(
        query=query,
        generated_at_ms=now_ms,
        rows=ordered,
        totals=report.total_of(ordered),
        refusals=refusal_reasons(conn, query, cid),
    )


def overview(conn: Connection, query: ReportQuery) -> Overview:
    """Spend per client per hour, and payees and models by amount, for ``query``'s filter."""
    cid = client_id(conn, query.client) if query.client is not None else None

    def grouped(*dims: str) -> list[ReportRow]:
        sub = replace(query, group_by=dims)
        rows = _payment_rows(conn, sub, cid)
        for key, row in _refusal_rows(conn, sub, cid).items():
            rows[key] = rows[key].merged(row) if key in rows else row
        return [rows[k] for k in sorted(rows)]

    return Overview(
        series=tuple(grouped("client", report.HOUR)),
        payees=report.by_committed(grouped("payee")),
        models=report.by_committed(grouped("model")),
    )


# -------------------------------------------------------------------------- payments

E = tables.PaymentEvent
PAYMENT_FIELDS = (
    "id", "status", "kind", "amount", "payee", "network", "asset", "payer", "method", "url",
    "host", "idempotency_key", "nonce", "valid_after", "valid_before", "created_at_ms",
    "released_at_ms", "reported_tx", "settled_tx",
)  # fmt: skip
"""The payment columns ``payment list``/``show`` print: never the signed header value."""


@dataclass(frozen=True)
class LedgerPayment:
    """One payment row as the ledger holds it (no signature), with its client's name."""

    client: str
    fields: Mapping[str, Any]
    labels: Mapping[str, str]


@dataclass(frozen=True)
class LedgerEvent:
    """One transition of a payment: when, to which status, why."""

    id: int
    at_ms: int
    status: str
    cause: str
    data: Mapping[str, Any]


def _ledger_payment(row: Mapping[Any, Any]) -> LedgerPayment:
    try:
        labels = json.loads(row["labels"] or "{}")
    except ValueError:
        labels = {}
    return LedgerPayment(str(row["client"]), {f: row[f] for f in PAYMENT_FIELDS}, labels)


def _payment_select() -> Any:
    columns = [getattr(P, f) for f in PAYMENT_FIELDS]
    return select(C.name.label("client"), P.labels, *columns).join(C, C.id == P.client_id)


def payments(
    conn: Connection,
    *,
    client: str | None = None,
    status: str | None = None,
    since_ms: int | None = None,
    limit: int = 50,
) -> list[LedgerPayment]:
    """Payments newest first, filtered by client name, status and signing time.

    Raises:
        NotFoundError: ``client`` names no client.
    """
    stmt = _payment_select()
    if client is not None:
        stmt = stmt.where(P.client_id == client_id(conn, client))
    if status is not None:
        stmt = stmt.where(P.status == status)
    if since_ms is not None:
        stmt = stmt.where(P.created_at_ms >= since_ms)
    stmt = stmt.order_by(P.created_at_ms.desc(), P.id.desc()).limit(limit)
    return [_ledger_payment(r) for r in conn.execute(stmt).mappings()]


def payment_with_events(
    conn: Connection, payment_id: str
) -> tuple[LedgerPayment, list[LedgerEvent]]:
    """One payment and its events, oldest first.

    Raises:
        NotFoundError: no payment has this id.
    """
    row = conn.execute(_payment_select().where(P.id == payment_id)).mappings().one_or_none()
    if row is None:
        raise NotFoundError(f"no payment {payment_id!r}", {"payment_id": payment_id})
    stmt = select(E.id, E.at_ms, E.status, E.cause, E.data).where(E.payment_id == payment_id)
    events = []
    for r in conn.execute(stmt.order_by(E.id)):
        try:
            data = json.loads(r.data or "{}")
        except ValueError:
            data = {"raw": r.data}
        events.append(LedgerEvent(int(r.id), int(r.at_ms), str(r.status), str(r.cause), data))
    return _ledger_payment(row), events


# ----------------------------------------------------------------------------- audit


def _stream(conn: Connection, stmt: Any) -> Iterator[Mapping[str, Any]]:
    result = conn.execution_options(yield_per=STREAM_BATCH).execute(stmt)
    yield from cast(Iterator[Mapping[str, Any]], result.mappings())


def verify_chain(conn: Connection) -> audit.AuditResult:
    """Recompute every chain and check the rows the chains vouch for.

    Each payment row is checked against its newest event, the admin events are
    replayed against the client and wallet rows, and the running totals are
    recomputed from the payments.
    """
    events, decisions, payments = audit.events_walk(), audit.decisions_walk(), audit.PaymentCheck()
    spend = _bucket_check(conn)
    event_cols = [getattr(tables.PaymentEvent, f) for f in (*audit.EVENT_FIELDS, "hash")]
    held = audit.ApprovalCheck()
    for row in _stream(conn, select(*event_cols).order_by(tables.PaymentEvent.id)):
        events.feed(row)
        payments.saw_event(row)
        held.saw_event(row)
    for row in _stream(conn, select(*A.__table__.columns).order_by(A.id)):
        held.feed(str(row["id"]), str(row["payment_id"]), approval.event_state(row))
    for row in _stream(conn, select(*P.__table__.columns).order_by(P.id)):
        payments.feed(row)
        spend.saw_payment(row)
    B = tables.SpendBucket
    for row in _stream(
        conn, select(B.scope, B.span, B.start_ms, B.amount).order_by(*B.__table__.primary_key)
    ):
        spend.feed(row)
    spend.finish()
    decision_cols = [getattr(D, f) for f in (*audit.DECISION_FIELDS, "hash")]
    for row in _stream(conn, select(*decision_cols).order_by(D.id)):
        decisions.feed(row)
    return audit.result(
        events, payments, decisions, _walk_key_events(conn), _replay_admin(conn), spend, held
    )


def _bucket_check(conn: Connection) -> audit.BucketCheck:
    """A BucketCheck knowing the prune horizon, the saturated scopes and the client names."""
    B = tables.SpendBucket
    horizon = conn.execute(
        select(B.amount).where(
            B.scope == audit.HORIZON_KEY[0],
            B.span == audit.HORIZON_KEY[1],
            B.start_ms == audit.HORIZON_KEY[2],
        )
    ).scalar_one_or_none()
    saturated = conn.execute(
        select(B.scope).where(B.span == buckets.LIFETIME, B.amount == buckets.SATURATED)
    ).scalars()
    names = {int(i): str(n) for i, n in conn.execute(select(C.id, C.name))}
    L = tables.ScopedLimit
    scoped = []
    for row in conn.execute(select(*(L.__table__.c[c] for c in LIMIT_COLUMNS))):
        try:
            scoped.append(limit_row(row))
        except InvalidRequestError:  # an edited selector: the admin replay names it
            continue
    return audit.BucketCheck(int(horizon or 0), [int(s) for s in saturated], names, scoped)


def _walk_key_events(conn: Connection) -> audit.ChainWalk:
    """The key-event chain (passphrase changes, rotations), walked like the others."""
    walk, K = audit.key_events_walk(), tables.KeyEvent
    cols = [getattr(K, f) for f in (*audit.KEY_EVENT_FIELDS, "hash")]
    for row in _stream(conn, select(*cols).order_by(K.id)):
        walk.feed(row)
    return walk


def _replay_admin(conn: Connection) -> tuple[audit.ChainWalk, audit.AdminReplay]:
    """The admin-event chain, walked and replayed, then the client and wallet rows checked."""
    walk, replay, A = audit.admin_events_walk(), audit.AdminReplay(), tables.AdminEvent
    cols = [getattr(A, f) for f in (*audit.ADMIN_EVENT_FIELDS, "hash")]
    for row in _stream(conn, select(*cols).order_by(A.id)):
        walk.feed(row)
        replay.feed(row)
    for row in _stream(conn, select(*C.__table__.columns).order_by(C.id)):
        replay.check_client(row)
    W = tables.WalletState
    wallet = conn.execute(select(*W.__table__.columns).where(W.id == 1)).mappings().first()
    replay.check_wallet(None if wallet is None else dict(wallet))
    names = {int(i): str(n) for i, n in conn.execute(select(C.id, C.name))}
    L = tables.ScopedLimit
    for row in _stream(conn, select(*L.__table__.columns).order_by(L.id)):
        owner = int(row["owner"])
        replay.check_limit("" if owner == 0 else names.get(owner, f"#{owner}"), row)
    return walk, replay


_CHAINS: dict[
    str,
    type[tables.PaymentEvent]
    | type[tables.Decision]
    | type[tables.KeyEvent]
    | type[tables.AdminEvent],
] = {
    audit.EVENTS: tables.PaymentEvent,
    audit.DECISIONS: tables.Decision,
    audit.KEY_EVENTS: tables.KeyEvent,
    audit.ADMIN_EVENTS: tables.AdminEvent,
}


def chain_heads(conn: Connection) -> dict[str, tuple[int, str]]:
    """The newest id and hash of each chain (0 and GENESIS when empty), for anchoring."""
    heads: dict[str, tuple[int, str]] = {}
    for name, model in _CHAINS.items():
        last = conn.execute(select(model.id, model.hash).order_by(model.id.desc()).limit(1)).first()
        heads[name] = (0, audit.GENESIS) if last is None else (int(last[0]), str(last[1]))
    return heads


def row_hash(conn: Connection, table: str, row_id: int) -> str | None:
    """The stored hash of one event, decision or key event (None when there is no such row)."""
    model = _CHAINS[table]
    found = conn.execute(select(model.hash).where(model.id == row_id)).scalar_one_or_none()
    return None if found is None else str(found)


# --------------------------------------------------------------------------- metrics


def oldest_overdue(conn: Connection, statuses: tuple[str, ...], now_s: int) -> int | None:
    """The earliest validBefore (Unix s) of an open payment already past it, if any."""
    found = conn.execute(
        select(func.min(P.valid_before)).where(P.status.in_(statuses), P.valid_before < now_s)
    ).scalar_one()
    return None if found is None else int(found)
