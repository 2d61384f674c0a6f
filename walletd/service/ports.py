"""The service facade that the gRPC edge calls, as a Protocol.

The rpc package depends on this shape only; ``walletd.service.wallet.WalletService``
is the implementation. Every method raises only ``walletd.errors`` classes.
"""

from __future__ import annotations

from typing import Protocol

from walletd.domain.budget import BudgetState
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
