"""Fixtures: chain (filled in by its owner)."""
