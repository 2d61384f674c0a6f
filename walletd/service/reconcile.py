"""Following every signed authorization to its end on chain: reconcile, cancel, status.

A signed EIP-3009 authorization is money gone until the chain proves
otherwise. One reconcile pass looks at every open payment (``signed``,
``settlement_pending``, ``rejected``) and decides from on-chain facts only:

* a transaction the server reported is *confirmed* only when its receipt has
  status 1, a ``Transfer(wallet -> payTo, exactly amount)`` and an
  ``AuthorizationUsed(wallet, nonce)``, both from the pinned USDC contract.
  Any other receipt, or no receipt once the authorization has expired, makes
  the payment ``disputed`` (still counted as spent);
* without a report, nothing is decided before ``validBefore + margin`` by the
  *chain's* clock; then ``authorizationState`` says unused (``expired``,
  budget released) or used (``settled``; the transaction is found from the
  ``AuthorizationUsed`` log, or ``cancelled`` if it was a cancellation);
* a direct transfer (``kind`` ``transfer``) is judged by its own receipt
  (``decide_transfer``): mined and paying → ``settled``, reverted or its
  account nonce taken by another transaction → ``failed`` (released);
* a Permit2 payment (``kind`` ``permit2`` or ``upto``) is judged the same way,
  with Permit2's nonce bitmap in place of ``authorizationState`` and the
  token's ``Transfer`` (in token units) as the proof. An ``upto`` payment
  settles at the amount the chain shows transferred (at most the maximum):
  that becomes its amount and the rest of the reservation is released. A
  server that reported another amount than the chain shows makes it ``disputed``.

All state lives in the ledger, and every move is a compare-and-set on the
status, so a pass is idempotent, safe to interrupt at any point, and safe to
run from the CLI while the daemon's own loop runs. Chain reads happen outside
write transactions, so Pay is never blocked behind the network.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from walletd.db.ledger import Store, TrackedPayment
from walletd.domain import lifecycle
from walletd.domain.direct import KIND_PERMIT2, KIND_TRANSFER, KIND_UPTO
from walletd.domain.money import format_usd
from walletd.domain.networks import by_caip2, to_token_units, to_usd_atomic
from walletd.domain.payment import PaymentStatus
from walletd.errors import ChainError, InsufficientFundsError, InvalidRequestError, WalletdError
from walletd.service.clock import now_ms
from walletd.service.ports import ChainReader, ChainReceipt, ChainSender, Signer, TransferChain

log = logging.getLogger("walletd.reconcile")

DEFAULT_MARGIN_S = 30
"""Seconds past validBefore (chain time) before an unreported authorization is judged."""
BATCH = 500
"""Open payments looked at per pass (those due first); the next pass takes the rest."""
CANCEL_GRACE_S = 60
"""A still-``signed`` payment may be cancelled only this long after it was signed."""


@dataclass(frozen=True)
class Decision:
    """What the chain says should happen to one payment."""

    target: str
    cause: str
    data: dict[str, Any]
    settled_tx: str | None = None
    charged: int | None = None
    """upto, settling: the USD atomic units the chain shows charged (the rest is released)."""


@dataclass
class PassReport:
    """What one pass did: payments looked at, and moves by target status.

    ``elsewhere`` counts the open payments of every other network: this pass's
    node cannot follow them, so they stay counted as spent until a reconciler
    with a node on their network looks at them.
    """

    checked: int = 0
    moved: dict[str, int] = field(default_factory=dict)
    elsewhere: dict[str, int] = field(default_factory=dict)

    def count(self, target: str) -> None:
        """Count one move to ``target``."""
        self.moved[target] = self.moved.get(target, 0) + 1


def _same(a: str, b: str) -> bool:
    return a.lower() == b.lower()


def settlement_problems(receipt: ChainReceipt, row: TrackedPayment, usdc: str) -> list[str]:
    """Why ``receipt`` does not prove ``row`` settled; empty when it does (``usdc``: its token)."""
    problems: list[str] = []
    if receipt.status != 1:
        problems.append("transaction reverted")
    if not any(
        _same(t.token, usdc)
        and _same(t.sender, row.payer)
        and _same(t.recipient, row.payee)
        and t.value == row.amount
        for t in receipt.transfers
    ):
        problems.append("no token Transfer from the wallet to payTo of exactly the amount")
    if not any(
        _same(a.token, usdc) and _same(a.authorizer, row.payer) and _same(a.nonce, row.nonce)
        for a in receipt.authorizations_used
    ):
        problems.append("no AuthorizationUsed for this wallet and nonce")
    return problems


# ------------------------------------------------------------------------ Permit2

PERMIT2_KINDS = (KIND_PERMIT2, KIND_UPTO)
CLIENT_REPORT = "client_report"


def nonce_used(chain: ChainReader, row: TrackedPayment) -> bool:
    """Whether the chain marks the payment's nonce used (or cancelled / invalidated)."""
    if row.kind in PERMIT2_KINDS:
        return chain.permit2_nonce_used(row.payer, row.nonce)
    return chain.authorization_state(row.payer, row.nonce, row.asset)


