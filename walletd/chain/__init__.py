"""The chain adapter: the only walletd package (besides the devnet tools) that imports web3.

``reader.Web3ChainReader`` implements ``walletd.service.ports.ChainReader`` and
``sender.Web3ChainSender`` implements ``ChainSender``. Every failure of the node
surfaces as ``walletd.errors.ChainError`` so callers fail closed.
"""

from __future__ import annotations
