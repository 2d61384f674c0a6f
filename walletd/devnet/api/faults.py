"""The misbehaviour a test can switch on in the local paid API.

A real gateway fails in ways a client must survive (rate limits before payment, an error
or a dropped connection after the money has moved). :class:`Faults` holds what a test asked
for; the gateway consumes it one request at a time.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Literal

__all__ = ["DROP", "ConnectionDroppedError", "Faults"]

DROP: Literal["drop"] = "drop"


@dataclass
class Faults:
    """Misbehaviour a test can switch on; the API reads it per request. Reset between tests.

    * ``status_before_payment``: answer this status (e.g. 429 or 503) to the next
      ``status_before_payment_times`` requests (any path but ``/_devnet/``) before anything (no
      key check, no payment check); ``retry_after_seconds`` adds a ``Retry-After`` header.
    * ``fail_after_settle_status``: once, after a payment has been settled on chain, answer
      this status instead of the handler's response. The ``PAYMENT-RESPONSE`` header is
      withheld, so the client cannot tell from the answer that it paid.
    * ``drop_connection_after_settle``: once, after a settlement, send a 200 status line and
      headers (without ``PAYMENT-RESPONSE``) and close the connection without a body.
    * ``answer_delay_seconds``: wait this long before handling every request (any path but
      ``/_devnet/``), as a slow or stuck upstream would; nothing is paid while waiting.
    """

    status_before_payment: int | None = None
    status_before_payment_times: int = 1
    retry_after_seconds: int | None = None
    fail_after_settle_status: int | None = None
    drop_connection_after_settle: bool = False
    answer_delay_seconds: float = 0.0
    _lock: threading.Lock = field(
        default_factory=threading.Lock, init=False, repr=False, compare=False
    )

    def take_status_before_payment(self) -> tuple[int, int | None] | None:
        """Consume one injected pre-payment status: ``(status, retry_after)`` or None."""
        with self._lock:
            status = self.status_before_payment
            if status is None or self.status_before_payment_times <= 0:
                return None
            self.status_before_payment_times -= 1
            if self.status_before_payment_times == 0:
                self.status_before_payment = None
            return status, self.retry_after_seconds

    def take_after_settle(self) -> int | Literal["drop"] | None:
        """Consume the one-shot post-settlement fault: a status, ``"drop"``, or None."""
        with self._lock:
            if self.drop_connection_after_settle:
                self.drop_connection_after_settle = False
                return DROP
            status, self.fail_after_settle_status = self.fail_after_settle_status, None
            return status

    def reset(self) -> None:
        """Switch every fault off."""
        with self._lock:
            self.status_before_payment = None
            self.status_before_payment_times = 1
            self.retry_after_seconds = None
            self.fail_after_settle_status = None
            self.drop_connection_after_settle = False
            self.answer_delay_seconds = 0.0


class ConnectionDroppedError(Exception):
    """Raised to make uvicorn close a connection mid-response (the drop fault)."""
