"""Group commit for SQLite, for asyncio callers.

Every write is a function of a connection. One writer thread runs the writes that queued up
while the previous commit was being fsync'd in one transaction (each in its own savepoint, so
one failing write does not undo its neighbours), commits once, then resolves every caller.
Each caller's write is durable when its await returns (promise I1), and under concurrency one
fsync serves many receipts.

Written by hand because no maintained library does group commit for SQLite: aiosqlite runs one
connection on one thread and commits per call. Reads run on a small pool of read-only
connections (WAL lets them proceed beside the writer), so no SQLite call blocks the event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import sqlite3
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from kkt_adapter.buffer.schema import configure
from kkt_adapter.buffer.schema import migrate as migrate_buffer
from kkt_adapter.errors import StorageUnavailable

T = TypeVar("T")
Write = Callable[[sqlite3.Connection], Any]

log = logging.getLogger(__name__)

MAX_BATCH = 256


@dataclass
class _Job:
    write: Write
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[Any]


class Database:
    """A SQLite file with one group-committing writer thread and a pool of readers."""

    def __init__(
        self,
        path: Path,
        *,
        migrate: Callable[[sqlite3.Connection], int] = migrate_buffer,
        name: str = "buffer",
        readers: int = 2,
    ) -> None:
        self.path = path
        self._migrate = migrate
        self._name = name
        self._queue: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._writer: threading.Thread | None = None
        self._readers = ThreadPoolExecutor(readers, thread_name_prefix=f"{name}-read")
        self._local = threading.local()
        self._write_conn: sqlite3.Connection | None = None

    def open(self) -> int:
        """Open, migrate and start the writer; returns the schema version found."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        conn = connect(self.path)
        try:
            found = self._migrate(conn)
        except BaseException:
            conn.close()
            raise
        self._write_conn = conn
        self._writer = threading.Thread(
            target=self._run_writer, name=f"{self._name}-writer", daemon=True
        )
        self._writer.start()
        return found

    def close(self) -> None:
        """Finish queued writes, then stop the writer and close connections."""
        if self._writer is not None:
            self._queue.put(None)
            self._writer.join()
            self._writer = None
        self._readers.shutdown(wait=True)
        if self._write_conn is not None:
            self._write_conn.close()
            self._write_conn = None

    async def write(self, write: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``write`` in a transaction; returns once it is committed (fsync'd)."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self._queue.put(_Job(write, loop, future))
        return await future

    async def read(self, read: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``read`` on a reader connection off the event loop."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._readers, self._run_read, read)

    def _run_read(self, read: Callable[[sqlite3.Connection], T]) -> T:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = connect(self.path)
            self._local.conn = conn
        conn.execute("BEGIN")
        try:
            return read(conn)
        finally:
            conn.execute("COMMIT")

    def _run_writer(self) -> None:
        assert self._write_conn is not None
        conn = self._write_conn
        while True:
            first = self._queue.get()
            if first is None:
                return
            batch = [first]
            while len(batch) < MAX_BATCH:
                try:
                    job = self._queue.get_nowait()
                except queue.Empty:
                    break
                if job is None:
                    self._queue.put(None)  # stop after this batch
                    break
                batch.append(job)
            self._commit_batch(conn, batch)

    def _commit_batch(self, conn: sqlite3.Connection, batch: list[_Job]) -> None:
        results: list[tuple[bool, Any]] = []
        try:
            conn.execute("BEGIN IMMEDIATE")
            for job in batch:
                results.append(_run_in_savepoint(conn, job.write))
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            log.error("buffer commit failed: %s", exc)
            _rollback(conn)
            failure = StorageUnavailable(f"the buffer could not be written: {exc}", retry_after=5)
            results = [(False, failure)] * len(batch)
        for job, (ok, value) in zip(batch, results, strict=True):
            job.loop.call_soon_threadsafe(_resolve, job.future, ok, value)


def _run_in_savepoint(conn: sqlite3.Connection, write: Write) -> tuple[bool, Any]:
    conn.execute("SAVEPOINT job")
    try:
        value = write(conn)
    except sqlite3.IntegrityError as exc:
        conn.execute("ROLLBACK TO job")
        conn.execute("RELEASE job")
        return False, exc
    except sqlite3.Error:
        raise  # the storage itself failed: the whole batch fails
    except Exception as exc:  # a refusal (KktAdapterError) or a bug: this job alone fails
        conn.execute("ROLLBACK TO job")
        conn.execute("RELEASE job")
        return False, exc
    conn.execute("RELEASE job")
    return True, value


def _rollback(conn: sqlite3.Connection) -> None:
    with contextlib.suppress(sqlite3.Error):  # no transaction may be open
        conn.execute("ROLLBACK")


def _resolve(future: asyncio.Future[Any], ok: bool, value: Any) -> None:
    if future.cancelled():
        return
    if ok:
        future.set_result(value)
    else:
        future.set_exception(value)


def connect(path: Path) -> sqlite3.Connection:
    """A connection with the durability settings (WAL, synchronous=FULL) and Row results."""
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    conn.row_factory = sqlite3.Row
    configure(conn)
    return conn
