"""walletd.domain."""
