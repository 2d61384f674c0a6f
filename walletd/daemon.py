"""The composition root: build the ledger, unlock the key, serve gRPC until a signal.

Nothing is built at import time; everything the daemon holds is made here, in
the order that makes failure cheap: settings, database schema check, key
unlock, then the listener. SIGTERM and SIGINT stop it cleanly.
"""

from __future__ import annotations

import logging
import signal
import threading
from pathlib import Path
from types import FrameType

from walletd.config import Settings
from walletd.db import migrate
from walletd.db.engine import make_engines
from walletd.db.ledger import Store
from walletd.keys import keystore
from walletd.keys.signer import LocalSigner
from walletd.rpc.server import TlsFiles, build_server
from walletd.service.wallet import WalletService

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


def run(settings: Settings, passphrase: bytes, *, auto_migrate: bool = False) -> None:
    """Serve until SIGTERM/SIGINT; raises a WalletdError if it cannot start."""
    engines = make_engines(settings.ledger_url)
    try:
        if auto_migrate:
            migrate.upgrade(engines.write)
        migrate.require_current(engines.read)
        signer = LocalSigner(keystore.unlock(settings.keystore_path, passphrase))
        service = WalletService(Store(engines), signer, settings.limits())
        server = build_server(
            service,
            socket_path=settings.socket_path,
            listen=settings.listen or None,
            tls=_tls(settings),
        )
        server.start()
        log.info("walletd serving address=%s on %s", signer.address, server.address)
        _wait_for_signal()
        log.info("walletd stopping")
        server.stop(SHUTDOWN_GRACE_S)
    finally:
        engines.dispose()


def _wait_for_signal() -> None:
    stop = threading.Event()

    def _handle(signum: int, _frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, _handle)
    signal.signal(signal.SIGINT, _handle)
    stop.wait()
