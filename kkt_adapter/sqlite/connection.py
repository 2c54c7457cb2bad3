"""Connections with the durability settings, and versioned migrations.

Every connection to the buffer, the KKT emulator's state file and the OFD emulator's store is
made here: WAL, ``synchronous=FULL`` (promise I1), a busy timeout for the other processes
sharing a file, foreign keys on, rows by name.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from pathlib import Path

from kkt_adapter.errors import ConfigError

BUSY_TIMEOUT_MS = 10_000


def configure(conn: sqlite3.Connection) -> None:
    """The durability and concurrency settings of every connection."""
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
    conn.execute("PRAGMA foreign_keys=ON")


def connect(path: Path) -> sqlite3.Connection:
    """A connection with the durability settings, explicit transactions and ``Row`` results;
    usable from any thread (each user serializes its own use)."""
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    conn.row_factory = sqlite3.Row
    configure(conn)
    return conn


def apply_migrations(
    conn: sqlite3.Connection, migrations: Sequence[Sequence[str]], what: str
) -> int:
    """Bring a file's schema to version ``len(migrations)``; returns the version found.

    Each step runs in its own ``BEGIN IMMEDIATE`` transaction and reads the version inside it,
    so two processes starting on one new file migrate it once between them. A file written by
    a newer version is refused instead of being misread.
    """
    latest = len(migrations)
    found: int | None = None
    while True:
        conn.execute("BEGIN IMMEDIATE")
        try:
            version = int(conn.execute("PRAGMA user_version").fetchone()[0])
            found = version if found is None else found
            if version > latest:
                raise ConfigError(
                    f"{what} schema version {version} is newer than this kkt-adapter ({latest});"
                    " upgrade kkt-adapter"
                )
            if version < latest:
                for statement in migrations[version]:
                    conn.execute(statement)
                conn.execute(f"PRAGMA user_version={version + 1}")
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        if version == latest:
            return found


def split_statements(script: str) -> tuple[str, ...]:
    """A migration script as separate statements (``executescript`` would commit on its own,
    outside the migration's transaction); ``--`` comments are dropped."""
    statements: list[str] = []
    current: list[str] = []
    for line in script.splitlines():
        stripped = line.split("--", 1)[0].rstrip()
        if not stripped:
            continue
        current.append(stripped)
        joined = "\n".join(current)
        if joined.endswith(";") and sqlite3.complete_statement(joined):
            statements.append(joined)
            current = []
    if current:
        statements.append("\n".join(current))
    return tuple(statements)
