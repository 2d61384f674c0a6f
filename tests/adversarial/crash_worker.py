"""A caller process for the crash loop (tests/adversarial/crash.py): threads pay, retrying across kills.

Run as ``python -m tests.adversarial.crash_worker SPEC_JSON``; the spec names the
generation file (``GEN SOCKET`` of the daemon now serving, rewritten by the
harness after every restart), the clients (name and token file), the threads
per client, the stop file, the output file and the seed.

Each thread pays fresh idempotency keys ``CLIENT-T-I`` with a seeded amount
until the stop file appears, then finishes the key it holds. A call the daemon
did not answer (``DaemonUnavailableError``: UNAVAILABLE or DEADLINE_EXCEEDED,
or a call cancelled because its daemon was replaced) is retried with the *same*
key and the same demand: the client contract is that a retry under one key
returns the same header. Every answer (a receipt, or the refusal's reason) is
written to the output file as one JSON line and flushed at once, so the harness
sees everything a client ever saw.

A watcher thread follows the generation file and, when a new daemon is
announced, gives every thread a new channel and closes the old one, which
cancels calls still waiting on the dead daemon. Without it a call started
while the daemon was down waits out gRPC's reconnect backoff (1 s, then
longer), which would make every round slow without testing anything more.
"""

from __future__ import annotations

import json
import random
import sys
import threading
import time
from pathlib import Path
from typing import Any

from tests.adversarial.demands import b64, entry, v2_doc
from walletd.client import DaemonUnavailableError, WalletClient
from walletd.errors import RefusedError, WalletdError

URL = "http://127.0.0.1:9/v1/chat/completions"
CALL_TIMEOUT_S = 30.0
"""Per call; generous, because a 2-core machine under load can be slow to commit."""
FIRST_DAEMON_S = 120.0
"""How long a caller waits for the first daemon to be announced."""
MAX_RETRIES = 500
"""Retries of one key before the thread gives up (recorded; the harness fails the run)."""


def demand_for(amount: int) -> str:
    """The PAYMENT-REQUIRED value the callers send for ``amount`` (the replay sends it again)."""
    return b64(v2_doc(entry(str(amount))))


def amount_for(rng: random.Random) -> int:
    """A demand amount in atomic units: 1,000-5,999 (so budgets are hit at odd boundaries)."""
    return rng.randint(1_000, 5_999)


def read_gen(path: Path) -> tuple[int, str]:
    """The generation number and socket path of the daemon now serving (0, "" before any)."""
    try:
        gen, socket = path.read_text().split()
    except (OSError, ValueError):
        return 0, ""
    return int(gen), socket


class Channels:
    """One WalletClient per client for the daemon now serving; replaced when a new one is."""

    def __init__(self, gen_file: Path, tokens: dict[str, Path]) -> None:
        self._gen_file, self._tokens = gen_file, tokens
        self._lock = threading.Condition()
        deadline = time.monotonic() + FIRST_DAEMON_S  # started while the first daemon boots
        while (found := read_gen(gen_file))[0] == 0 and time.monotonic() < deadline:
            time.sleep(0.01)
        self.gen, socket = found
        self._clients = self._open(socket)
        self._closed = threading.Event()
        self._watcher = threading.Thread(target=self._watch, daemon=True)
        self._watcher.start()

    def _open(self, socket: str) -> dict[str, WalletClient]:
        return {
            name: WalletClient(socket=socket, token_file=token, timeout=CALL_TIMEOUT_S)
            for name, token in self._tokens.items()
        }

    def current(self, name: str) -> tuple[int, WalletClient]:
        with self._lock:
            return self.gen, self._clients[name]

    def wait_newer(self, gen: int, timeout: float = 3.0) -> None:
        """Wait until a daemon newer than ``gen`` is announced, or ``timeout``."""
        with self._lock:
            self._lock.wait_for(lambda: self.gen > gen, timeout)

    def _watch(self) -> None:
        while not self._closed.wait(0.01):
            gen, socket = read_gen(self._gen_file)
            if gen <= self.gen:
                continue
            fresh = self._open(socket)
            with self._lock:
                old, self._clients, self.gen = self._clients, fresh, gen
                self._lock.notify_all()
            for client in old.values():
                client.close()  # cancels calls still waiting on the dead daemon

    def close(self) -> None:
        self._closed.set()
        self._watcher.join()
        for client in self._clients.values():
            client.close()


class Output:
    """The JSON-lines file the harness reads; one line per answer, flushed at once."""

    def __init__(self, path: Path) -> None:
        self._file = path.open("a", encoding="utf-8")
        self._lock = threading.Lock()

    def write(self, doc: dict[str, Any]) -> None:
        line = json.dumps(doc, separators=(",", ":"))
        with self._lock:
            self._file.write(line + "\n")
            self._file.flush()

    def close(self) -> None:
        self._file.close()


def _pay_until_answered(channels: Channels, name: str, key: str, amount: int) -> dict[str, Any]:
    """Pay one key, retrying it across kills; the answer as a JSON-able dict."""
    demand = demand_for(amount)
    doc: dict[str, Any] = {"key": key, "client": name, "amount": amount, "retries": 0}
    while True:
        gen, wallet = channels.current(name)
        doc["gen"] = gen  # which daemon answered (one per round between kills)
        try:
            r = wallet.pay(key, "POST", URL, payment_required=demand)
        except RefusedError as err:
            detail = err.details.get("window") or err.details.get("rule")
            doc["outcome"] = f"{err.reason}/{detail}" if detail else err.reason
        except (DaemonUnavailableError, WalletdError, ValueError) as err:
            replaced = channels.gen > gen  # our channel was closed for a newer daemon
            message = err.message if isinstance(err, WalletdError) else str(err)
            unanswered = isinstance(err, DaemonUnavailableError) or (
                replaced and (isinstance(err, ValueError) or "CANCELLED" in message)
            )
            if not unanswered:
                reason = err.reason if isinstance(err, WalletdError) else type(err).__name__
                doc.update(outcome=f"ERROR:{reason}", message=message[:300])
                return doc
            doc["retries"] += 1
            if doc["retries"] > MAX_RETRIES:
                doc["outcome"] = "GAVE_UP"
                return doc
            channels.wait_newer(gen)
            continue
        else:
            doc.update(
                outcome="ACCEPTED", id=r.payment_id, header=r.header_value,
                reused=r.reused, paid=r.amount,
            )  # fmt: skip
        return doc


def run_thread(spec: dict[str, Any], channels: Channels, name: str, t: int, out: Output) -> None:
    stop = Path(spec["stop_file"])
    rng = random.Random(f"{spec['seed']}/{name}/{t}")
    i = 0
    while not stop.exists():
        out.write(_pay_until_answered(channels, name, f"{name}-{t}-{i}", amount_for(rng)))
        i += 1


def main() -> None:
    spec = json.loads(sys.argv[1])
    tokens = {name: Path(token) for name, token in spec["clients"]}
    out = Output(Path(spec["out"]))
    channels = Channels(Path(spec["gen_file"]), tokens)
    errors: list[str] = []

    def guarded(name: str, t: int) -> None:
        try:
            run_thread(spec, channels, name, t, out)
        except BaseException as exc:  # reported to the harness, which fails the run
            errors.append(f"{name} thread {t}: {type(exc).__name__}: {exc}")

    threads = [
        threading.Thread(target=guarded, args=(name, t))
        for name in tokens
        for t in range(spec["threads"])
    ]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    channels.close()
    out.close()
    print(json.dumps({"errors": errors}))
    sys.exit(1 if errors else 0)


if __name__ == "__main__":
    main()
