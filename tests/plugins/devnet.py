"""Fixtures: devnet (filled in by its owner)."""
