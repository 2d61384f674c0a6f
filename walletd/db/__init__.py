"""walletd.db."""
