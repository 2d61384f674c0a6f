"""Shared fixtures; each area's fixtures live in its own plugin module."""

pytest_plugins = [
    "tests.plugins.chain",
    "tests.plugins.devnet",
    "tests.plugins.daemon",
    "tests.plugins.adversarial",
    "tests.plugins.pg",
]
