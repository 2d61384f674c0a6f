"""Measure what one keystore unlock costs, to record the "default KDF >= 100 ms" figure.

Run: ``.venv/bin/python bench/kdf_cost.py``. Prints the median of 5 scrypt
derivations for the default and the fast (test-only) parameters, and the cost
of one LocalSigner signature for comparison. Tests never assert timings; this is
the place to look at them.
"""

from __future__ import annotations

import os
import statistics
import sys
import time
import timeit

from walletd.keys.keystore import KdfParams, generate_private_key
from walletd.keys.signer import LocalSigner

RUNS = 5
FLOOR_MS = 100.0


def median_derive_ms(kdf: KdfParams, runs: int = RUNS) -> float:
    """Median wall time of one scrypt derivation, in milliseconds."""
    times = []
    for _ in range(runs):
        salt = os.urandom(16)
        start = time.perf_counter()
        kdf.derive(b"benchmark passphrase", salt)
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def sign_us(count: int = 20_000) -> float:
    """Mean time of one LocalSigner.sign_hash, in microseconds."""
    signer = LocalSigner(generate_private_key())
    digest = os.urandom(32)
    return timeit.timeit(lambda: signer.sign_hash(digest), number=count) / count * 1e6


def describe(name: str, kdf: KdfParams) -> str:
    """One line naming the KDF parameters and the memory they take."""
    memory_mib = 128 * kdf.r * (1 << kdf.log2_n) / (1 << 20)
    return f"{name}: scrypt N=2**{kdf.log2_n} r={kdf.r} p={kdf.p} ({memory_mib:.0f} MiB)"


def main() -> int:
    """Print the KDF costs; non-zero when the default is below the floor."""
    default_ms = median_derive_ms(KdfParams.DEFAULT)
    fast_ms = median_derive_ms(KdfParams.FAST)
    verdict = "ok" if default_ms >= FLOOR_MS else f"BELOW the {FLOOR_MS:.0f} ms floor"
    print(
        f"{describe('default', KdfParams.DEFAULT)}: median of {RUNS} = {default_ms:.1f} ms "
        f"({verdict})"
    )
    print(f"{describe('fast', KdfParams.FAST)}: median of {RUNS} = {fast_ms:.2f} ms")
    print(f"LocalSigner.sign_hash: {sign_us():.1f} us per signature")
    return 0 if default_ms >= FLOOR_MS else 1


if __name__ == "__main__":
    sys.exit(main())
