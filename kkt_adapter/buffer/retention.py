"""Keeping the buffer small and sound: retention, online backup, integrity check (as SQL).

Retention (see docs/decisions.md, "Retention"): only receipts that are ``synced`` *and*
confirmed to the KKT (``confirmed = 1``) are ever deleted, with their idempotency key and
their audit events; a receipt that went through the DLQ is kept longer than one that did not.
A ``failed`` receipt (and its DLQ row) is an unsent fiscal document and is never deleted.
A ``print_failed`` receipt is no fiscal document (the KKT refused it): it expires
``print_failed_ms`` after its last attempt, and beyond ``print_failed_limit`` the oldest go.
Deletes go in bounded batches, each one write of the group-committing writer, so a prune
never holds the writer long. The status counters stay exact: a trigger counts deletes.
"""

from __future__ import annotations

import os
import sqlite3
from dataclasses import dataclass
from pathlib import Path

from kkt_adapter.buffer.recovery import keep_fd_high_tx
from kkt_adapter.buffer.sql import ACCEPTED, PRINT_FAILED, SYNCED, append_event

DAY_MS = 86_400_000
HOUR_MS = 3_600_000


@dataclass(frozen=True)
class Retention:
    """How long synced receipts are kept after their sync, in milliseconds."""

    synced_ms: int
    dlq_ms: int
    batch: int
    print_failed_ms: int | None = None
    """Failed prints older than this (since their last attempt) go; ``None``: kept."""
    print_failed_limit: int | None = None
    """At most this many failed prints are kept, the newest; ``None``: no limit."""

    @classmethod
    def from_days(
        cls,
        synced_days: float,
        dlq_days: float,
        batch: int,
        *,
        print_failed_hours: float | None = None,
        print_failed_limit: int | None = None,
    ) -> Retention:
        hours = None if print_failed_hours is None else int(print_failed_hours * HOUR_MS)
        return cls(
            int(synced_days * DAY_MS), int(dlq_days * DAY_MS), batch, hours, print_failed_limit
        )


@dataclass(frozen=True)
class Leftover:
    """A receipt left ``accepted`` (its record was not written): to settle from the KKT."""

    receipt_id: str
    idempotency_key: str


def prune_batch_tx(conn: sqlite3.Connection, now_ms: int, retention: Retention) -> int:
    """Delete up to ``retention.batch`` expired receipts with their keys and events."""
    longest = max(retention.synced_ms, retention.dlq_ms)
    rows = conn.execute(
        "SELECT id FROM receipts INDEXED BY receipts_synced"
        f" WHERE status = {SYNCED} AND confirmed = 1 AND synced_ms < ?"
        " AND (synced_ms < ? OR NOT EXISTS (SELECT 1 FROM buffer_events e"
        "  WHERE e.receipt_id = receipts.id AND e.event = 'rejected'))"
        " ORDER BY synced_ms LIMIT ?",
        (now_ms - retention.synced_ms, now_ms - longest, retention.batch),
    ).fetchall()
    ids = [(row[0],) for row in rows]
    if ids:
        keep_fd_high_tx(conn, ids)  # the journal check reads above it (kkt_adapter.journal)
    conn.executemany("DELETE FROM buffer_events WHERE receipt_id = ?", ids)
    conn.executemany("DELETE FROM idempotency_keys WHERE receipt_id = ?", ids)
    conn.executemany("DELETE FROM dlq WHERE receipt_id = ?", ids)
    conn.executemany(
        f"DELETE FROM receipts WHERE id = ? AND status = {SYNCED} AND confirmed = 1", ids
    )
    return len(ids)


def prune_print_failed_tx(conn: sqlite3.Connection, now_ms: int, retention: Retention) -> int:
    """Delete up to ``retention.batch`` failed prints that expired or are beyond the limit
    (the oldest first), with their keys and events."""
    expired_before = -1 if retention.print_failed_ms is None else now_ms - retention.print_failed_ms
    keep = -1 if retention.print_failed_limit is None else retention.print_failed_limit
    rows = conn.execute(
        f"SELECT id FROM receipts WHERE status = {PRINT_FAILED} AND (updated_ms < ?"
        f" OR id NOT IN (SELECT id FROM receipts WHERE status = {PRINT_FAILED}"
        "  ORDER BY updated_ms DESC, id DESC LIMIT ?)) ORDER BY updated_ms LIMIT ?",
        (expired_before, keep, retention.batch),
    ).fetchall()
    return _delete_print_failed(conn, [row[0] for row in rows])


