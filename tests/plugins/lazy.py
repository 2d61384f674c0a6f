"""A module imported on first use, so that registering a plugin stays cheap."""

from __future__ import annotations

import importlib
from typing import Any


class LazyModule:
    """Stands in for a module until an attribute is read, then imports it.

    The chain and devnet plugins are registered for every test directory, but web3,
    eth-account and the x402 SDK take over a second to import: with this, a run that
    never uses those fixtures never loads them. Under ``TYPE_CHECKING`` the plugins
    import the real module, so mypy sees its types.
    """

    def __init__(self, name: str) -> None:
        self._name = name

    def __getattr__(self, attr: str) -> Any:
        if attr.startswith("_"):
            # pytest probes every plugin attribute for private markers while it looks
            # for fixtures; those probes must not import the module.
            raise AttributeError(attr)
        return getattr(importlib.import_module(self._name), attr)
