"""The composition root: build the ledger, unlock the key, serve gRPC until a signal.

Nothing is built at import time; everything the daemon holds is made here, in
the order that makes failure cheap: settings, database schema check, key
unlock, then the listener. SIGTERM and SIGINT stop it cleanly.

Secrets: ``harden`` (before the passphrase is read) makes the process
non-dumpable with no core file; the passphrase buffer is zeroed as soon as the
key is unlocked, and the key is decrypted into the one mlocked buffer the
signer signs from, wiped at exit.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from walletd.config import Settings
from walletd.db import migrate
from walletd.db.engine import make_engines
from walletd.db.ledger import Store
from walletd.keys import keystore
from walletd.keys.memory import Hardening, harden_process, wipe_bytearray
from walletd.keys.signer import LocalSigner
from walletd.rpc.server import TlsFiles, build_server, max_connections, raise_fd_limit
from walletd.service.approvals import ApprovalBell, ApprovalDesk, SweepLoop
from walletd.service.direct import DirectPayments
from walletd.service.keys import require_current_key
from walletd.service.ports import ChainReader, TransferChain, WalletApi
from walletd.service.reconcile import FundsCache, ReconcileLoop
from walletd.service.wallet import WalletService
from walletd.signals import StopSignals

if TYPE_CHECKING:
    from walletd.metrics import MetricsServer

log = logging.getLogger("walletd.daemon")

SHUTDOWN_GRACE_S = 5.0


def _tls(settings: Settings) -> TlsFiles | None:
    if not settings.tls_cert:
        return None
    return TlsFiles(
        cert=Path(settings.tls_cert),
        key=Path(settings.tls_key),
        client_ca=Path(settings.tls_client_ca) if settings.tls_client_ca else None,
    )


def harden() -> Hardening:
    """Non-dumpable, no core file: call first, before any secret is read."""
    done = harden_process()
    log.debug("process hardening: dumpable=%s core_limit=%s", done.dumpable, done.core_limit)
    return done


def unlock(settings: Settings, passphrase: bytearray) -> LocalSigner:
    """The signer over the one copy of the key; ``passphrase`` is zeroed, whatever happens."""
    try:
        secret = keystore.unlock_secret(settings.keystore_path, passphrase)
    finally:
        wipe_bytearray(passphrase)
    signer = LocalSigner.from_secret(secret)
    if not signer.memory_locked:
        log.warning("the key is not locked in memory (mlock refused): it may reach swap")
    return signer


def run(
    settings: Settings, passphrase: bytearray, *, auto_migrate: bool = False, metrics: str = ""
) -> None:
    """Serve until SIGTERM/SIGINT; raises a WalletdError if it cannot start.

    ``passphrase`` is zeroed once the key is unlocked (or could not be).
    ``metrics`` ([HOST:]PORT) also serves Prometheus metrics there (``walletd.metrics``).
    """
    engines = make_engines(settings.ledger_url)
    metrics_server: MetricsServer | None = None
    signer: LocalSigner | None = None
    try:
        if auto_migrate:
            migrate.upgrade(engines.write)
        migrate.require_current(engines.read)
        signer = unlock(settings, passphrase)
        store = Store(engines)
        require_current_key(store, signer.address)  # not a key rotated away, e.g. on a replica
        chain = chain_opener(settings) if settings.rpc_url else None
        funds = _funds_cache(settings, metrics)
        if funds is not None and chain is not None:  # Pay reads the balance afresh if short
            open_chain = chain
            funds.source = lambda: open_chain().usdc_balance(signer.address)
        direct = DirectPayments(
            store, signer, settings.limits(), settings.proof_headers(), transfer_opener(settings),
            funds=funds, receipt_timeout_s=settings.direct_receipt_timeout_seconds,
        )  # fmt: skip
        bell = ApprovalBell()
        service = WalletService(
            store, signer, settings.limits(), funds=funds, direct=direct, chain=chain,
            approval_max_wait_s=settings.approval_max_wait_seconds, bell=bell,
        )  # fmt: skip
        desk = ApprovalDesk(store, bell)
        api: WalletApi = service
        if metrics:
            api, metrics_server = _serve_metrics(metrics, service, store, funds, signer.address)
        fds = raise_fd_limit()
        log.info("open-file limit %d: at most %d connections", fds, max_connections())
        server = build_server(
            api,
            socket_path=settings.socket_path,
            listen=settings.listen or None,
            tls=_tls(settings),
            approvals=desk,
        )
        signals = StopSignals().install()  # before serving: no Pay is cut off by a default kill
        server.start()
        log.info("walletd serving address=%s on %s", signer.address, server.address)
        stop = threading.Event()
        reconciler = _start_reconciler(settings, store, stop, (signer.address, funds))
        sweeper = SweepLoop(desk, stop)  # expires approvals nobody decided in time
        sweeper.start()
        signals.wait()
        log.info("walletd stopping")
        stop.set()
        server.stop(SHUTDOWN_GRACE_S)
        sweeper.join(SHUTDOWN_GRACE_S)
        if reconciler is not None:
            reconciler.join(SHUTDOWN_GRACE_S)
    finally:
        wipe_bytearray(passphrase)  # when the schema check failed before the unlock
        if metrics_server is not None:
            metrics_server.stop()
        engines.dispose()
        if signer is not None:
            signer.close()


def _funds_cache(settings: Settings, metrics: str) -> FundsCache | None:
    """The reconciler's balance cache (timed, for the lag metric, when metrics are on)."""
    if not settings.rpc_url:
        return None
    if metrics:
        from walletd.metrics import TimedFundsCache

        return TimedFundsCache(settings.low_balance)
    return FundsCache(settings.low_balance)


def _serve_metrics(
    listen: str, service: WalletApi, store: Store, funds: FundsCache | None, address: str
) -> tuple[WalletApi, MetricsServer]:
    """Wrap ``service`` with Pay counters and serve them with the ledger gauges on ``listen``."""
    from walletd import metrics

    api, registry = metrics.instrument(service, store, funds, address)
    return api, metrics.serve(listen, registry)


def chain_opener(settings: Settings) -> Callable[[], ChainReader]:
    """A factory of chain readers for ``settings.rpc_url`` (web3 is imported only when used)."""

    def open_chain() -> ChainReader:
        from walletd.chain.reader import Web3ChainReader

        return Web3ChainReader.open(settings.rpc_url, settings.networks)

    return open_chain


def transfer_opener(settings: Settings) -> Callable[[], TransferChain] | None:
    """A factory of direct-transfer senders, or None without ``rpc_url`` (then they are refused)."""
    if not settings.rpc_url:
        return None

    def open_transfer_chain() -> TransferChain:
        from walletd.chain.reader import Web3ChainReader
        from walletd.chain.sender import Web3TransferSender

        reader = Web3ChainReader.open(settings.rpc_url, settings.networks)
        return Web3TransferSender(reader, settings.max_fee_per_gas_wei)

    return open_transfer_chain


def _start_reconciler(
    settings: Settings,
    store: Store,
    stop: threading.Event,
    funds: tuple[str, FundsCache | None],
) -> ReconcileLoop | None:
    """Follow open payments on chain in the background; without an RPC nothing is released."""
    address, cache = funds
    if not settings.rpc_url or cache is None:
        log.info("no chain rpc_url: payments stay counted as spent until reconciled")
        return None
    loop = ReconcileLoop(
        store, chain_opener(settings), settings.reconcile_interval_seconds,
        settings.expiry_margin_seconds, stop, funds=(address, cache),
    )  # fmt: skip
    loop.start()
    return loop
