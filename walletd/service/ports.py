"""The ports of the service layer, as Protocols: what it offers and what it needs.

The rpc package depends on ``WalletApi`` only; ``walletd.service.wallet.WalletService``
is the implementation. ``Signer``, ``ChainReader`` and ``ChainSender`` are what the
service needs from the outside (``walletd.keys``, ``walletd.chain``). Every method
raises only ``walletd.errors`` classes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from walletd.domain.budget import BudgetState
from walletd.domain.networks import Network
from walletd.domain.payment import Caller, PayCommand, PaymentView, PayReceipt


class WalletApi(Protocol):
    """What an authenticated caller can ask of the daemon."""

    def authenticate(self, token: str) -> Caller:
        """The client owning this bearer token; raises UnauthenticatedError."""
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

    def authorization_state(self, wallet: str, nonce: str) -> bool:
        """Whether the USDC contract marks (wallet, nonce) as used or cancelled."""
        ...

    def find_authorization_used(self, wallet: str, nonce: str, not_before: int) -> str | None:
        """The hash of the transaction that emitted AuthorizationUsed(wallet, nonce), if any.

        ``not_before`` (Unix seconds) bounds how far back the log search goes.
        """
        ...

    def find_authorization_canceled(self, wallet: str, nonce: str, not_before: int) -> str | None:
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


class ChainSender(Protocol):
    """Sends the wallet's own transactions (gas paid from the wallet's ETH)."""

    def cancel_authorization(self, signer: Signer, nonce: str) -> ChainReceipt:
        """Sign and send ``cancelAuthorization`` for ``nonce``; wait for the receipt.

        Raises:
            ChainError: the node failed, the transaction reverted or was not mined in time.
        """
        ...