def clear_print_failed_tx(conn: sqlite3.Connection, now_ms: int) -> int:
    """Delete every failed print (an operator's action), leaving one audit event."""
    rows = conn.execute(f"SELECT id FROM receipts WHERE status = {PRINT_FAILED}").fetchall()
    cleared = _delete_print_failed(conn, [row[0] for row in rows])
    if cleared:
        append_event(
            conn,
            now_ms,
            "warning",
            "print_failed_cleared",
            None,
            None,
            None,
            f"{cleared} receipts the KKT refused to print were cleared by an operator",
        )
    return cleared


def _delete_print_failed(conn: sqlite3.Connection, receipt_ids: list[str]) -> int:
    ids = [(rid,) for rid in receipt_ids]
    conn.executemany("DELETE FROM buffer_events WHERE receipt_id = ?", ids)
    conn.executemany("DELETE FROM idempotency_keys WHERE receipt_id = ?", ids)
    return sum(
        conn.execute(f"DELETE FROM receipts WHERE id = ? AND status = {PRINT_FAILED}", rid).rowcount
        for rid in ids
    )


def prune_events_tx(conn: sqlite3.Connection, before_ms: int, batch: int) -> int:
    """Delete up to ``batch`` audit events about no receipt (start-ups, shifts) older than
    ``before_ms``."""
    return conn.execute(
        "DELETE FROM buffer_events WHERE id IN (SELECT id FROM buffer_events"
        " INDEXED BY buffer_events_ts WHERE ts_ms < ? AND receipt_id IS NULL LIMIT ?)",
        (before_ms, batch),
    ).rowcount


def leftovers_tx(conn: sqlite3.Connection, idle_before_ms: int) -> list[Leftover]:
    """Receipts ``accepted`` and untouched since ``idle_before_ms`` (at most 100)."""
    rows = conn.execute(
        f"SELECT id, idempotency_key FROM receipts"
        f" WHERE status = {ACCEPTED} AND updated_ms < ? ORDER BY created_ms LIMIT 100",
        (idle_before_ms,),
    ).fetchall()
    return [Leftover(row[0], row[1]) for row in rows]


def quick_check(path: Path) -> str | None:
    """``PRAGMA quick_check`` of a buffer file: ``None`` if sound, else the first problem.

    quick_check reads every page and checks page structure, record format and key order,
    which finds torn or overwritten pages; it skips ``integrity_check``'s cross-check of
    every index entry against its row, the part that grows worse than linearly with the file.
    """
    try:
        conn = sqlite3.connect(f"file:{path}?mode=rw", uri=True, isolation_level=None)
    except sqlite3.Error as exc:
        return str(exc)
    try:
        rows = conn.execute("PRAGMA quick_check(1)").fetchall()
    except sqlite3.DatabaseError as exc:  # "file is not a database", "malformed" ...
        return str(exc)
    finally:
        conn.close()
    first = str(rows[0][0]) if rows else "no answer"
    return None if first == "ok" else first


def backup(source: Path, dest: Path) -> int:
    """Copy the buffer at ``source`` to ``dest`` with SQLite's online backup; returns the
    receipts copied. Safe while the adapter runs: one read transaction (WAL readers do not
    block the writer) gives a consistent snapshot; the copy is written beside ``dest``,
    fsync'd, checked and then renamed into place."""
    if not source.is_file():
        raise FileNotFoundError(f"no buffer at {source}")
    partial = dest.with_name(dest.name + ".partial")
    partial.unlink(missing_ok=True)
    src = sqlite3.connect(f"file:{source}?mode=rw", uri=True, isolation_level=None)
    try:
        src.execute("PRAGMA busy_timeout=10000")
        dst = sqlite3.connect(partial, isolation_level=None)
        try:
            src.backup(dst)  # all pages in one step: a consistent copy, never restarted
            dst.execute("PRAGMA journal_mode=DELETE")  # one self-contained file
            receipts = int(dst.execute("SELECT COUNT(*) FROM receipts").fetchone()[0])
        finally:
            dst.close()
    finally:
        src.close()
    problem = quick_check(partial)
    if problem is not None:
        partial.unlink(missing_ok=True)
        raise sqlite3.DatabaseError(f"the copy does not check out: {problem}")
    fd = os.open(partial, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(partial, dest)
    _fsync_dir(dest.parent)
    return receipts


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
