"""walletd: a payment daemon that answers x402 demands within budgets."""

__version__ = "0.1.0"
