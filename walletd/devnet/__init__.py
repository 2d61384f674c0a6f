"""walletd.devnet."""
