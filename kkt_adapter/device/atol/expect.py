"""What each receipt is expected to become on an ATOL register, written before it is printed.

Before a receipt's task is sent, the FN and the FD it should get (the last FD seen plus one)
and its total are written here, durably (``<data_dir>/atol-expected.sqlite``). After a crash or
an unanswered task, and when the web server no longer knows the task, ``AtolDevice`` reads
that one FD from the FN's archive and compares its tag 1192 and total, instead of guessing
(I2). If another document took that FD, the archive is searched by tag 1192.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from pathlib import Path

from kkt_adapter.sqlite import connect

FILE = "atol-expected.sqlite"
KEEP_SECONDS = 7 * 86_400  # expectations of older receipts are pruned


@dataclass(frozen=True)
class Expected:
    fn: str
    fd: int
    total: int


class Expectations:
    """The durable record of expected FN/FD per receipt (see the module docstring)."""

    def __init__(self, data_dir: Path) -> None:
        data_dir.mkdir(parents=True, exist_ok=True)
        self._conn = connect(data_dir / FILE)
        self._conn.execute(
            "CREATE TABLE IF NOT EXISTS expected (receipt_id TEXT PRIMARY KEY, fn TEXT NOT NULL,"
            " fd INTEGER NOT NULL, total INTEGER NOT NULL, at INTEGER NOT NULL)"
        )
        self._lock = threading.Lock()

    def write(self, receipt_id: str, expected: Expected) -> None:
        """Record (durably: WAL, synchronous=FULL) before the task is sent."""
        now = int(time.time())
        with self._lock:
            self._conn.execute(
                "INSERT INTO expected (receipt_id, fn, fd, total, at) VALUES (?, ?, ?, ?, ?)"
                " ON CONFLICT (receipt_id) DO UPDATE SET fn = excluded.fn, fd = excluded.fd,"
                " total = excluded.total, at = excluded.at",
                (receipt_id, expected.fn, expected.fd, expected.total, now),
            )
            self._conn.execute("DELETE FROM expected WHERE at < ?", (now - KEEP_SECONDS,))

    def read(self, receipt_id: str) -> Expected | None:
        with self._lock:
            row = self._conn.execute(
                "SELECT fn, fd, total FROM expected WHERE receipt_id = ?", (receipt_id,)
            ).fetchone()
        return None if row is None else Expected(str(row[0]), int(row[1]), int(row[2]))

    def close(self) -> None:
        with self._lock:
            self._conn.close()
