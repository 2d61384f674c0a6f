"""``python -m walletd.devnet``: run a local paid API and paid MCP server until stopped.

anvil + test USDC + facilitator, the paid HTTP API and the paid MCP server (streamable
HTTP) beside it.

Prints where everything listens, then waits for Ctrl-C or SIGTERM and shuts down cleanly.
Everything binds 127.0.0.1 on free ports; the keys involved are anvil's public dev keys.

``python -m walletd.devnet sample-demand [--url URL] [--amount USD] [--pay-to ADDRESS]``
only prints a sample PAYMENT-REQUIRED value like the paid API's (see walletd.devnet.sample).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from walletd.devnet.chain import mint
from walletd.devnet.servers import Devnet
from walletd.signals import StopSignals

_FUND_AMOUNT = 10_000_000  # 10 USDC in atomic units (6 decimals)


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m walletd.devnet", description=__doc__)
    parser.add_argument("--pay-to", help="address that receives payments (default: dev account 3)")
    parser.add_argument(
        "--api-key", action="append", default=[], help="an API key that bypasses payment"
    )
    parser.add_argument(
        "--fund", action="append", default=[], metavar="ADDRESS", help="mint 10 test USDC to it"
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Start the devnet, print its coordinates, run until told to stop."""
    given = list(sys.argv[1:] if argv is None else argv)
    if given[:1] == ["sample-demand"]:
        from walletd.devnet.sample import main as sample_main

        return sample_main(given[1:])
    args = _parse_args(given)
    # Installed before anything starts: a signal during start-up still shuts down in order
    # (the default SIGTERM action would kill the process and orphan anvil).
    signals = StopSignals().install()
    with Devnet(pay_to=args.pay_to, api_keys=args.api_key) as devnet:
        for address in args.fund:
            mint(devnet.w3, address, _FUND_AMOUNT)
        api = devnet.api
        print(f"rpc_url          {devnet.rpc_url}  (chain id 8453, USDC at Base's address)")
        print(f"facilitator_url  {api.facilitator_url}  (signer {api.facilitator_address})")
        print(f"api_url          {api.base_url}  (POST /v1/chat/completions $0.003, ", end="")
        print("POST /v1/images/generations $0.02, GET /v1/models free)")
        print(f"stats_url        {api.base_url}/_devnet/stats")
        print(
            f"mcp_url          {devnet.mcp.url}  (streamable HTTP; tools weather $0.001, ", end=""
        )
        print("research $0.01, ping free)")
        print(f"pay_to           {api.pay_to}")
        for address in args.fund:
            print(f"funded           {address}  ({_FUND_AMOUNT} atomic USDC)")
        print("running; Ctrl-C or SIGTERM stops", flush=True)
        signals.wait()
    print("stopped")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
