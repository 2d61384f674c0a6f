"""The ports of the service layer, as Protocols: what it offers and what it needs.

The rpc package depends on ``WalletApi`` only; ``walletd.service.wallet.WalletService``
is the implementation. ``Signer``, ``ChainReader`` and ``ChainSender`` are what the
service needs from the outside (``walletd.keys``, ``walletd.chain``). Every method
raises only ``walletd.errors`` classes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Protocol

from walletd.domain.approval import Approval
from walletd.domain.budget import BudgetState
from walletd.domain.networks import Network
from walletd.domain.payment import Caller, PayCommand, PaymentView, PayReceipt
from walletd.domain.report import ReportQuery, SpendReport


class WalletApi(Protocol):
    """What an authenticated caller can ask of the daemon."""

    def authenticate(self, token: str) -> Caller:
        """The client owning this bearer token; raises UnauthenticatedError."""
        ...

    def identify(self, token: str) -> Caller:
        """As ``authenticate``, but may answer from memory without re-reading revocation.

        Only for Pay and ReportOutcome, whose own transactions refuse a revoked client
        before they write.
        """
        ...

    def pay(self, caller: Caller, cmd: PayCommand) -> PayReceipt:
        """Check, record and sign one payment; raises a RefusedError subclass."""
        ...

    def report_outcome(
        self, caller: Caller, payment_id: str, http_status: int, payment_response: str
    ) -> str:
        """Record what the client saw after paying; returns the new status."""
        ...

    def get_budget(self, caller: Caller) -> BudgetState:
        """What remains in each of the caller's windows."""
        ...

    def list_payments(self, caller: Caller, limit: int) -> list[PaymentView]:
        """The caller's own payments, newest first."""
        ...

    def spend_report(self, caller: Caller, query: ReportQuery) -> SpendReport:
        """The caller's own spend report (``query.client`` is ignored)."""
        ...


class ApprovalApi(Protocol):
    """What approvers (scope approve) and a waiting payer ask of the daemon."""

    def list(self, status: str | None, limit: int) -> list[Approval]:
        """Approvals newest first, optionally in one status."""
        ...

    def decide(self, approver: Caller, approval_id: str, approve: bool, note: str) -> Approval:
        """Approve or deny one pending approval (never the approver's own payment)."""
        ...

    def watch(self, active: Callable[[], bool]) -> Iterator[tuple[str, Approval]]:
        """("pending"|"decided", approval) events while ``active()``."""
        ...

    def await_decision(self, caller: Caller, approval_id: str, timeout_s: float) -> Approval:
        """The caller's own approval once decided, or as it is after ``timeout_s``."""
        ...


class Signer(Protocol):
    """Holds the key; signs 32-byte digests that the domain layer built and checked."""

    @property
    def address(self) -> str:
        """The checksummed address of the key."""
        ...

    def sign_hash(self, digest: bytes) -> bytes:
        """A 65-byte r‖s‖v signature (v in 27/28) of the digest."""
        ...


@dataclass(frozen=True)
class TokenTransfer:
    """One ERC-20 ``Transfer`` log, decoded; addresses are checksummed."""

    token: str
    sender: str
    recipient: str
    value: int


@dataclass(frozen=True)
class AuthorizationEvent:
    """One EIP-3009 ``AuthorizationUsed`` or ``AuthorizationCanceled`` log, decoded."""

    token: str
    authorizer: str
    nonce: str
    """0x + 64 lower-case hex, as the ledger stores it."""


@dataclass(frozen=True)
class ChainReceipt:
    """The facts of a mined transaction that settlement checks need, and nothing else."""

    tx_hash: str
    status: int
    block_number: int
    transfers: tuple[TokenTransfer, ...]
    authorizations_used: tuple[AuthorizationEvent, ...]
    authorizations_canceled: tuple[AuthorizationEvent, ...]


