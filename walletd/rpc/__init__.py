"""walletd.rpc."""
