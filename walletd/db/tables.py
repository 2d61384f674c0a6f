"""The ledger schema as SQLAlchemy 2.x models; only ``walletd.db`` sees these classes.

Amounts are integers of USDC atomic units (BigInteger, never REAL). Times are
integers of Unix epoch milliseconds (``*_at_ms``) so SQLite and PostgreSQL
compare them the same way; ``valid_*`` fields are Unix seconds, as on chain.
Alembic migrations in ``migrations/`` are the only way this schema is created.
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Boolean, ForeignKey, Index, Integer, MetaData, String, Text
from sqlalchemy.orm import DeclarativeBase, Mapped, MappedColumn, mapped_column

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    """Declarative base with named constraints (predictable Alembic batch migrations)."""

    metadata = MetaData(naming_convention=NAMING)


metadata = Base.metadata


class BudgetColumns:
    """The budget of a client or of the whole wallet: one column per window, two allowlists.

    Declared once and mixed into both tables (after their own columns), with the
    names of ``walletd.domain.budget.Budget``'s fields.
    """

    per_request: Mapped[int | None] = mapped_column(BigInteger)
    hourly: Mapped[int | None] = mapped_column(BigInteger)
    daily: Mapped[int | None] = mapped_column(BigInteger)
    monthly: Mapped[int | None] = mapped_column(BigInteger)
    total: Mapped[int | None] = mapped_column(BigInteger)
    payees: Mapped[str] = mapped_column(Text, default="")
    """Comma-separated lower-cased payee allowlist; empty means any."""
    hosts: Mapped[str] = mapped_column(Text, default="")
    """Comma-separated lower-cased host allowlist; empty means any."""


BUDGET_COLUMNS: tuple[str, ...] = tuple(
    name for name, value in vars(BudgetColumns).items() if isinstance(value, MappedColumn)
)
"""The budget columns' names, in declaration order (``per_request`` .. ``hosts``)."""


class WalletState(BudgetColumns, Base):
    """The single row of wallet-wide state: the freeze switch and the global budget.

    Every Pay locks this row first (FOR UPDATE on PostgreSQL; SQLite's BEGIN
    IMMEDIATE already serialises writers), so global sums are read consistently.
    """

    __tablename__ = "wallet_state"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    frozen: Mapped[bool] = mapped_column(Boolean, default=False)
    approve_above: Mapped[int | None] = mapped_column(BigInteger)
    """Payments above this amount wait for a human approval (any client); NULL: none."""


class Client(BudgetColumns, Base):
    """A service allowed to ask for payments, with its token hash and its budget."""

    __tablename__ = "clients"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    """sha256 hex of the bearer token; the token itself is never stored."""
    scopes: Mapped[str] = mapped_column(String(64))
    created_at_ms: Mapped[int] = mapped_column(BigInteger)
    revoked_at_ms: Mapped[int | None] = mapped_column(BigInteger)
    approve_above: Mapped[int | None] = mapped_column(BigInteger)
    """This client's payments above this amount wait for a human approval; NULL: none."""


