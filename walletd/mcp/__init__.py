"""walletd.mcp: ``walletd mcp``, an MCP server through which an agent pays.

It is a client of the daemon, like any service: it holds the agent's own client
token (``WALLETD_TOKEN_FILE``), never a key, and imports nothing of the daemon's
database, keys, service layer or RPC server (an import-linter contract checks
it). Built on the official MCP SDK (``mcp`` 1.x, ``walletd[mcp]``):

* ``gateway``: the gateway tools (paid_fetch, chat/image/models, wallet_budget,
  wallet_payments);
* ``proxy``: an upstream paid MCP server's tools, re-exposed unchanged, each paid
  call paid through the daemon;
* ``server``: stdio or streamable HTTP on loopback;
* ``_results``: what a paid result and a tool error say.
"""
