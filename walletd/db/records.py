"""What the ledger hands out and takes in: plain frozen records, never a row or a Session.

A record whose fields are column names (``StoredPayment``) is also the list of
columns read for it: ``walletd.db.hot`` selects exactly its fields, in order.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from walletd.domain.budget import Budget


@dataclass(frozen=True)
class WalletState:
    """The wallet-wide row: the operator's freeze switch and the global budget."""

    frozen: bool
    budget: Budget
    approve_above: int | None = None
    """Payments above this wait for a human approval (any client); None: no threshold."""


@dataclass(frozen=True)
class ClientRecord:
    """A client as the service needs it (never the token)."""

    id: int
    name: str
    scopes: frozenset[str]
    revoked: bool
    budget: Budget
    approve_above: int | None = None
    """This client's payments above this wait for a human approval; None: no threshold."""


@dataclass(frozen=True)
class NewPayment:
    """Everything recorded for one signed payment."""

    id: str
    client_id: int
    idempotency_key: str
    fingerprint: str
    amount: int
    payee: str
    network: str
    asset: str
    payer: str
    method: str
    url: str
    host: str
    nonce: str
    valid_after: int
    valid_before: int
    header_name: str
    header_value: str
    labels: Mapping[str, str]
    created_at_ms: int
    kind: str = "exact"
    authorized: int = 0
    """upto: the maximum signed for (``amount`` starts equal to it); 0 for other kinds."""
    """``exact`` or ``transfer`` (``walletd.domain.direct``)."""


@dataclass(frozen=True)
class NewDecision:
    """One Pay decision for the decision log (``outcome`` is ``paid`` or ``refused``)."""

    at_ms: int
    client_id: int
    client: str
    outcome: str
    reason: str
    rule: str
    message: str
    idempotency_key: str
    host: str
    payee: str
    amount: int
    labels: Mapping[str, str]
    payment_id: str | None


@dataclass(frozen=True)
class StoredPayment:
    """A payment row as the service sees it; each field is the payment column of its name."""

    id: str
    client_id: int
    fingerprint: str
    status: str
    amount: int
    payee: str
    network: str
    asset: str
    valid_before: int
    header_name: str
    header_value: str


@dataclass(frozen=True)
class TrackedPayment:
    """A payment as the reconciler follows it on chain."""

    id: str
    client_id: int
    status: str
    amount: int
    payee: str
    payer: str
    network: str
    nonce: str
    valid_after: int
    valid_before: int
    created_at_ms: int
    reported_tx: str | None
    settled_tx: str | None
    released: bool
    kind: str = "exact"
    authorized: int = 0
    """upto: the maximum signed for; 0 for other kinds."""
    asset: str = ""
    """The token contract the payment is in ("" read as the network's first stablecoin)."""


@dataclass(frozen=True)
class KeyEventRecord:
    """One recorded key operation: what, when, the payer address before and after."""

    id: int
    at_ms: int
    operation: str
    old_address: str
    new_address: str
    data: Mapping[str, object]


@dataclass(frozen=True)
class PaymentEventRecord:
    """One row of a payment's history."""

    at_ms: int
    status: str
    cause: str
    data: Mapping[str, object]
