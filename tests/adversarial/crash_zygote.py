"""Fast restarts for the crash loop: a parent that did ``walletd serve``'s imports, forking daemons.

Run as ``python -m tests.adversarial.crash_zygote SERVE_ARGS_JSON LOG_PATH``. A
cold ``python -m walletd serve`` spends most of its start importing its
dependencies (seconds on a busy 2-core machine), which would make 20 kills per
backend too slow for CI. This parent imports them once and, for each request,
forks a *new* process that runs the ``walletd serve`` CLI from the top: it
parses the arguments, reads the config and passphrase, opens the ledger the
kill left behind, checks its schema, unlocks the key, removes the stale socket
and binds a new one. Nothing but imported code is shared with the parent, which
never opens a ledger, a key, a socket or a gRPC object.

Commands on stdin, one answer line each on stdout:
``fork`` → the new daemon's pid; ``poll PID`` → ``running`` or its exit code;
``wait PID`` → its exit code (blocks). A signal death is a negative code, as
in ``subprocess``. End of stdin ends the parent.
"""

from __future__ import annotations

import json
import os
import sys

import walletd.cli
import walletd.daemon
import walletd.keys.passphrase
import walletd.logs
import walletd.rpc.server  # the imports a cold start pays for (the package is used below)


def _child(args: list[str], log_path: str) -> None:
    """Become ``walletd serve ARGS`` with output to the daemon log; never returns."""
    code = 1
    try:
        devnull = os.open(os.devnull, os.O_RDONLY)
        log = os.open(log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        os.dup2(devnull, 0)
        os.dup2(log, 1)
        os.dup2(log, 2)
        walletd.cli.main(args=args, prog_name="walletd")
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except BaseException as exc:
        print(f"crash_zygote child: {type(exc).__name__}: {exc}", file=sys.stderr)
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def main() -> None:
    args, log_path = json.loads(sys.argv[1]), sys.argv[2]
    done: dict[int, int] = {}

    def reply(text: str) -> None:
        sys.stdout.write(text + "\n")
        sys.stdout.flush()

    for line in sys.stdin:
        cmd, _, arg = line.strip().partition(" ")
        if cmd == "fork":
            pid = os.fork()
            if pid == 0:
                _child(args, log_path)
            reply(str(pid))
        elif cmd in ("poll", "wait"):
            pid = int(arg)
            if pid not in done:
                got, status = os.waitpid(pid, os.WNOHANG if cmd == "poll" else 0)
                if got:
                    done[pid] = os.waitstatus_to_exitcode(status)
            reply(str(done[pid]) if pid in done else "running")
        else:
            reply(f"error: unknown command {cmd!r}")


if __name__ == "__main__":
    main()
