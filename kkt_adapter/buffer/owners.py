"""Who owns a row: each process on a data dir holds a lock file while it lives.

A receipt is ``accepted`` while one process prints it. If that process dies (``kill -9``, power
loss), the row must be settled from the KKT's log; while it lives, nobody else may touch the
row (it may be printing right now). So each process claims an owner id at start-up and holds an
exclusive ``flock`` on ``<data_dir>/owners/<owner>.lock`` for its lifetime: the kernel releases
the lock when the process dies, however it dies, and another process tests liveness by trying
to lock the same file. Rows record their owner (``receipts.owner``); the sqlite sync lease
records it as its holder, so a restarted process recognizes a dead leader's lease at once.

Written by hand on ``fcntl.flock`` (as the device gate is): the liveness of a process on this
host is exactly what an advisory lock gives, and no library adds to it.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import secrets
import socket
from pathlib import Path

OWNERS_DIR = "owners"


class Owners:
    """This process's owner id on a data dir, and the liveness of the others'."""

    def __init__(self, data_dir: Path, node: str) -> None:
        self._dir = data_dir / OWNERS_DIR
        self._node = node
        self._fd: int | None = None
        self.me = ""

    def claim(self) -> str:
        """Take an owner id for this process and hold its lock until ``release``."""
        self._dir.mkdir(parents=True, exist_ok=True)
        self._sweep()
        self.me = f"{self._node}:{_host()}:{os.getpid()}:{secrets.token_hex(3)}"
        # Locked before it gets its name, so nobody can find it unlocked and sweep it away.
        staging = self._dir / f".{self.me}.new"
        fd = os.open(staging, os.O_RDWR | os.O_CREAT, 0o600)
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        os.replace(staging, self._path(self.me))
        self._fd = fd
        return self.me

    def release(self) -> None:
        if self._fd is None:
            return
        with contextlib.suppress(OSError):
            self._path(self.me).unlink()
        os.close(self._fd)
        self._fd = None

    def alive(self, owner: str | None) -> bool:
        """True while the process that claimed ``owner`` holds its lock (this one included).

        An owner on another host (a Redis lease holder elsewhere), or a name that is no
        owner id, cannot be tested from here and counts as alive; no owner at all is dead.
        """
        if not owner:
            return False
        if owner == self.me:
            return True
        parts = owner.split(":")
        if len(parts) < 4 or parts[-3] != _host():
            return True
        path = self._path(owner)
        try:
            fd = os.open(path, os.O_RDWR)
        except FileNotFoundError:
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        finally:
            os.close(fd)  # closing drops the shared lock we may have taken
        return False

    def _sweep(self) -> None:
        """Remove the lock files of dead owners (they only tell that an owner is gone)."""
        for path in self._dir.glob("*.lock"):
            owner = path.name.removesuffix(".lock")
            if not self.alive(owner):
                with contextlib.suppress(OSError):
                    path.unlink()

    def _path(self, owner: str) -> Path:
        return self._dir / f"{owner}.lock"


def _host() -> str:
    return socket.gethostname().replace(":", "_")


def live_owners(data_dir: Path) -> list[str]:
    """The owners whose processes hold the data dir now (``kkt-adapter serve`` running)."""
    owners = Owners(data_dir, "")
    found = []
    for path in sorted((data_dir / OWNERS_DIR).glob("*.lock")):
        owner = path.name.removesuffix(".lock")
        if owners.alive(owner):
            found.append(owner)
    return found
