"""Retention of the buffer: what may be pruned, in bounded batches, with exact counters."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from fakes import Wall, write_directly

from kkt_adapter.buffer import Buffer
from kkt_adapter.buffer.retention import DAY_MS, Retention, prune_batch_tx
from kkt_adapter.buffer.sql import append_event

NOW = 1_800_000_000_000


@pytest.fixture
async def buffer(tmp_path: Path) -> AsyncIterator[Buffer]:
    buf = Buffer(tmp_path, capacity=1000, node_id="n1", wall=Wall(NOW))
    buf.open()
    yield buf
    buf.close()


def add(
    conn: sqlite3.Connection,
    rid: str,
    status: str,
    *,
    synced_days_ago: float | None = None,
    confirmed: int = 1,
    rejected_once: bool = False,
) -> None:
    """A receipt row with its key and events, as intake and delivery would have left it."""
    synced_ms = None if synced_days_ago is None else NOW - int(synced_days_ago * DAY_MS)
    created = NOW - 200 * DAY_MS
    conn.execute(
        "INSERT INTO receipts (id, idempotency_key, pos_id, type, total, status, created_ms,"
        " updated_ms, hlc_wall, hlc_counter, hlc_node, payload, document, fd, synced_ms,"
        " confirmed) VALUES (?, ?, 'POS', 'sale', 100, ?, ?, ?, ?, 0, 'n1', '{}', '{}', 1, ?, ?)",
        (rid, f"key-{rid}", status, created, created, created, synced_ms, confirmed),
    )
    conn.execute(
        "INSERT INTO idempotency_keys (key, receipt_id, fingerprint, created_ms)"
        " VALUES (?, ?, 'f', ?)",
        (f"key-{rid}", rid, created),
    )
    append_event(conn, created, "info", "accepted", rid, None, "accepted")
    if rejected_once:
        append_event(conn, created, "error", "rejected", rid, "syncing", "failed", "bad")
    if status == "failed":
        conn.execute(
            "INSERT INTO dlq (receipt_id, code, reason, created_ms) VALUES (?, 'x', 'bad', ?)",
            (rid, created),
        )


def left(buffer: Buffer) -> tuple[set[str], int, int, dict[str, int], dict[str, int]]:
    with sqlite3.connect(buffer.path) as conn:
        ids = {row[0] for row in conn.execute("SELECT id FROM receipts")}
        keys = conn.execute("SELECT COUNT(*) FROM idempotency_keys").fetchone()[0]
        orphans = conn.execute(
            "SELECT COUNT(*) FROM buffer_events WHERE receipt_id IS NOT NULL"
            " AND receipt_id NOT IN (SELECT id FROM receipts)"
        ).fetchone()[0]
        kept = {s: n for s, n in conn.execute("SELECT status, n FROM status_counts") if n}
        real = dict(conn.execute("SELECT status, COUNT(*) FROM receipts GROUP BY status"))
    return ids, keys, orphans, kept, real


async def test_only_synced_and_confirmed_receipts_past_retention_are_pruned(
    buffer: Buffer,
) -> None:
    def seed(conn: sqlite3.Connection) -> None:
        add(conn, "old-synced", "synced", synced_days_ago=8)
        add(conn, "old-unconfirmed", "synced", synced_days_ago=8, confirmed=0)
        add(conn, "young-synced", "synced", synced_days_ago=6)
        add(conn, "old-pending", "pending", confirmed=0)
        add(conn, "old-failed", "failed", confirmed=0, rejected_once=True)
        add(conn, "old-print-failed", "print_failed", confirmed=0)
        add(conn, "dlq-then-synced-30d", "synced", synced_days_ago=30, rejected_once=True)
        add(conn, "dlq-then-synced-91d", "synced", synced_days_ago=91, rejected_once=True)

    write_directly(buffer.path, seed)
    pruned = await buffer.prune(Retention.from_days(7, 90, 100))
    assert pruned == 2
    ids, keys, orphans, kept, real = left(buffer)
    assert ids == {
        "old-unconfirmed",
        "young-synced",
        "old-pending",
        "old-failed",
        "old-print-failed",
        "dlq-then-synced-30d",
    }
    assert keys == len(ids)  # the keys went with their receipts, no others
    assert orphans == 0  # and so did their events
    assert kept == real  # the triggers kept the counters exact
    counts = await buffer.counts()
    assert counts["total"] == 6 and counts["synced"] == 3 and counts["dlq"] == 1


async def test_prune_goes_in_bounded_batches(buffer: Buffer) -> None:
    def seed(conn: sqlite3.Connection) -> None:
        for n in range(25):
            add(conn, f"r{n:02d}", "synced", synced_days_ago=10 + n / 100)

    write_directly(buffer.path, seed)
    retention = Retention.from_days(7, 90, 10)
    first = write_directly(buffer.path, lambda conn: prune_batch_tx(conn, NOW, retention))
    assert first == 10
    ids, *_ = left(buffer)
    assert len(ids) == 15 and "r24" not in ids  # the oldest sync goes first
    assert await buffer.prune(retention) == 15
    ids, keys, orphans, kept, real = left(buffer)
    assert ids == set() and keys == 0 and orphans == 0 and kept == real == {}


async def test_old_events_about_no_receipt_are_pruned_after_the_longest_retention(
    buffer: Buffer,
) -> None:
    def seed(conn: sqlite3.Connection) -> None:
        append_event(conn, NOW - 100 * DAY_MS, "info", "started", None, None, None, "old")
        append_event(conn, NOW - 10 * DAY_MS, "info", "started", None, None, None, "recent")

    write_directly(buffer.path, seed)
    await buffer.prune(Retention.from_days(7, 90, 100))
    with sqlite3.connect(buffer.path) as conn:
        messages = [row[0] for row in conn.execute("SELECT message FROM buffer_events")]
    assert messages == ["recent"]


async def test_failed_prints_expire_after_their_retention_and_beyond_their_limit(
    buffer: Buffer,
) -> None:
    def seed(conn: sqlite3.Connection) -> None:
        add(conn, "pending", "pending", confirmed=0)
        for rid, hours_ago in (("pf-2d", 48), ("pf-3h", 3), ("pf-2h", 2), ("pf-1h", 1)):
            add(conn, rid, "print_failed", confirmed=0)
            conn.execute(
                "UPDATE receipts SET updated_ms = ? WHERE id = ?",
                (NOW - hours_ago * 3_600_000, rid),
            )

    write_directly(buffer.path, seed)
    keep_all = await buffer.prune(Retention.from_days(7, 90, 100))
    assert keep_all == 0  # without print_failed bounds nothing of them goes
    bounded = Retention.from_days(7, 90, 100, print_failed_hours=24, print_failed_limit=2)
    assert await buffer.prune(bounded) == 2
    ids, keys, orphans, kept, real = left(buffer)
    assert ids == {"pending", "pf-2h", "pf-1h"}  # expired, then the oldest beyond the limit
    assert keys == 3 and orphans == 0 and kept == real
