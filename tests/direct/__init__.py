"""Direct-transfer demands: walletd sends the USDC itself and returns the hash as proof."""
