"""walletd.client."""