class Payment(Base):
    """One signed authorization; counted as spent until released (expired/cancelled)."""

    __tablename__ = "payments"
    __table_args__ = (
        Index("uq_payments_client_key", "client_id", "idempotency_key", unique=True),
        Index("ix_payments_client_created", "client_id", "created_at_ms"),
        Index("ix_payments_created", "created_at_ms"),
        Index("ix_payments_status", "status"),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    client_id: Mapped[int] = mapped_column(ForeignKey("clients.id"))
    idempotency_key: Mapped[str] = mapped_column(String(200))
    fingerprint: Mapped[str] = mapped_column(String(64))
    """sha256 of method, URL and the demand's terms; a reused key must match it."""
    status: Mapped[str] = mapped_column(String(24))
    amount: Mapped[int] = mapped_column(BigInteger)
    payee: Mapped[str] = mapped_column(String(42))
    network: Mapped[str] = mapped_column(String(32))
    asset: Mapped[str] = mapped_column(String(42))
    payer: Mapped[str] = mapped_column(String(42))
    method: Mapped[str] = mapped_column(String(16))
    url: Mapped[str] = mapped_column(Text)
    host: Mapped[str] = mapped_column(String(255))
    nonce: Mapped[str] = mapped_column(String(66), unique=True)
    valid_after: Mapped[int] = mapped_column(BigInteger)
    valid_before: Mapped[int] = mapped_column(BigInteger)
    header_name: Mapped[str] = mapped_column(String(32))
    header_value: Mapped[str] = mapped_column(Text)
    labels: Mapped[str] = mapped_column(Text, default="{}")
    """JSON object of string labels given by the client (e.g. the model)."""
    created_at_ms: Mapped[int] = mapped_column(BigInteger)
    released_at_ms: Mapped[int | None] = mapped_column(BigInteger)
    """Set when the money provably cannot move any more; NULL means it counts as spent."""
    reported_tx: Mapped[str | None] = mapped_column(String(66))
    """The transaction hash the server named in PAYMENT-RESPONSE (a claim, checked on chain)."""
    settled_tx: Mapped[str | None] = mapped_column(String(66))
    """The transaction the chain shows moved the money (or cancelled the authorization)."""
    kind: Mapped[str] = mapped_column(String(16), server_default="exact")
    """``exact`` (EIP-3009), ``permit2`` (exact via Permit2), ``upto`` (Permit2, a maximum),
    or ``transfer`` (direct transfer; ``nonce`` = tx hash)."""
    authorized: Mapped[int] = mapped_column(BigInteger, server_default="0")
    """upto: the maximum signed for (USD atomic units); ``amount`` becomes the charge once
    settled. 0 for every other kind (``amount`` is the whole authorization)."""


class PaymentEvent(Base):
    """Every transition of a payment, with its time and cause."""

    __tablename__ = "payment_events"
    __table_args__ = (Index("ix_payment_events_payment", "payment_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    payment_id: Mapped[str] = mapped_column(ForeignKey("payments.id"))
    at_ms: Mapped[int] = mapped_column(BigInteger)
    status: Mapped[str] = mapped_column(String(24))
    cause: Mapped[str] = mapped_column(Text)
    data: Mapped[str] = mapped_column(Text, default="{}")
    payment_hash: Mapped[str] = mapped_column(String(64))
    """Digest of the whole payment row right after this event (``walletd.domain.audit``)."""
    prev_hash: Mapped[str] = mapped_column(String(64))
    """``hash`` of the event before this one in id order (all payments form one chain)."""
    hash: Mapped[str] = mapped_column(String(64))


class Decision(Base):
    """Every Pay decision: paid (with its payment) or refused (with reason and rule).

    A refusal is written by the refused Pay's transaction (which writes
    nothing else), so the log shows what was *asked*, not only what was signed.
    Hash-chained like the events.
    """

    __tablename__ = "decisions"
    __table_args__ = (
        Index("ix_decisions_at", "at_ms"),
        Index("ix_decisions_client_at", "client_id", "at_ms"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    at_ms: Mapped[int] = mapped_column(BigInteger)
    client_id: Mapped[int] = mapped_column(ForeignKey("clients.id"))
    client: Mapped[str] = mapped_column(String(64))
    """The client's name when it asked (names are covered by the hash, ids by the key)."""
    outcome: Mapped[str] = mapped_column(String(16))
    """``paid`` or ``refused``."""
    reason: Mapped[str] = mapped_column(String(32))
    """The refusal's error reason (e.g. BUDGET_EXCEEDED); empty when paid."""
    rule: Mapped[str] = mapped_column(String(64))
    """The policy rule or budget window that refused; empty when none applies."""
    message: Mapped[str] = mapped_column(Text)
    idempotency_key: Mapped[str] = mapped_column(String(200))
    host: Mapped[str] = mapped_column(String(255))
    payee: Mapped[str] = mapped_column(String(42))
    """The payee paid, or for a refusal the one walletd would have paid (empty if none)."""
    amount: Mapped[int] = mapped_column(BigInteger)
    labels: Mapped[str] = mapped_column(Text, default="{}")
    payment_id: Mapped[str | None] = mapped_column(String(40))
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))


class KeyEvent(Base):
    """Every change of the signing key: a passphrase change or a rotation.

    Holds addresses and non-secret details only, never a passphrase, key or
    ciphertext. Hash-chained like the events and decisions.
    """

    __tablename__ = "key_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    at_ms: Mapped[int] = mapped_column(BigInteger)
    operation: Mapped[str] = mapped_column(String(32))
    """``change-passphrase`` or ``rotate``."""
    old_address: Mapped[str] = mapped_column(String(42))
    new_address: Mapped[str] = mapped_column(String(42))
    """Equal to ``old_address`` when the key itself did not change."""
    data: Mapped[str] = mapped_column(Text, default="{}")
    """JSON object of non-secret details (e.g. where the retired keystore was kept)."""
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))


class AdminEvent(Base):
    """Every change of a client, a budget or the freeze switch, with the state it left.

    Written in the same transaction as the change; the first row is a
    ``snapshot`` of every client and the wallet row. Hash-chained like the
    events; ``walletd audit verify`` replays it and compares the result with
    the ``clients`` and ``wallet_state`` rows (``walletd.domain.audit``).
    """

    __tablename__ = "admin_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    at_ms: Mapped[int] = mapped_column(BigInteger)
    operation: Mapped[str] = mapped_column(String(32))
    """``snapshot``, ``client-add``, ``client-revoke``, ``budget-set`` or ``freeze``."""
    client: Mapped[str] = mapped_column(String(64))
    """The client's name; empty for the wallet-wide state (global budget, freeze)."""
    data: Mapped[str] = mapped_column(Text)
    """JSON object: the state the change left (never a token, only its hash)."""
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))


