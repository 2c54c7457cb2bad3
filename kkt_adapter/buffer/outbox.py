"""The delivery side of the buffer: claims, results, the DLQ and the audit log, as SQL.

A claim moves due ``pending`` receipts to ``syncing`` atomically, under a lease and the
claimer's fencing token; every result write checks both the status and the token, so a pass
whose claim was taken over (lease expired, new leader) cannot write over the new holder.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass
from typing import Any

from kkt_adapter.buffer.store import Buffer, append_event, set_meta
from kkt_adapter.errors import StaleLeader
from kkt_adapter.hlc import HlcStamp

LEVELS = ("debug", "info", "warning", "error", "critical")

# A result write also needs its token to be the highest the buffer has seen: a paused leader
# whose claim was taken over must not write, even where its row check would still match.
CURRENT_FENCE = " AND fence >= (SELECT CAST(value AS INTEGER) FROM meta WHERE key = 'fence_high')"


@dataclass(frozen=True)
class Claimed:
    """A receipt claimed for one delivery attempt."""

    receipt_id: str
    pos_id: str
    fn: str
    fd: int
    fp: str
    hlc: HlcStamp
    document: dict[str, Any]
    attempts: int


class Outbox:
    """Delivery queries over a ``Buffer``."""

    def __init__(self, buffer: Buffer) -> None:
        self.buffer = buffer
        self.db = buffer.db

    async def take_over(self, fence: int) -> int:
        """A new leader with ``fence`` starts: raise the buffer's highest token to it (older
        leaders' writes are refused from now on) and return their claims to ``pending``."""

        def write(conn: sqlite3.Connection) -> int:
            now = self.buffer.now_ms()
            conn.execute(
                "UPDATE meta SET value = MAX(CAST(value AS INTEGER), ?) WHERE key = 'fence_high'",
                (fence,),
            )
            rows = conn.execute(
                "UPDATE receipts SET status = 'pending', lease_until_ms = NULL, updated_ms = ?"
                " WHERE status = 'syncing' AND fence < ? RETURNING id",
                (now, fence),
            ).fetchall()
            for row in rows:
                append_event(conn, now, "warning", "taken_over", row["id"], "syncing", "pending")
            return len(rows)

        return await self.db.write(write)

    async def fence_high(self) -> int:
        """The highest fencing token this buffer has accepted."""
        row = await self.db.read(
            lambda conn: conn.execute("SELECT value FROM meta WHERE key = 'fence_high'").fetchone()
        )
        return int(row[0]) if row else 0

    async def claim(
        self, *, limit: int, fence: int, lease_ms: int, ignore_timers: bool
    ) -> list[Claimed]:
        """Claim up to ``limit`` due receipts in HLC order (all pending if ``ignore_timers``)."""

        def write(conn: sqlite3.Connection) -> list[Claimed]:
            _check_fence(conn, fence)
            now = self.buffer.now_ms()
            due = now if not ignore_timers else 2**62
            rows = conn.execute(
                "UPDATE receipts SET status = 'syncing', lease_until_ms = ?, fence = ?,"
                " updated_ms = ? WHERE id IN (SELECT id FROM receipts"
                " WHERE status = 'pending' AND next_attempt_ms <= ?"
                " ORDER BY hlc_wall, hlc_counter, hlc_node LIMIT ?)"
                " RETURNING id, pos_id, fn, fd, fp, hlc_wall, hlc_counter, hlc_node, document,"
                " attempts",
                (now + lease_ms, fence, now, due, limit),
            ).fetchall()
            conn.executemany(
                "INSERT INTO buffer_events (ts_ms, level, event, receipt_id, from_status,"
                " to_status, message) VALUES (?, 'debug', 'claimed', ?, 'pending', 'syncing', ?)",
                [(now, row["id"], f"fence {fence}") for row in rows],
            )
            return sorted((_claimed(row) for row in rows), key=lambda c: c.hlc)

        return await self.db.write(write)

    async def record_delivered(
        self, claimed: Claimed, fence: int, ofd_receipt_id: str | None, ofd_hlc: HlcStamp | None
    ) -> bool:
        """``synced``; merges the OFD's clock. False if the claim was no longer ours."""

        def write(conn: sqlite3.Connection) -> bool:
            now = self.buffer.now_ms()
            changed = conn.execute(
                "UPDATE receipts SET status = 'synced', synced_ms = ?, updated_ms = ?,"
                " ofd_receipt_id = ?, attempts = attempts + 1, last_error = NULL,"
                " lease_until_ms = NULL WHERE id = ? AND status = 'syncing' AND fence = ?"
                + CURRENT_FENCE,
                (now, now, ofd_receipt_id, claimed.receipt_id, fence),
            ).rowcount
            if changed and ofd_hlc is not None and self.buffer.clock is not None:
                set_meta(conn, "hlc", str(self.buffer.clock.merge(ofd_hlc)))
            if changed:
                append_event(conn, now, "info", "synced", claimed.receipt_id, "syncing", "synced")
            return bool(changed)

        return await self.db.write(write)

    async def record_rejected(
        self, claimed: Claimed, fence: int, status: int, code: str, reason: str
    ) -> bool:
        """``failed`` with a DLQ row saying why."""

        def write(conn: sqlite3.Connection) -> bool:
            now = self.buffer.now_ms()
            changed = conn.execute(
                "UPDATE receipts SET status = 'failed', updated_ms = ?, attempts = attempts + 1,"
                " last_error = ?, lease_until_ms = NULL"
                " WHERE id = ? AND status = 'syncing' AND fence = ?" + CURRENT_FENCE,
                (now, f"{code}: {reason}", claimed.receipt_id, fence),
            ).rowcount
            if changed:
                conn.execute(
                    "INSERT INTO dlq (receipt_id, code, reason, http_status, created_ms)"
                    " VALUES (?, ?, ?, ?, ?) ON CONFLICT (receipt_id) DO UPDATE SET"
                    " code = excluded.code, reason = excluded.reason,"
                    " http_status = excluded.http_status, created_ms = excluded.created_ms",
                    (claimed.receipt_id, code, reason, status, now),
                )
                append_event(
                    conn,
                    now,
                    "error",
                    "rejected",
                    claimed.receipt_id,
                    "syncing",
                    "failed",
                    f"{code}: {reason}",
                )
            return bool(changed)

        return await self.db.write(write)

    async def record_transient(
        self, claimed: Claimed, fence: int, reason: str, delay_ms: int, count_attempt: bool = True
    ) -> bool:
        """Back to ``pending`` with its next attempt ``delay_ms`` from now."""

        def write(conn: sqlite3.Connection) -> bool:
            now = self.buffer.now_ms()
            changed = conn.execute(
                "UPDATE receipts SET status = 'pending', updated_ms = ?, next_attempt_ms = ?,"
                " attempts = attempts + ?, last_error = ?, lease_until_ms = NULL"
                " WHERE id = ? AND status = 'syncing' AND fence = ?" + CURRENT_FENCE,
                (now, now + delay_ms, int(count_attempt), reason, claimed.receipt_id, fence),
            ).rowcount
            if changed:
                level = "warning" if count_attempt else "debug"
                append_event(
                    conn,
                    now,
                    level,
                    "retry" if count_attempt else "released",
                    claimed.receipt_id,
                    "syncing",
                    "pending",
                    reason,
                )
            return bool(changed)

        return await self.db.write(write)

    async def release_expired(self) -> int:
        """Return ``syncing`` receipts whose lease ran out to ``pending``."""

        def write(conn: sqlite3.Connection) -> int:
            now = self.buffer.now_ms()
            rows = conn.execute(
                "UPDATE receipts SET status = 'pending', lease_until_ms = NULL, updated_ms = ?"
                " WHERE status = 'syncing' AND lease_until_ms < ? RETURNING id",
                (now, now),
            ).fetchall()
            for row in rows:
                append_event(conn, now, "warning", "lease_expired", row["id"], "syncing", "pending")
            return len(rows)

        return await self.db.write(write)

    async def release_fence(self, fence: int) -> int:
        """Give back every claim held under ``fence`` (clean shutdown)."""

        def write(conn: sqlite3.Connection) -> int:
            now = self.buffer.now_ms()
            rows = conn.execute(
                "UPDATE receipts SET status = 'pending', lease_until_ms = NULL, updated_ms = ?"
                " WHERE status = 'syncing' AND fence = ? RETURNING id",
                (now, fence),
            ).fetchall()
            for row in rows:
                append_event(
                    conn, now, "info", "released", row["id"], "syncing", "pending", "shutdown"
                )
            return len(rows)

        return await self.db.write(write)

    async def unconfirmed_fds(self, limit: int = 500) -> list[tuple[str, int]]:
        """Synced receipts the KKT has not been told about yet."""
        rows = await self.db.read(
            lambda conn: conn.execute(
                "SELECT id, fd FROM receipts WHERE status = 'synced' AND confirmed = 0"
                " ORDER BY fd LIMIT ?",
                (limit,),
            ).fetchall()
        )
        return [(row["id"], int(row["fd"])) for row in rows]

    async def mark_confirmed(self, receipt_ids: list[str]) -> None:
        await self.db.write(
            lambda conn: conn.executemany(
                "UPDATE receipts SET confirmed = 1 WHERE id = ?", [(rid,) for rid in receipt_ids]
            )
        )

    async def requeue(self, receipt_id: str) -> bool:
        """A ``failed`` receipt back to ``pending`` (operator action); False if not in the DLQ."""

        def write(conn: sqlite3.Connection) -> bool:
            now = self.buffer.now_ms()
            changed = conn.execute(
                "UPDATE receipts SET status = 'pending', next_attempt_ms = ?, updated_ms = ?,"
                " last_error = NULL WHERE id = ? AND status = 'failed'",
                (now, now, receipt_id),
            ).rowcount
            if changed:
                conn.execute("DELETE FROM dlq WHERE receipt_id = ?", (receipt_id,))
                append_event(conn, now, "info", "requeued", receipt_id, "failed", "pending")
            return bool(changed)

        return await self.db.write(write)

    async def save_last_sync(self, summary: dict[str, Any]) -> None:
        await self.db.write(lambda conn: set_meta(conn, "last_sync", json.dumps(summary)))

    async def last_sync(self) -> dict[str, Any] | None:
        row = await self.db.read(
            lambda conn: conn.execute("SELECT value FROM meta WHERE key = 'last_sync'").fetchone()
        )
        return json.loads(row[0]) if row else None

    async def dlq_page(self, page: int, limit: int) -> list[dict[str, Any]]:
        rows = await self.db.read(
            lambda conn: conn.execute(
                "SELECT d.receipt_id, d.code, d.reason, d.http_status, d.created_ms, r.fn, r.fd,"
                " r.total, r.attempts FROM dlq d JOIN receipts r ON r.id = d.receipt_id"
                " ORDER BY d.created_ms, d.receipt_id LIMIT ? OFFSET ?",
                (limit, (page - 1) * limit),
            ).fetchall()
        )
        return [dict(row) for row in rows]

    async def events_page(
        self,
        *,
        page: int,
        limit: int,
        min_level: str | None,
        since_ms: int | None,
        receipt_id: str | None,
    ) -> list[dict[str, Any]]:
        """Audit events, newest first, filtered."""
        where: list[str] = ["1 = 1"]
        params: list[str | int] = []
        if min_level is not None:
            allowed = LEVELS[LEVELS.index(min_level) :]
            where.append(f"level IN ({', '.join('?' * len(allowed))})")
            params.extend(allowed)
        if since_ms is not None:
            where.append("ts_ms >= ?")
            params.append(since_ms)
        if receipt_id is not None:
            where.append("receipt_id = ?")
            params.append(receipt_id)
        sql = (
            "SELECT id, ts_ms, level, event, receipt_id, from_status, to_status, message"
            f" FROM buffer_events WHERE {' AND '.join(where)} ORDER BY id DESC LIMIT ? OFFSET ?"
        )
        params.extend([limit, (page - 1) * limit])
        rows = await self.db.read(lambda conn: conn.execute(sql, params).fetchall())
        return [dict(row) for row in rows]


def _check_fence(conn: sqlite3.Connection, fence: int) -> None:
    high = int(conn.execute("SELECT value FROM meta WHERE key = 'fence_high'").fetchone()[0])
    if fence < high:
        raise StaleLeader(f"fencing token {fence} is below the buffer's {high}")
    if fence > high:
        conn.execute("UPDATE meta SET value = ? WHERE key = 'fence_high'", (str(fence),))


def _claimed(row: sqlite3.Row) -> Claimed:
    return Claimed(
        receipt_id=row["id"],
        pos_id=row["pos_id"],
        fn=row["fn"],
        fd=int(row["fd"]),
        fp=row["fp"],
        hlc=HlcStamp(row["hlc_wall"], row["hlc_counter"], row["hlc_node"]),
        document=json.loads(row["document"]),
        attempts=int(row["attempts"]),
    )
