"""(a) The anchor: the reference x402 client making payment headers in-process.

It decodes each PAYMENT-REQUIRED value, signs with eth-account (coincurve
backend) and encodes the PAYMENT-SIGNATURE header: no ledger, no budget, no IPC.
"""

from __future__ import annotations

import time

from eth_account import Account
from x402 import x402ClientSync
from x402.http.utils import decode_payment_required_header, encode_payment_signature_header
from x402.mechanisms.evm import EthAccountSigner
from x402.mechanisms.evm.exact import ExactEvmClientScheme

from bench.stats import Result
from tests.plugins.daemon import demand_header


def run(n: int) -> Result:
    """Make ``n`` headers in one thread; return per-header latencies."""
    client = x402ClientSync()
    client.register("eip155:8453", ExactEvmClientScheme(EthAccountSigner(Account.create())))
    client.set_spend_controls(False)
    header = demand_header()
    for _ in range(min(50, n)):
        encode_payment_signature_header(
            client.create_payment_payload(decode_payment_required_header(header))
        )
    latencies = []
    cpu = time.process_time()
    start = time.perf_counter()
    for _ in range(n):
        t0 = time.perf_counter_ns()
        payload = client.create_payment_payload(decode_payment_required_header(header))
        encode_payment_signature_header(payload)
        latencies.append((time.perf_counter_ns() - t0) / 1000)
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    return Result("(a) anchor: x402 SDK client, in-process", n, seconds, latencies, cpu)
