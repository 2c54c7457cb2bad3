"""One KKT, several adapter processes: a cross-process gate around its use.

Two ``kkt-adapter serve`` processes on one data dir (a hot standby on the same terminal) share
the KKT. The gate is an ``flock`` on ``<data_dir>/kkt-device.lock``: whoever holds it prints,
and takes the receipt's hybrid-logical-clock stamp before letting go. The last stamp handed out
lives in the lock file itself, so the next holder, in whichever process, stamps above it: the
stamps of one FN's documents rise with their FD numbers (promise I5).
"""

from __future__ import annotations

import fcntl
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from kkt_adapter.hlc import HlcStamp, HybridClock

LOCK_FILE = "kkt-device.lock"
_STAMP_BYTES = 128  # fixed width: the stamp is rewritten in place


class DeviceGate:
    """Cross-process (``flock``) and in-process (a lock) exclusion around the KKT."""

    def __init__(self, data_dir: Path) -> None:
        data_dir.mkdir(parents=True, exist_ok=True)
        self.path = data_dir / LOCK_FILE
        self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        self._local = threading.Lock()  # flock is per open file: threads need their own lock

    @contextmanager
    def held(self) -> Iterator[None]:
        with self._local:
            fcntl.flock(self._fd, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(self._fd, fcntl.LOCK_UN)

    def stamp(self, clock: HybridClock) -> HlcStamp:
        """A stamp above every stamp any process took under the gate (call it while held).

        Not fsync'd: the stamp also lands in the receipt's row, from which the clock is
        restored after a restart.
        """
        text = os.pread(self._fd, _STAMP_BYTES, 0).rstrip(b"\0 \n").decode()
        try:
            last = HlcStamp.parse(text) if text else None
        except ValueError:
            last = None  # a torn write after a crash: the buffer's own stamps still bound it
        stamp = clock.merge(last) if last is not None else clock.now()
        os.pwrite(self._fd, str(stamp).encode().ljust(_STAMP_BYTES, b" "), 0)
        return stamp

    def close(self) -> None:
        os.close(self._fd)