def _usd_ceiling(token_units: int, decimals: int) -> int:
    """Token units as USD atomic units, rounded up (a charge is never under-counted)."""
    unit: int = 10 ** max(decimals - 6, 0)
    scale: int = 10 ** max(6 - decimals, 0)
    return -(-token_units // unit) * scale


def permit2_settlement(
    receipt: ChainReceipt, row: TrackedPayment, reported: int | None = None
) -> tuple[list[str], int | None]:
    """Why ``receipt`` does not prove the Permit2 ``row`` settled, and (upto) the USD charged.

    ``reported`` is the amount (token units) the server's PAYMENT-RESPONSE claimed, if any.
    """
    asset = by_caip2(row.network).asset(row.asset)
    if asset is None:
        return [f"{row.asset} is not a pinned stablecoin on {row.network}"], None
    problems: list[str] = []
    if receipt.status != 1:
        problems.append("transaction reverted")
    paid = [
        t.value
        for t in receipt.transfers
        if _same(t.token, row.asset)
        and _same(t.sender, row.payer)
        and _same(t.recipient, row.payee)
    ]
    if row.kind == KIND_PERMIT2:
        if to_token_units(asset, row.amount) not in paid:
            problems.append("no token Transfer from the wallet to payTo of exactly the amount")
        return problems, None
    maximum = to_token_units(asset, row.authorized or row.amount)
    within = [v for v in paid if v <= maximum]
    if len(within) != 1:
        problems.append("no single token Transfer from the wallet to payTo within the maximum")
        return problems, None
    if reported is not None and reported != within[0]:
        problems.append(f"the server reported {reported} token units, the chain shows {within[0]}")
    charged = to_usd_atomic(asset, within[0])
    return problems, charged if charged is not None else _usd_ceiling(within[0], asset.decimals)


def reported_amount(store: Store, payment_id: str) -> int | None:
    """The amount (token units) a client's report of PAYMENT-RESPONSE claimed, if any."""
    with store.read() as tx:
        events = tx.events(payment_id)
    for event in reversed(events):
        value = event.data.get("amount") if event.cause == CLIENT_REPORT else None
        if isinstance(value, str) and value.isdigit() and len(value) <= 78:
            return int(value)
    return None


# ------------------------------------------------------------ direct transfers

TRANSFER_SIGNED = "transfer_signed"
"""Cause of the event that records a direct transfer's account nonce and raw transaction."""


def transfer_decision(receipt: ChainReceipt, row: TrackedPayment, usdc: str) -> Decision:
    """What a mined receipt of our own direct transfer means for its row.

    Reverted: the money did not move and never can with this transaction
    (``failed``, released). Mined without the exact ``Transfer(wallet ->
    recipient, amount)`` from the pinned USDC: something else happened, so it
    stays counted (``disputed``). Otherwise ``settled``.
    """
    data: dict[str, Any] = {"tx": receipt.tx_hash, "block": receipt.block_number}
    if receipt.status != 1:
        return Decision(PaymentStatus.FAILED, "transfer_reverted", data)
    if not any(
        _same(t.token, usdc)
        and _same(t.sender, row.payer)
        and _same(t.recipient, row.payee)
        and t.value == row.amount
        for t in receipt.transfers
    ):
        data["problems"] = [
            "no USDC Transfer from the wallet to the recipient of exactly the amount"
        ]
        return Decision(PaymentStatus.DISPUTED, "transfer_does_not_pay", data)
    return Decision(PaymentStatus.SETTLED, "transfer_mined", data, receipt.tx_hash)


def transfer_account_nonce(store: Store, payment_id: str) -> int | None:
    """The account nonce a direct transfer was signed with (from its ``transfer_signed`` event)."""
    with store.read() as tx:
        events = tx.events(payment_id)
    for event in events:
        value = event.data.get("account_nonce") if event.cause == TRANSFER_SIGNED else None
        if type(value) is int:
            return value
    return None


def decide_transfer(
    chain: ChainReader | TransferChain, row: TrackedPayment, account_nonce: int | None
) -> Decision | None:
    """The move the chain justifies for a direct transfer (``nonce`` is its hash), or None.

    No ``authorizationState`` here: the transaction's own receipt decides, and
    without one, only a mined account nonce taken by *another* transaction
    proves this one can never mine (``failed``). Otherwise it may still be in
    a pool somewhere, so it stays open and counted.
    """
    receipt = chain.receipt(row.nonce)
    if receipt is not None:
        return transfer_decision(receipt, row, chain.network.usdc)
    if account_nonce is None:
        return None
    mined = chain.transaction_count(row.payer)
    if mined <= account_nonce:
        return None
    receipt = chain.receipt(row.nonce)  # it may have been mined between the two reads
    if receipt is not None:
        return transfer_decision(receipt, row, chain.network.usdc)
    data = {"tx": row.nonce, "account_nonce": account_nonce, "mined_count": mined}
    return Decision(PaymentStatus.FAILED, "transfer_nonce_used_by_other_tx", data)


def _not_before(row: TrackedPayment) -> int:
    """How far back a log search must look: the authorization cannot be used earlier."""
    return max(row.valid_after, 0)


class Reconciler:
    """One pass over open payments against one chain; see the module docstring."""

    def __init__(
        self,
        store: Store,
        chain: ChainReader,
        margin_s: int = DEFAULT_MARGIN_S,
        clock: Callable[[], int] = now_ms,
    ) -> None:
        self._store = store
        self._chain = chain
        self._margin_s = margin_s
        self._clock = clock

    def run_once(self) -> PassReport:
        """Look at every open payment once; raises ChainError if the node fails (fail closed)."""
        report = PassReport()
        chain_now = self._chain.block_timestamp()
        network = self._chain.network.caip2
        with self._store.read() as tx:
            rows = tx.open_payments(lifecycle.OPEN_STATUSES, BATCH, network)
            report.elsewhere = tx.open_elsewhere(lifecycle.OPEN_STATUSES, network)
        for row in rows:
            report.checked += 1
            decision = self.decide(row, chain_now)
            if decision is not None and self._apply(row, decision):
                report.count(decision.target)
        return report

    def decide(self, row: TrackedPayment, chain_now: int) -> Decision | None:
        """The move the chain justifies for ``row`` now, or None to wait."""
        if row.kind == KIND_TRANSFER:
            return decide_transfer(self._chain, row, transfer_account_nonce(self._store, row.id))
        expired = lifecycle.past_expiry(chain_now, row.valid_before, self._margin_s)
        if row.reported_tx:
            return self._check_reported(row, row.reported_tx, chain_now, expired)
        if not expired:
            return None
        return self._after_expiry(row, chain_now)

    def _check_reported(
        self, row: TrackedPayment, tx_hash: str, chain_now: int, expired: bool
    ) -> Decision | None:
        receipt = self._chain.receipt(tx_hash)
        if receipt is None:
            if not expired:
                return None  # maybe not mined yet; after validBefore it never can be
            facts = {"reported_tx": tx_hash, "chain_time": chain_now}
            facts["authorization_used"] = nonce_used(self._chain, row)
            return Decision(PaymentStatus.DISPUTED, "reported_tx_not_on_chain", facts)
        charged = None
        if row.kind in PERMIT2_KINDS:
            reported = reported_amount(self._store, row.id) if row.kind == KIND_UPTO else None
            problems, charged = permit2_settlement(receipt, row, reported)
        else:
            problems = settlement_problems(receipt, row, row.asset or self._chain.network.usdc)
        if problems:
            data = {"reported_tx": tx_hash, "problems": problems, "chain_time": chain_now}
            return Decision(PaymentStatus.DISPUTED, "reported_tx_does_not_settle", data)
        data = {"tx": receipt.tx_hash, "block": receipt.block_number, "chain_time": chain_now}
        if charged is not None:
            data["charged"] = charged
        return Decision(PaymentStatus.SETTLED, "confirmed_on_chain", data, receipt.tx_hash, charged)

    def _after_expiry(self, row: TrackedPayment, chain_now: int) -> Decision:
        data: dict[str, Any] = {"chain_time": chain_now, "valid_before": row.valid_before}
        if not nonce_used(self._chain, row):
            return Decision(PaymentStatus.EXPIRED, "authorization_unused_after_expiry", data)
        if row.kind in PERMIT2_KINDS:
            # Permit2 logs no event naming the nonce: the money moved (upto: counted at most
            # the maximum, as reserved), in a transaction walletd cannot name.
            data["tx"] = None
            return Decision(PaymentStatus.SETTLED, "permit2_nonce_used_on_chain", data)
        used = self._chain.find_authorization_used(
            row.payer, row.nonce, _not_before(row), row.asset
        )
        if used:
            data["tx"] = used
            return Decision(PaymentStatus.SETTLED, "authorization_used_on_chain", data, used)
        canceled = self._chain.find_authorization_canceled(
            row.payer, row.nonce, _not_before(row), row.asset
        )
        if canceled:
            data["tx"] = canceled
            return Decision(
                PaymentStatus.CANCELLED, "authorization_canceled_on_chain", data, canceled
            )
        # Used, but the log is out of the node's reach: money moved, so count it as settled.
        data["tx"] = None
        return Decision(PaymentStatus.SETTLED, "authorization_used_on_chain", data)

    def _apply(self, row: TrackedPayment, decision: Decision) -> bool:
        return apply_decision(self._store, row, decision, self._clock())


def apply_decision(store: Store, row: TrackedPayment, decision: Decision, at_ms: int) -> bool:
    """Record one decision; False when another writer moved the payment first."""
    try:
        with store.write() as tx:
            moved = tx.move(
                row.id, row.status, decision.target, at_ms, decision.cause, decision.data,
                settled_tx=decision.settled_tx, charged=decision.charged,
            )  # fmt: skip
    except lifecycle.TransitionError as exc:
        log.warning("payment %s: %s (left as it is, still counted)", row.id, exc)
        return False
    if moved:
        log.info("payment %s %s -> %s (%s)", row.id, row.status, decision.target, decision.cause)
    return moved


# ---------------------------------------------------------------------------- funds


REFRESH_MIN_AGE_S = 1.0
"""A balance read this recently is not read again before refusing for funds."""


class FundsCache:
    """The wallet's last USDC balance read from chain: written by the loop, read by Pay.

    Pay never calls the node inside the ledger's write lock, so it judges funds
    by this cached value less the authorizations still counted; with no value
    yet (no RPC, or the node never answered) Pay does not check. Before it
    *refuses* for funds, Pay reads the balance afresh through ``source`` (set
    by the daemon), outside the lock, at most once per ``REFRESH_MIN_AGE_S``:
    a wallet funded since the loop's last pass pays at once.
    """

    def __init__(self, low_balance: int = 0, source: Callable[[], int] | None = None) -> None:
        self.low_balance = low_balance
        self.source = source
        """Reads the balance from chain now (may raise ChainError); None: no refresh."""
        self._lock = threading.Lock()
        self._refresh_lock = threading.Lock()
        self._balance: int | None = None
        self._read_at: float | None = None

    def balance(self) -> int | None:
        """The last balance read, or None before the first read."""
        with self._lock:
            return self._balance

    def update(self, balance: int) -> None:
        """Store a fresh balance; warn when it is under the low-balance threshold."""
        with self._lock:
            self._balance = balance
            self._read_at = time.monotonic()
        if balance < self.low_balance:
            log.warning(
                "low USDC balance: %d < threshold %d (atomic units)", balance, self.low_balance
            )

    def can_refresh(self) -> bool:
        """Whether ``refresh`` would read the chain (a source, and no read just now)."""
        with self._lock:
            read_at = self._read_at
        recent = read_at is not None and time.monotonic() - read_at < REFRESH_MIN_AGE_S
        return self.source is not None and not recent

    def refresh(self) -> int | None:
        """Read the balance from chain now (unless one just did); the balance after.

        A node that fails leaves the cached value (Pay then judges by it).
        Concurrent callers share one read.
        """
        with self._refresh_lock:
            if self.source is not None and self.can_refresh():
                try:
                    self.update(self.source())
                except WalletdError as err:
                    log.warning("balance not refreshed: %s: %s", err.reason, err.message)
        return self.balance()


def funds_shortfall(
    cache: FundsCache | None, outstanding: int, amount: int
) -> InsufficientFundsError | None:
    """The refusal when the wallet's USDC, less what it already promised, cannot cover ``amount``.

    None when it can, or when the balance is unknown. The message gives the
    figures in USD; ``details`` in atomic units.
    """
    balance = cache.balance() if cache is not None else None
    if balance is None or outstanding + amount <= balance:
        return None
    available = max(balance - outstanding, 0)
    return InsufficientFundsError(
        f"insufficient USDC: {format_usd(available)} USD available (balance "
        f"{format_usd(balance)} less {format_usd(outstanding)} outstanding in authorizations "
        f"not yet settled or released), {format_usd(amount)} USD asked",
        {
            "balance": str(balance),
            "outstanding": str(outstanding),
            "available": str(available),
            "requested": str(amount),
        },
    )


def require_funds(cache: FundsCache | None, outstanding: int, amount: int) -> None:
    """Refuse a payment the wallet's USDC, less what it already promised, cannot cover.

    Raises:
        InsufficientFundsError: with the balance, outstanding and requested amounts.
    """
    short = funds_shortfall(cache, outstanding, amount)
    if short is not None:
        raise short


# --------------------------------------------------------------------------- the loop


class ReconcileLoop:
    """Runs a pass at once and then every ``interval_s`` until ``stop`` is set.

    The chain client is made per pass by ``open_chain``, so a node that is down
    when the daemon starts (or goes away) only delays reconciliation. After each
    pass it refreshes the wallet's USDC balance in ``funds`` (right after the
    pass, so the balance and the settled/open split are read close together).
    """

    def __init__(
        self,
        store: Store,
        open_chain: Callable[[], ChainReader],
        interval_s: float,
        margin_s: int,
        stop: threading.Event,
        funds: tuple[str, FundsCache] | None = None,
    ) -> None:
        self._store = store
        self._funds = funds
        self._open_chain = open_chain
        self._interval_s = interval_s
        self._margin_s = margin_s
        self._stop = stop
        self._thread = threading.Thread(target=self._run, name="walletd-reconcile", daemon=True)
        self._unfollowed: frozenset[str] = frozenset()
        """The other networks with open payments at the last warning (warned once per change)."""

    def start(self) -> None:
        """Start the background thread."""
        self._thread.start()

    def join(self, timeout: float) -> None:
        """Wait for the thread to end after ``stop`` was set."""
        self._thread.join(timeout)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                chain = self._open_chain()
                report = Reconciler(self._store, chain, self._margin_s).run_once()
                if self._funds is not None:
                    address, cache = self._funds
                    cache.update(chain.usdc_balance(address))
                if report.moved:
                    log.info("reconcile checked=%d moved=%s", report.checked, report.moved)
                self._warn_unfollowed(report, chain.network.caip2)
            except WalletdError as err:
                log.warning("reconcile pass failed: %s: %s", err.reason, err.message)
            except Exception:  # the loop must outlive any one bad pass
                log.exception("reconcile pass crashed")
            self._stop.wait(self._interval_s)

    def _warn_unfollowed(self, report: PassReport, network: str) -> None:
        """Say once (and again when the set changes) which networks' payments wait unfollowed."""
        unfollowed = frozenset(report.elsewhere)
        if unfollowed and unfollowed != self._unfollowed:
            log.warning(
                "open payments on %s are not followed: this daemon's node serves %s; they "
                "stay counted as spent until a reconciler with a node there looks at them",
                ", ".join(f"{net} ({n})" for net, n in sorted(report.elsewhere.items())),
                network,
            )
        self._unfollowed = unfollowed


# ------------------------------------------------------------------------- cancelling


def _cancellable(row: TrackedPayment, now: int) -> None:
    if row.kind == KIND_TRANSFER:
        raise InvalidRequestError(f"payment {row.id} is a direct transfer; it cannot be cancelled")
    if row.kind in PERMIT2_KINDS:
        raise InvalidRequestError(
            f"payment {row.id} is a Permit2 payment; walletd cancels EIP-3009 authorizations only"
        )
    if row.status not in lifecycle.CANCELLABLE_STATUSES:
        raise InvalidRequestError(
            f"payment {row.id} is {row.status}; only rejected payments (or signed ones "
            f"older than {CANCEL_GRACE_S} s) can be cancelled"
        )
    if row.status == PaymentStatus.SIGNED and now - row.created_at_ms < CANCEL_GRACE_S * 1000:
        raise InvalidRequestError(
            f"payment {row.id} was signed less than {CANCEL_GRACE_S} s ago; its client may "
            "still be sending it"
        )


def _already_final_on_chain(chain: ChainReader, row: TrackedPayment) -> Decision:
    """The decision for an authorization the contract already marks used or cancelled."""
    if row.kind in PERMIT2_KINDS:
        return Decision(PaymentStatus.SETTLED, "permit2_nonce_used_on_chain", {"tx": None})
    canceled = chain.find_authorization_canceled(row.payer, row.nonce, _not_before(row), row.asset)
    if canceled:
        return Decision(
            PaymentStatus.CANCELLED, "authorization_canceled_on_chain", {"tx": canceled}, canceled
        )
    used = chain.find_authorization_used(row.payer, row.nonce, _not_before(row), row.asset)
    data: dict[str, Any] = {"tx": used}
    return Decision(PaymentStatus.SETTLED, "authorization_used_on_chain", data, used)


def answer_lost_decision(chain: ChainReader, row: TrackedPayment) -> Decision | None:
    """For a payment a server just refused: the decision if the chain already used it.

    A retry of a request whose first attempt settled re-sends the same
    authorization, and the server refuses it as already used: the money moved,
    only the answer was lost. Returns None when the authorization is unused (a
    real refusal) or when the row is not an authorization on this chain.
    """
    if row.kind == KIND_TRANSFER or row.network != chain.network.caip2:
        return None
    if not nonce_used(chain, row):
        return None
    return _already_final_on_chain(chain, row)


def cancel_payment(
    store: Store,
    chain: ChainReader,
    sender: ChainSender,
    signer: Signer,
    payment_id: str,
    clock: Callable[[], int] = now_ms,
) -> str:
    """Cancel a payment's authorization on chain; return the payment's status afterwards.

    Re-running after a crash is safe: an authorization the chain already shows
    as cancelled (or used) is recorded as such without sending anything; one
    already used (the server settled it) is recorded ``settled`` and refused.

    Raises:
        NotFoundError, InvalidRequestError: not this wallet's, not cancellable, or
            already settled on chain (then the ledger is moved to ``settled``).
        ChainError: the node failed, or the cancel reverted (e.g. the server won the race).
    """
    with store.read() as tx:
        row = tx.tracked_payment(payment_id)
    if not _same(row.payer, signer.address) or row.network != chain.network.caip2:
        raise InvalidRequestError(f"payment {row.id} is not this wallet's on {chain.network.caip2}")
    _cancellable(row, clock())
    if chain.authorization_state(row.payer, row.nonce, row.asset):
        decision = _already_final_on_chain(chain, row)
        apply_decision(store, row, decision, clock())
        if decision.target == PaymentStatus.SETTLED:
            used_tx = decision.settled_tx or ""
            where = f" in {used_tx}" if used_tx else ""
            raise InvalidRequestError(
                f"payment {row.id} was already settled on chain{where}: nothing was cancelled "
                "(the ledger now shows it settled)",
                {"payment_id": row.id, "status": PaymentStatus.SETTLED, "tx": used_tx},
            )
        return decision.target
    if chain.block_timestamp() >= row.valid_before:
        raise InvalidRequestError(f"payment {row.id} is past validBefore: `walletd reconcile`")
    with store.write() as tx:
        if tx.tracked_payment(row.id).status != row.status:  # the reconciler or a report won
            raise InvalidRequestError(f"payment {row.id} changed status meanwhile: nothing sent")
        tx.add_event(row.id, clock(), row.status, "cancel_sent", {})
    receipt = sender.cancel_authorization(signer, row.nonce, row.asset)
    if not any(
        _same(a.authorizer, row.payer) and _same(a.nonce, row.nonce)
        for a in receipt.authorizations_canceled
    ):
        raise ChainError(f"{receipt.tx_hash} did not emit AuthorizationCanceled for {row.nonce}")
    data = {"tx": receipt.tx_hash, "block": receipt.block_number}
    decision = Decision(
        PaymentStatus.CANCELLED, "authorization_canceled_on_chain", data, receipt.tx_hash
    )
    if not apply_decision(store, row, decision, clock()):
        with store.read() as tx:
            return tx.tracked_payment(row.id).status
    return PaymentStatus.CANCELLED


# ----------------------------------------------------------------------------- status


@dataclass(frozen=True)
class FundsStatus:
    """What `walletd status` shows; chain fields are None without a working RPC."""

    address: str
    frozen: bool
    outstanding_count: int
    outstanding_amount: int
    """The current key's authorizations not yet settled or released: they draw on its balance."""
    network: str | None = None
    usdc: int | None = None
    eth: int | None = None
    chain_error: str = ""
    low_balance: bool | None = None
    """Whether USDC is under the configured threshold; None when unknown."""
    retired_count: int = 0
    retired_amount: int = 0
    """Retired keys' authorizations still open: they draw on those keys' balances, not this one."""


def funds_status(
    store: Store,
    address: str,
    open_chain: Callable[[], ChainReader] | None,
    low_balance: int = 0,
) -> FundsStatus:
    """The wallet's balances and what it has promised but not yet seen settle.

    Outstanding authorizations are split by key: after a rotation only the
    current key's promises draw on the balance shown beside them. A chain
    failure does not hide the ledger's facts: it is shown as ``chain_error``.
    """
    with store.read() as tx:
        frozen = tx.wallet_state().frozen
        (count, amount), (retired_count, retired_amount) = tx.outstanding_by_key(address)
    status = FundsStatus(
        address, frozen, count, amount, retired_count=retired_count, retired_amount=retired_amount
    )
    if open_chain is None:
        return status
    try:
        chain = open_chain()
        usdc = chain.usdc_balance(address)
        return replace(
            status, network=chain.network.caip2, usdc=usdc, eth=chain.eth_balance(address),
            low_balance=usdc < low_balance,
        )  # fmt: skip
    except ChainError as err:
        return replace(status, chain_error=err.message)
