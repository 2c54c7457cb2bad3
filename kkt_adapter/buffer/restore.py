"""The buffer file's own safety for ``kkt-adapter backup`` and ``kkt-adapter restore``.

A backup must never be written onto a file the adapter lives in (the buffer, its WAL and
shared memory, the KKT emulator's state): SQLite's backup would overwrite the live file's
pages under its own connections. A restore puts a checked copy in place of the buffer only
while no process holds the data dir, keeps the buffer it replaces beside it, and leaves the
rest to the journal check (``kkt_adapter.journal``): what the KKT printed after the backup was
taken is recovered from the KKT's journal, never printed again.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from kkt_adapter.buffer.owners import live_owners
from kkt_adapter.buffer.retention import quick_check
from kkt_adapter.buffer.schema import SCHEMA_VERSION

BUFFER_FILE = "buffer.sqlite"
SIDE_FILES = ("-wal", "-shm", "-journal")
OWN_FILES = (BUFFER_FILE, "kkt-emulator.sqlite")


def protected_files(data_dir: Path) -> list[Path]:
    """The files the adapter writes in place: never a backup's destination."""
    return [data_dir / f"{name}{suffix}" for name in OWN_FILES for suffix in ("", *SIDE_FILES)]


def overwrites(dest: Path, data_dir: Path) -> Path | None:
    """The adapter's own file that writing ``dest`` would overwrite, if any."""
    target = dest.resolve()
    for own in protected_files(data_dir):
        if target == own.resolve() or (own.exists() and dest.exists() and dest.samefile(own)):
            return own
    return None


@dataclass(frozen=True)
class Placed:
    receipts: int
    kept: Path | None
    """Where the buffer that was replaced now is (``None``: there was none)."""


def check_backup(path: Path) -> tuple[str | None, int]:
    """``(problem, receipts)`` of a backup file: ``None`` when it can be restored."""
    if not path.is_file():
        return f"{path} is not a file", 0
    problem = quick_check(path)
    if problem is not None:
        return f"{path} does not check out: {problem}", 0
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, isolation_level=None)
    try:
        version = int(conn.execute("PRAGMA user_version").fetchone()[0])
        if version > SCHEMA_VERSION:
            return f"{path} was written by a newer kkt-adapter (schema {version})", 0
        receipts = int(conn.execute("SELECT COUNT(*) FROM receipts").fetchone()[0])
    except sqlite3.Error as exc:
        return f"{path} is not a kkt-adapter buffer: {exc}", 0
    finally:
        conn.close()
    return None, receipts


def place(backup: Path, data_dir: Path) -> Placed:
    """Put ``backup`` in place of the buffer (raises ``RuntimeError`` saying why not).

    The copy is written beside the buffer, fsync'd and renamed into place; the buffer it
    replaces (with its WAL) is kept as ``buffer-replaced-<time>.sqlite``.
    """
    running = live_owners(data_dir)
    if running:
        raise RuntimeError(
            f"the adapter is running on {data_dir} ({', '.join(running)}): stop it first"
        )
    problem, receipts = check_backup(backup)
    if problem is not None:
        raise RuntimeError(problem)
    buffer = data_dir / BUFFER_FILE
    staging = data_dir / f"{BUFFER_FILE}.restoring"
    shutil.copyfile(backup, staging)
    _fsync(staging)
    kept = None
    if buffer.exists():
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        kept = data_dir / f"buffer-replaced-{stamp}.sqlite"
        for suffix in ("", *SIDE_FILES):
            old = Path(f"{buffer}{suffix}")
            if old.exists():
                os.replace(old, Path(f"{kept}{suffix}"))
    os.replace(staging, buffer)
    _fsync(data_dir)
    return Placed(receipts, kept)


def put_back(placed: Placed, data_dir: Path) -> None:
    """Undo ``place``: the replaced buffer back in place (the journal refused the backup)."""
    buffer = data_dir / BUFFER_FILE
    for suffix in SIDE_FILES:
        Path(f"{buffer}{suffix}").unlink(missing_ok=True)
    if placed.kept is None:
        buffer.unlink(missing_ok=True)
        return
    for suffix in ("", *SIDE_FILES):
        kept = Path(f"{placed.kept}{suffix}")
        if kept.exists():
            os.replace(kept, Path(f"{buffer}{suffix}"))
    _fsync(data_dir)


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
