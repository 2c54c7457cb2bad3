"""Finding receipts other than by id: by idempotency key, by (FN, FD), by shift.

Each read is one index seek: the key is the primary key of ``idempotency_keys``; (FN, FD) and
the shift have the partial indexes ``receipts_fiscal`` and ``receipts_shift`` (schema 3).
"""

from __future__ import annotations

import sqlite3
from typing import Any

from kkt_adapter.domain.journal import key_digest

ROW = "SELECT r.*, d.code AS dlq_code, d.reason AS dlq_reason FROM receipts r"
"""A receipt row as ``GET /v1/kkt/receipt/{id}`` shows it (its DLQ entry joined)."""
DLQ_JOIN = " LEFT JOIN dlq d ON d.receipt_id = r.id"


def by_id_tx(conn: sqlite3.Connection, receipt_id: str) -> dict[str, Any] | None:
    row = conn.execute(ROW + DLQ_JOIN + " WHERE r.id = ?", (receipt_id,)).fetchone()
    return dict(row) if row is not None else None


def by_key_tx(conn: sqlite3.Connection, key: str) -> dict[str, Any] | None:
    """The receipt of an idempotency key, also one recovered from the KKT's journal, which is
    known by the key's digest only (``key_digest``), as intake looks it up."""
    row = conn.execute(
        ROW + " JOIN idempotency_keys k ON k.receipt_id = r.id" + DLQ_JOIN
        + " WHERE k.key IN (?, ?) LIMIT 1",
        (key, key_digest(key)),
    ).fetchone()  # fmt: skip
    return dict(row) if row is not None else None


def by_fiscal_tx(conn: sqlite3.Connection, fn: str, fd: int) -> dict[str, Any] | None:
    """The receipt that is fiscal document ``fd`` of FN ``fn``."""
    row = conn.execute(
        ROW + " INDEXED BY receipts_fiscal" + DLQ_JOIN
        + " WHERE r.fn = ? AND r.fd = ? AND r.fd IS NOT NULL",
        (fn, fd),
    ).fetchone()  # fmt: skip
    return dict(row) if row is not None else None


def shift_page_tx(
    conn: sqlite3.Connection, shift: int, fn: str | None, page: int, limit: int
) -> list[dict[str, Any]]:
    """One page of shift ``shift``'s receipts (of FN ``fn`` if given: shift numbers start
    again on a new FN), in FN then number-in-shift order."""
    where = " WHERE r.shift = ? AND r.fd IS NOT NULL"
    params: tuple[Any, ...] = (shift,)
    if fn is not None:
        where += " AND r.fn = ?"
        params += (fn,)
    rows = conn.execute(
        ROW + " INDEXED BY receipts_shift" + DLQ_JOIN + where
        + " ORDER BY r.fn, r.number_in_shift LIMIT ? OFFSET ?",
        (*params, limit, (page - 1) * limit),
    ).fetchall()  # fmt: skip
    return [dict(row) for row in rows]
