"""What every statement of the buffer shares: receipt statuses as SQL literals, the audit log
and the ``meta`` table.

Status names come from :class:`~kkt_adapter.domain.lifecycle.ReceiptStatus`. They are written into
the statement text rather than bound as parameters: SQLite uses a partial index (the unsent,
synced, unconfirmed and leased receipts have one each) only when the statement itself names
the statuses the index covers. They are constants, never input.
"""

from __future__ import annotations

import sqlite3

from kkt_adapter.domain.lifecycle import ReceiptStatus


def _literal(status: ReceiptStatus) -> str:
    return f"'{status.value}'"


ACCEPTED = _literal(ReceiptStatus.ACCEPTED)
PRINT_FAILED = _literal(ReceiptStatus.PRINT_FAILED)
PENDING = _literal(ReceiptStatus.PENDING)
SYNCING = _literal(ReceiptStatus.SYNCING)
SYNCED = _literal(ReceiptStatus.SYNCED)
FAILED = _literal(ReceiptStatus.FAILED)
UNSENT = f"({PENDING}, {SYNCING}, {FAILED})"


def append_event(
    conn: sqlite3.Connection,
    ts_ms: int,
    level: str,
    event: str,
    receipt_id: str | None,
    from_status: ReceiptStatus | None,
    to_status: ReceiptStatus | None,
    message: str | None = None,
) -> None:
    conn.execute(
        "INSERT INTO buffer_events (ts_ms, level, event, receipt_id, from_status, to_status,"
        " message) VALUES (?, ?, ?, ?, ?, ?, ?)",
        (ts_ms, level, event, receipt_id, from_status, to_status, message),
    )


def get_meta(conn: sqlite3.Connection, key: str) -> str | None:
    row = conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
    return str(row[0]) if row else None


def set_meta(conn: sqlite3.Connection, key: str, value: str) -> None:
    conn.execute(
        "INSERT INTO meta (key, value) VALUES (?, ?)"
        " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        (key, value),
    )
