"""One account-nonce sequence per (chain, address) in this process, whatever the concurrency.

Two transactions signed with the same nonce cannot both mine, and a nonce
skipped leaves every later transaction stuck in the pool. So the daemon hands
out nonces from one allocator per key: a lock, held from the moment a nonce is
chosen until its transaction was broadcast (or it is known not to be), and the
chain's own ``pending`` count as the floor.

The choice is ``max(next we handed out, the node's pending count)``: the cache
covers a node that does not yet count our last transaction, the node covers
transactions sent by anything else (a ``walletd payment cancel`` from the CLI).
After a broadcast whose outcome is unknown or refused, the cache is dropped and
the next choice trusts the node alone, so a nonce that never reached the pool
is reused instead of leaving a gap.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass


class NonceAllocator:
    """The nonce sequence of one key on one chain; see the module docstring."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._next: int | None = None

    @contextmanager
    def hold(self, pending_count: Callable[[], int]) -> Iterator[NonceSlot]:
        """Hold the sequence (blocking other holders) until the block ends.

        Nothing is consumed unless the slot is marked ``sent``: a refused
        payment, or an exception anywhere in the block, leaves the cache behind
        the nonce it read, so the next holder reuses that nonce unless the node
        already counts it (then the node's higher count wins).
        """
        with self._lock:
            yield NonceSlot(self, pending_count)

    def _choose(self, pending: int) -> int:
        return pending if self._next is None else max(self._next, pending)

    def _consumed(self, nonce: int) -> None:
        self._next = nonce + 1

    def _forget(self) -> None:
        self._next = None


@dataclass
class NonceSlot:
    """The right to use the next nonce while its allocator is held."""

    allocator: NonceAllocator
    pending_count: Callable[[], int]
    """The node's ``eth_getTransactionCount(address, "pending")``."""
    nonce: int | None = None

    def take(self) -> int:
        """The nonce to sign with: the cache or the node's pending count, whichever is higher."""
        self.nonce = self.allocator._choose(self.pending_count())
        return self.nonce

    def sent(self) -> None:
        """The node accepted the transaction: the next holder gets the next nonce."""
        assert self.nonce is not None
        self.allocator._consumed(self.nonce)

    def unsure(self) -> None:
        """The broadcast failed or its outcome is unknown: ask the node next time."""
        self.allocator._forget()


_REGISTRY: dict[tuple[int, str], NonceAllocator] = {}
_REGISTRY_LOCK = threading.Lock()


def allocator_for(chain_id: int, address: str) -> NonceAllocator:
    """The process-wide allocator of ``address`` on ``chain_id``."""
    key = (chain_id, address.lower())
    with _REGISTRY_LOCK:
        found = _REGISTRY.get(key)
        if found is None:
            found = _REGISTRY[key] = NonceAllocator()
        return found