class ChainReader(Protocol):
    """Read-only view of one chain and its pinned USDC; every method may raise ChainError.

    Bound to one network (the node's chain id must be an enabled network), so an
    RPC URL pointing at the wrong chain can never confirm anything.
    """

    @property
    def network(self) -> Network:
        """The pinned network the node serves."""
        ...

    def receipt(self, tx_hash: str) -> ChainReceipt | None:
        """The mined receipt of ``tx_hash``, or None if the node knows no such receipt."""
        ...

    def authorization_state(self, wallet: str, nonce: str, token: str = "") -> bool:
        """Whether the EIP-3009 token marks (wallet, nonce) as used or cancelled.

        ``token`` is the token contract; "" means the network's first stablecoin (USDC on Base).
        """
        ...

    def permit2_nonce_used(self, wallet: str, nonce: str) -> bool:
        """Whether Permit2's nonce bitmap marks the wallet's permit ``nonce`` (0x hex) used."""
        ...

    def find_authorization_used(
        self, wallet: str, nonce: str, not_before: int, token: str = ""
    ) -> str | None:
        """The hash of the transaction that emitted AuthorizationUsed(wallet, nonce), if any.

        ``not_before`` (Unix seconds) bounds how far back the log search goes.
        """
        ...

    def find_authorization_canceled(
        self, wallet: str, nonce: str, not_before: int, token: str = ""
    ) -> str | None:
        """The hash of the transaction that emitted AuthorizationCanceled(wallet, nonce)."""
        ...

    def usdc_balance(self, address: str) -> int:
        """USDC atomic units held by ``address``."""
        ...

    def eth_balance(self, address: str) -> int:
        """Wei held by ``address``."""
        ...

    def block_timestamp(self) -> int:
        """The latest block's timestamp: the clock validBefore is judged by."""
        ...

    def transaction_count(self, address: str) -> int:
        """Transactions of ``address`` mined so far (its next unused account nonce)."""
        ...


class ChainSender(Protocol):
    """Sends the wallet's own transactions (gas paid from the wallet's ETH)."""

    def cancel_authorization(self, signer: Signer, nonce: str, token: str = "") -> ChainReceipt:
        """Sign and send ``cancelAuthorization`` for ``nonce`` to ``token``; wait for the receipt.

        ``token`` "" means the network's first stablecoin.

        Raises:
            ChainError: the node failed, the transaction reverted or was not mined in time.
        """
        ...


# ------------------------------------------------------------- direct transfers

BROADCAST_SENT = "sent"
"""The node took the transaction (or already had it)."""
BROADCAST_REJECTED = "rejected"
"""The node answered with an error: this transaction is not in its pool."""
BROADCAST_UNKNOWN = "unknown"
"""No answer (timeout, connection lost): the node may or may not have it."""


@dataclass(frozen=True)
class Fees:
    """EIP-1559 fee fields, in wei per gas."""

    max_fee_per_gas: int
    max_priority_fee_per_gas: int


@dataclass(frozen=True)
class SignedTransaction:
    """A signed EIP-1559 transaction, ready to broadcast; its hash is known before it is sent."""

    tx_hash: str
    """0x + 64 lower-case hex: keccak of ``raw``."""
    raw: str
    """0x-hex of the signed envelope."""
    nonce: int
    """The account nonce it uses."""


@dataclass(frozen=True)
class Broadcast:
    """What the node said to ``eth_sendRawTransaction``: one of the ``BROADCAST_*`` values."""

    outcome: str
    detail: str = ""


class NonceSlot(Protocol):
    """The right to the wallet's next account nonce, held until its transaction is out."""

    def take(self) -> int:
        """The nonce to sign with."""
        ...

    def sent(self) -> None:
        """The transaction was broadcast: the next holder gets the next nonce."""
        ...

    def unsure(self) -> None:
        """The broadcast failed or is unknown: re-read the node's count next time."""
        ...


class TransferChain(Protocol):
    """What a direct transfer needs from the chain: fees, nonces, signing, sending, receipts."""

    @property
    def network(self) -> Network:
        """The pinned network the node serves."""
        ...

    def fees(self) -> Fees:
        """Fee fields for the next transaction (read before the ledger's lock is taken)."""
        ...

    def hold_nonce(self, address: str) -> AbstractContextManager[NonceSlot]:
        """Hold ``address``'s process-wide nonce sequence for one transaction."""
        ...

    def sign_transfer(
        self, signer: Signer, fees: Fees, nonce: int, recipient: str, amount: int
    ) -> SignedTransaction:
        """Sign ``USDC.transfer(recipient, amount)`` with ``nonce``; no network access."""
        ...

    def broadcast(self, raw: str) -> Broadcast:
        """Send a signed transaction; never raises, the outcome says what is known."""
        ...

    def wait_for_receipt(self, tx_hash: str, timeout_s: float) -> ChainReceipt | None:
        """The receipt once mined, or None after ``timeout_s``; raises ChainError."""
        ...

    def receipt(self, tx_hash: str) -> ChainReceipt | None:
        """The mined receipt of ``tx_hash``, or None."""
        ...

    def transaction_count(self, address: str) -> int:
        """Transactions of ``address`` mined so far."""
        ...
