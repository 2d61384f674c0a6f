"""walletd.service."""
