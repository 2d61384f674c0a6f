"""Key material in memory: one locked, wipeable buffer, and a process others cannot dump.

Python cannot promise that a secret exists exactly once: ``bytes`` are
immutable, freed objects are not zeroed, and a str from a prompt is interned
wherever CPython likes. What this module does control:

* ``SecretBuffer`` is a small anonymous mapping of its own (so it never moves
  or grows, and shares its page with nothing), ``mlock``ed where the OS allows
  (best effort: a refused lock only logs), and zeroed by ``wipe`` (also when
  it is garbage-collected). The daemon decrypts
  the wallet key straight into one, and the signer signs from it.
* ``harden_process`` makes the process non-dumpable (``PR_SET_DUMPABLE`` 0: no
  core file, no ptrace or /proc/<pid>/mem by other unprivileged processes of
  the same user) and sets the core-file limit to 0.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import logging
import mmap
import resource
import sys
from dataclasses import dataclass

log = logging.getLogger(__name__)

PR_SET_DUMPABLE = 4
PR_GET_DUMPABLE = 3

_libc: ctypes.CDLL | None = None


def _c() -> ctypes.CDLL | None:
    """The C library, or None where ctypes cannot find one."""
    global _libc
    if _libc is None:
        name = ctypes.util.find_library("c")
        if name is None:
            return None
        _libc = ctypes.CDLL(name, use_errno=True)
    return _libc


class SecretBuffer:
    """``size`` bytes of key material that stay at one address until ``wipe``.

    ``view()`` is a memoryview of it, for APIs that take a buffer (cffi,
    cryptography's ``update_into``); never turn it into ``bytes``.
    """

    __slots__ = ("_buf", "_pin", "locked", "size")

    def __init__(self, size: int) -> None:
        self.size = size
        # Its own anonymous mapping: page-aligned, never moved or resized, and not
        # shared with other objects, so munlock on wipe cannot unlock anything else.
        self._buf = mmap.mmap(-1, max(size, mmap.PAGESIZE))
        self._pin = (ctypes.c_char * size).from_buffer(self._buf)
        self.locked = _mlock(ctypes.addressof(self._pin), size)

    def view(self) -> memoryview:
        """A writable view of the whole buffer."""
        return memoryview(self._buf)[: self.size]

    def wipe(self) -> None:
        """Zero the buffer (and unlock it)."""
        ctypes.memset(ctypes.addressof(self._pin), 0, self.size)
        if self.locked:
            libc = _c()
            if libc is not None:
                libc.munlock(
                    ctypes.c_void_p(ctypes.addressof(self._pin)), ctypes.c_size_t(self.size)
                )
            self.locked = False

    def __del__(self) -> None:
        with contextlib.suppress(Exception):  # at interpreter exit ctypes may be gone
            self.wipe()

    def __repr__(self) -> str:
        return f"SecretBuffer(size={self.size}, locked={self.locked})"

    def __reduce__(self) -> tuple[object, ...]:
        raise TypeError("SecretBuffer holds key material and cannot be pickled")


def _mlock(address: int, size: int) -> bool:
    """Lock the pages of [address, address + size) in RAM; False (logged) if refused."""
    libc = _c()
    if libc is None or not sys.platform.startswith(("linux", "darwin", "freebsd")):
        return False
    if libc.mlock(ctypes.c_void_p(address), ctypes.c_size_t(size)) != 0:
        errno = ctypes.get_errno()
        log.warning("could not mlock key material (errno %d); it may be swapped out", errno)
        return False
    return True


def wipe_bytearray(buf: bytearray) -> None:
    """Zero a bytearray in place (no copy, no resize)."""
    if buf:
        ctypes.memset((ctypes.c_char * len(buf)).from_buffer(buf), 0, len(buf))


@dataclass(frozen=True)
class Hardening:
    """What ``harden_process`` achieved, for the start log."""

    dumpable: int | None
    core_limit: int | None


def harden_process() -> Hardening:
    """Mark the process non-dumpable and set RLIMIT_CORE to 0, as far as the OS allows.

    Call before any secret is read. Best effort: each step that fails is logged,
    and the result says what holds.
    """
    core: int | None = None
    try:
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
        core = resource.getrlimit(resource.RLIMIT_CORE)[1]
    except (OSError, ValueError) as exc:
        log.warning("could not set the core-file limit to 0: %s", exc)
    dumpable: int | None = None
    libc = _c()
    if libc is not None and sys.platform.startswith("linux"):
        if libc.prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) != 0:
            log.warning("prctl(PR_SET_DUMPABLE, 0) failed (errno %d)", ctypes.get_errno())
        dumpable = int(libc.prctl(PR_GET_DUMPABLE, 0, 0, 0, 0))
    return Hardening(dumpable=dumpable, core_limit=core)
