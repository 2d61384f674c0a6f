"""walletd.cli."""
