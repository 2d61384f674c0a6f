"""Shared fixtures, markers and Hypothesis profiles; each area's fixtures live in a plugin.

The plugins are registered here so that their fixtures reach every test directory, and
each imports its heavy packages (web3, the x402 SDK, SQLAlchemy) only when a fixture is
used, so collecting a directory that needs none of them stays quick.

Markers are given by what a test uses, so they stay consistent as tests are added:

* ``chain``: the test uses anvil (a fixture of ``tests/plugins/chain.py``, directly or
  through another fixture such as ``devnet_api``); tests that start their own anvil say so;
* ``postgres``: the test uses the PostgreSQL server (``pg_url``, ``pg_server_url``, or the
  ``[postgres]`` case of ``ledger_url``);
* ``slow``: the test starts the real daemon (``DAEMON_FIXTURES``: seconds each, more on a
  loaded machine), is end-to-end (``tests/e2e``: real processes), or is marked by hand
  because it takes more than a few seconds (a CLI subprocess costs about one).

``make test-fast`` deselects all three. A test may run for 60 s (pyproject.toml); the few
that need longer carry ``@pytest.mark.timeout(...)``, and a ``slow`` test without one
gets ``SLOW_TIMEOUT``.

Hypothesis runs the profile named by ``WALLETD_HYPOTHESIS_PROFILE``: ``full`` (the
default, and CI's) keeps each test's own ``max_examples``; ``fast`` caps every property at
``FAST_EXAMPLES`` examples, for the fast lane.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import settings

pytest_plugins = [
    "tests.plugins.chain",
    "tests.plugins.devnet",
    "tests.plugins.daemon",
    "tests.plugins.adversarial",
    "tests.plugins.pg",
]

POSTGRES_FIXTURES = frozenset({"pg_server_url", "pg_url"})
DAEMON_FIXTURES = frozenset(
    {"wallet_home", "daemon", "module_wallet_home", "module_daemon", "pay_daemon"}
)
E2E = Path(__file__).parent / "e2e"
SLOW_TIMEOUT = 300
HYPOTHESIS_ENV = "WALLETD_HYPOTHESIS_PROFILE"
FAST_EXAMPLES = 10

settings.register_profile("full", deadline=None)
settings.register_profile("fast", deadline=None, max_examples=FAST_EXAMPLES)
PROFILE = os.environ.get(HYPOTHESIS_ENV, "full")
settings.load_profile(PROFILE)


def _cap_examples(item: pytest.Item) -> None:
    """Under the fast profile, cap a property's own ``@settings(max_examples=...)`` too."""
    test = getattr(item, "obj", None)
    own = getattr(test, "_hypothesis_internal_use_settings", None)
    if own is not None and own.max_examples > FAST_EXAMPLES:
        test._hypothesis_internal_use_settings = settings(own, max_examples=FAST_EXAMPLES)  # type: ignore[union-attr]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark tests by the fixtures they use; give slow tests their timeout; cap examples."""
    from tests.plugins.chain import CHAIN_FIXTURES  # registered by now (pytest_plugins)

    for item in items:
        used = frozenset(getattr(item, "fixturenames", ()))
        if used & CHAIN_FIXTURES:
            item.add_marker(pytest.mark.chain)
        if used & POSTGRES_FIXTURES:
            item.add_marker(pytest.mark.postgres)
        if used & DAEMON_FIXTURES or item.path.is_relative_to(E2E):
            item.add_marker(pytest.mark.slow)
        if item.get_closest_marker("slow") and not item.get_closest_marker("timeout"):
            item.add_marker(pytest.mark.timeout(SLOW_TIMEOUT))
        if PROFILE == "fast":
            _cap_examples(item)
