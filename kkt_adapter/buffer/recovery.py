"""The buffer's side of the journal check (``kkt_adapter.journal``, promise I8): what it knows
of one FN's documents, and rows recovered from the KKT's journal.

The buffer remembers the highest FD it ever held for each FN (``meta``: ``fd_high:<fn>``),
kept when retention prunes, so a journal check reads only the journal above that FD, plus
the documents the OFD has not acknowledged.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import orjson

from kkt_adapter.buffer.sql import PENDING, UNSENT, append_event, get_meta, set_meta
from kkt_adapter.domain.fiscal import FiscalResult
from kkt_adapter.domain.lifecycle import ReceiptStatus
from kkt_adapter.hlc import HlcStamp

RECOVERED_POS = "(recovered from the KKT)"
"""The POS id of a recovered receipt: the fiscal document does not name the till."""
RECENT_ROWS = 1000
"""Rows read for the highest FD: rows are recorded in about FD order, so the newest ones
hold it (no index on FD: one would cost every intake a write)."""


@dataclass(frozen=True)
class FnView:
    """What the buffer holds of the documents of one FN and of any other."""

    high_fd: int
    """The highest FD of this FN the buffer ever held (0: none)."""
    others_unsent: dict[str, int]
    """Other FNs with documents still to deliver, and how many."""


@dataclass(frozen=True)
class KnownRow:
    status: ReceiptStatus
    owner: str | None
    fn: str | None
    fd: int | None


@dataclass(frozen=True)
class Recovered:
    """A fiscalized receipt from the journal, about to enter the buffer as ``pending``."""

    result: FiscalResult
    key: str
    fingerprint: str
    type: str
    total: int
    stamp: HlcStamp
    answer: dict[str, Any]


def fd_high_key(fn: str) -> str:
    return f"fd_high:{fn}"


def fn_view_tx(conn: sqlite3.Connection, fn: str) -> FnView:
    recent = conn.execute(
        "SELECT MAX(fd) FROM (SELECT fd FROM receipts WHERE fn = ? ORDER BY rowid DESC LIMIT ?)",
        (fn, RECENT_ROWS),
    ).fetchone()[0]
    kept = get_meta(conn, fd_high_key(fn))
    others = conn.execute(
        f"SELECT fn, COUNT(*) FROM receipts INDEXED BY receipts_unsent WHERE status IN {UNSENT}"
        " AND fn != ? GROUP BY fn",
        (fn,),
    ).fetchall()
    return FnView(max(int(recent or 0), int(kept or 0)), {str(r[0]): int(r[1]) for r in others})


def known_tx(conn: sqlite3.Connection, receipt_ids: list[str]) -> dict[str, KnownRow]:
    marks = ",".join("?" * len(receipt_ids))
    rows = conn.execute(
        f"SELECT id, status, owner, fn, fd FROM receipts WHERE id IN ({marks})", receipt_ids
    ).fetchall()
    return {
        row["id"]: KnownRow(ReceiptStatus(row["status"]), row["owner"], row["fn"], row["fd"])
        for row in rows
    }


def insert_recovered_tx(conn: sqlite3.Connection, now: int, rows: Iterable[Recovered]) -> int:
    """Insert receipts recovered from the journal as ``pending``; ones known meanwhile (by id,
    or their key) are left alone. Returns how many were inserted."""
    inserted = 0
    for row in rows:
        result = row.result
        taken = conn.execute(
            "SELECT 1 FROM receipts WHERE id = ? UNION ALL"
            " SELECT 1 FROM idempotency_keys WHERE key = ?",
            (result.receipt_id, row.key),
        ).fetchone()
        if taken is not None:
            continue
        conn.execute(
            "INSERT INTO receipts (id, idempotency_key, pos_id, type, total, status, created_ms,"
            " updated_ms, hlc_wall, hlc_counter, hlc_node, payload, document, fn, fd, fp, shift,"
            " number_in_shift, fiscal_at, qr, next_attempt_ms, response)"
            f" VALUES (?, ?, ?, ?, ?, {PENDING}, ?, ?, ?, ?, ?, '{{}}', ?, ?, ?, ?, ?, ?, ?, ?,"
            " ?, ?)",
            (
                result.receipt_id,
                row.key,
                RECOVERED_POS,
                row.type,
                row.total,
                int(result.datetime.timestamp() * 1000),
                now,
                row.stamp.wall_ms,
                row.stamp.counter,
                row.stamp.node,
                _dumps(result.document),
                result.fn,
                result.fd,
                result.fp,
                result.shift,
                result.number_in_shift,
                result.datetime.isoformat(),
                result.qr,
                now,
                _dumps(row.answer),
            ),
        )
        conn.execute(
            "INSERT INTO idempotency_keys (key, receipt_id, fingerprint, created_ms)"
            " VALUES (?, ?, ?, ?)",
            (row.key, result.receipt_id, row.fingerprint, now),
        )
        append_event(
            conn,
            now,
            "warning",
            "recovered",
            result.receipt_id,
            None,
            ReceiptStatus.PENDING,
            f"FD {result.fd} of FN {result.fn}, missing from the buffer, recovered from the"
            " KKT's journal",
        )
        inserted += 1
    return inserted


def keep_fd_high_tx(conn: sqlite3.Connection, ids: list[tuple[str]]) -> None:
    """Before rows ``ids`` are pruned: remember the highest FD per FN among them."""
    marks = ",".join("?" * len(ids))
    for fn, high in conn.execute(
        f"SELECT fn, MAX(fd) FROM receipts WHERE id IN ({marks}) AND fn IS NOT NULL GROUP BY fn",
        [i for (i,) in ids],
    ).fetchall():
        kept = get_meta(conn, fd_high_key(fn))
        if kept is None or int(kept) < int(high):
            set_meta(conn, fd_high_key(fn), str(int(high)))


def _dumps(value: Any) -> str:
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode()


def neighbours_tx(
    conn: sqlite3.Connection, fn: str, fd: int
) -> tuple[HlcStamp | None, HlcStamp | None]:
    """The stamps of the recorded documents of ``fn`` just below and just above FD ``fd``.

    Each side is one seek in ``receipts_fiscal`` (schema version 3); it runs only for
    documents recorded late (start-up, housekeeping, the journal check).
    """
    found: list[HlcStamp | None] = []
    for compare, order in (("<", "DESC"), (">", "ASC")):
        row = conn.execute(
            "SELECT hlc_wall, hlc_counter, hlc_node FROM receipts"
            f" WHERE fn = ? AND fd {compare} ? ORDER BY fd {order} LIMIT 1",
            (fn, fd),
        ).fetchone()
        found.append(None if row is None else HlcStamp(int(row[0]), int(row[1]), str(row[2])))
    return found[0], found[1]
