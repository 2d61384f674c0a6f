"""walletd.keys."""
