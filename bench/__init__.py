"""walletd benchmarks: `python -m bench` prints every figure, as ratios against the anchor."""