class SpendBucket(Base):
    """Running totals of unreleased spending, so budget windows are read without a scan.

    One row per scope (a client's id, or 0 for every client together), span
    (1 000, 60 000, 3 600 000 or 86 400 000 ms, or 0 for the lifetime bucket
    starting at 0) and bucket start: the sum of the amounts of the scope's
    unreleased payments created in that bucket. Kept in the payment's own
    transaction; ``walletd.domain.buckets`` says how a window is read from them.
    A lifetime amount of -1 marks a scope whose total outgrew BIGINT (it is then
    summed from the rows), and the row (0, -1, 0) holds the prune horizon: fine
    buckets starting before it may have been deleted.
    """

    __tablename__ = "spend_buckets"

    scope: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    span: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    start_ms: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    amount: Mapped[int] = mapped_column(BigInteger)


class ScopedLimit(Base):
    """A budget per label, host or payee, or a rate limit, of one client or of every client.

    ``owner`` is the client's id, or 0 for every client together (not a foreign
    key, so the global owner needs no client row). ``selector`` is the canonical
    ``walletd.domain.limits.Selector`` text: empty for all the owner's payments
    (the owner's own rate limits), ``label:KEY=VALUE``, ``host=HOST`` or
    ``payee=0x...``. NULL means no limit in that window. Its running totals are
    the ``spend_buckets`` of scopes ``-2 * id`` (amounts) and ``-2 * id - 1``
    (signatures), kept from its creation on, and filled from the payments then.
    """

    __tablename__ = "scoped_limits"
    __table_args__ = (Index("uq_scoped_limits_owner_selector", "owner", "selector", unique=True),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    owner: Mapped[int] = mapped_column(BigInteger)
    selector: Mapped[str] = mapped_column(Text)
    per_request: Mapped[int | None] = mapped_column(BigInteger)
    hourly: Mapped[int | None] = mapped_column(BigInteger)
    daily: Mapped[int | None] = mapped_column(BigInteger)
    monthly: Mapped[int | None] = mapped_column(BigInteger)
    total: Mapped[int | None] = mapped_column(BigInteger)
    payments_minute: Mapped[int | None] = mapped_column(BigInteger)
    """Signed payments allowed in any rolling minute."""
    payments_hour: Mapped[int | None] = mapped_column(BigInteger)
    payments_day: Mapped[int | None] = mapped_column(BigInteger)


class Approval(Base):
    """A payment held above an approval threshold, and the human decision on it.

    The held payment is a ``payments`` row (status ``awaiting_approval``,
    nothing signed: empty header, ``valid_before`` = this approval's expiry in
    Unix seconds until it is signed) that counts in the budgets like any
    other. Every change here is made with an event of that payment recording
    the whole approval (``walletd.domain.approval.Approval.state``), so the
    hash chain vouches for who decided, when, and the note.
    """

    __tablename__ = "approvals"
    __table_args__ = (Index("ix_approvals_status_expires", "status", "expires_at_ms"),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    payment_id: Mapped[str] = mapped_column(ForeignKey("payments.id"), unique=True)
    client_id: Mapped[int] = mapped_column(ForeignKey("clients.id"))
    status: Mapped[str] = mapped_column(String(16))
    """``pending``, ``approved``, ``denied`` or ``expired``."""
    threshold: Mapped[int] = mapped_column(BigInteger)
    threshold_scope: Mapped[str] = mapped_column(String(8))
    """``client`` or ``global``: whose threshold the amount was above."""
    created_at_ms: Mapped[int] = mapped_column(BigInteger)
    expires_at_ms: Mapped[int] = mapped_column(BigInteger)
    decided_at_ms: Mapped[int | None] = mapped_column(BigInteger)
    decided_by: Mapped[str] = mapped_column(String(64), default="")
    """The approving (or denying) client's name; empty until decided."""
    note: Mapped[str] = mapped_column(Text, default="")
