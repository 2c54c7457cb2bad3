"""The delivery side of the buffer: claims, results, the DLQ and the audit log, as SQL.

A claim moves due ``pending`` receipts to ``syncing`` atomically, under a lease and the
claimer's fencing token; every result write checks both the status and the token, so a pass
whose claim was taken over (lease expired, new leader) cannot write over the new holder.
"""

from __future__ import annotations

import dataclasses
import json
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from kkt_adapter.buffer.sql import (
    FAILED,
    PENDING,
    SYNCED,
    SYNCING,
    UNSENT,
    append_event,
    set_meta,
)
from kkt_adapter.domain.lifecycle import ReceiptStatus
from kkt_adapter.errors import StaleLeader
from kkt_adapter.hlc import HlcStamp, WallClock
from kkt_adapter.sqlite import Database

LEVELS = ("debug", "info", "warning", "error", "critical")
LEASE_NAME = "sync"

# A result write also needs its token to be the highest the buffer has seen: a paused leader
# whose claim was taken over must not write, even where its row check would still match.
CURRENT_FENCE = " AND fence >= (SELECT CAST(value AS INTEGER) FROM meta WHERE key = 'fence_high')"


# A pending receipt whose next attempt is due (``:due``: now, or far ahead for a manual
# sync). After the wall clock stepped back, a receipt last written after now or due further
# ahead than the longest backoff (``:latest``) is due too.
_DUE = "(next_attempt_ms <= :due OR next_attempt_ms > :latest OR updated_ms > :now)"


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
    lease_until_ms: int
    """When this claim expires: past it, the receipt may be released and claimed again."""


@dataclass(frozen=True)
class SyncSummary:
    """The figures of the last delivery pass (``last_sync`` in the buffer status)."""

    timestamp_ms: int
    synced_count: int
    failed_count: int
    retried_count: int
    duration_seconds: float
    kind: str
    """``automatic`` or ``manual``."""


class Outbox:
    """The buffer's delivery side: claims, results, the DLQ, the audit log and the sync lease.

    Made by the ``Buffer`` (``buffer.outbox``) on its database; ``merge_remote`` merges an
    OFD's clock stamp into the buffer's hybrid logical clock and returns the merged stamp
    (``None``: refused, too far ahead).
    """

    def __init__(
        self,
        db: Database,
        wall: WallClock,
        merge_remote: Callable[[HlcStamp], HlcStamp | None],
        alive: Callable[[str | None], bool],
    ) -> None:
        self._db = db
        self._wall = wall
        self._merge_remote = merge_remote
        self._alive = alive  # whether a lease holder's process lives (``Owners.alive``)

    def now_ms(self) -> int:
        return self._wall()

    async def take_over(self, fence: int) -> int:
        """A new leader with ``fence`` starts: raise the buffer's highest token to it (older
        leaders' writes are refused from now on) and return their claims to ``pending``."""

        def write(conn: sqlite3.Connection) -> int:
            now = self._wall()
            conn.execute(
                "UPDATE meta SET value = MAX(CAST(value AS INTEGER), ?) WHERE key = 'fence_high'",
                (fence,),
            )
            rows = conn.execute(
                f"UPDATE receipts SET status = {PENDING}, lease_until_ms = NULL, updated_ms = ?"
                f" WHERE status = {SYNCING} AND fence < ? RETURNING id",
                (now, fence),
            ).fetchall()
            for row in rows:
                append_event(
                    conn,
                    now,
                    "warning",
                    "taken_over",
                    row["id"],
                    ReceiptStatus.SYNCING,
                    ReceiptStatus.PENDING,
                )
            return len(rows)

        return await self._db.write(write)

    async def fence_high(self) -> int:
        """The highest fencing token this buffer has accepted."""
        row = await self._db.read(
            lambda conn: conn.execute("SELECT value FROM meta WHERE key = 'fence_high'").fetchone()
        )
        return int(row[0]) if row else 0

    async def claim(
        self,
        *,
        limit: int,
        fence: int,
        lease_ms: int,
        ignore_timers: bool,
        max_delay_ms: int | None = None,
    ) -> list[Claimed]:
        """Claim up to ``limit`` due receipts in (FN, FD) order (all pending if
        ``ignore_timers``), never one behind an earlier document of its FN that is still
        unsent and not claimable now (backing off, or claimed by another pass): per FN, the
        OFD gets the documents in FD order. A document in the DLQ holds nothing back.

        Backoff timers survive a wall clock stepped back: a receipt last written "in the
        future" (``updated_ms`` after now) is due, and so is one whose due time is further
        ahead than the longest backoff, ``max_delay_ms``. Either way it is retried early by at
        most one backoff, never late by the size of the step.
        """

        def write(conn: sqlite3.Connection) -> list[Claimed]:
            _check_fence(conn, fence)
            now = self._wall()
            due = now if not ignore_timers else 2**62
            latest = 2**62 if max_delay_ms is None else now + max_delay_ms
            rows = conn.execute(
                f"WITH held (fn, fd) AS (SELECT fn, MIN(fd) FROM receipts WHERE status = {SYNCING}"
                f"  OR (status = {PENDING} AND NOT {_DUE}) GROUP BY fn)"
                f" UPDATE receipts SET status = {SYNCING}, lease_until_ms = :lease, fence = :fence,"
                " updated_ms = :now WHERE id IN (SELECT r.id FROM receipts r"
                " LEFT JOIN held h ON h.fn = r.fn"
                f" WHERE r.status = {PENDING} AND {_DUE}"
                " AND (h.fd IS NULL OR r.fd < h.fd) ORDER BY r.fn, r.fd LIMIT :limit)"
                " RETURNING id, pos_id, fn, fd, fp, hlc_wall, hlc_counter, hlc_node, document,"
                " attempts, lease_until_ms",
                {
                    "lease": now + lease_ms,
                    "fence": fence,
                    "now": now,
                    "due": due,
                    "latest": latest,
                    "limit": limit,
                },
            ).fetchall()
            conn.executemany(
                "INSERT INTO buffer_events (ts_ms, level, event, receipt_id, from_status,"
                f" to_status, message) VALUES (?, 'debug', 'claimed', ?, {PENDING}, {SYNCING}, ?)",
                [(now, row["id"], f"fence {fence}") for row in rows],
            )
            return sorted((_claimed(row) for row in rows), key=lambda c: (c.fn, c.fd))

        return await self._db.write(write)

    async def record_delivered(
        self, claimed: Claimed, fence: int, ofd_receipt_id: str | None, ofd_hlc: HlcStamp | None
    ) -> bool:
        """``synced``; merges the OFD's clock. False if the claim was no longer ours."""

        def write(conn: sqlite3.Connection) -> bool:
            now = self._wall()
            changed = conn.execute(
                f"UPDATE receipts SET status = {SYNCED}, synced_ms = ?, updated_ms = ?,"
                " ofd_receipt_id = ?, attempts = attempts + 1, last_error = NULL,"
                f" lease_until_ms = NULL WHERE id = ? AND status = {SYNCING} AND fence = ?"
                + CURRENT_FENCE,
                (now, now, ofd_receipt_id, claimed.receipt_id, fence),
            ).rowcount
            merged = self._merge_remote(ofd_hlc) if changed and ofd_hlc is not None else None
            if merged is not None:
                set_meta(conn, "hlc", str(merged))
            if changed:
                append_event(
                    conn,
                    now,
                    "info",
                    "synced",
                    claimed.receipt_id,
                    ReceiptStatus.SYNCING,
                    ReceiptStatus.SYNCED,
                )
            return bool(changed)

        return await self._db.write(write)

    async def record_rejected(
        self, claimed: Claimed, fence: int, status: int, code: str, reason: str
    ) -> bool:
        """``failed`` with a DLQ row saying why."""

        def write(conn: sqlite3.Connection) -> bool:
            now = self._wall()
            changed = conn.execute(
                f"UPDATE receipts SET status = {FAILED}, updated_ms = ?, attempts = attempts + 1,"
                " last_error = ?, lease_until_ms = NULL"
                f" WHERE id = ? AND status = {SYNCING} AND fence = ?" + CURRENT_FENCE,
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
                    ReceiptStatus.SYNCING,
                    ReceiptStatus.FAILED,
                    f"{code}: {reason}",
                )
            return bool(changed)

        return await self._db.write(write)

    async def record_transient(
        self, claimed: Claimed, fence: int, reason: str, delay_ms: int, count_attempt: bool = True
    ) -> bool:
        """Back to ``pending`` with its next attempt ``delay_ms`` from now."""

        def write(conn: sqlite3.Connection) -> bool:
            now = self._wall()
            changed = conn.execute(
                f"UPDATE receipts SET status = {PENDING}, updated_ms = ?, next_attempt_ms = ?,"
                " attempts = attempts + ?, last_error = ?, lease_until_ms = NULL"
                f" WHERE id = ? AND status = {SYNCING} AND fence = ?" + CURRENT_FENCE,
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
                    ReceiptStatus.SYNCING,
                    ReceiptStatus.PENDING,
                    reason,
                )
            return bool(changed)

        return await self._db.write(write)

    async def mark_delivered_below(self, fd: int) -> int:
        """Delivery ``device``: the register's FN reports every document below FD ``fd`` at
        the OFD; those still unsent here become ``synced`` (and need no confirmation)."""

        def write(conn: sqlite3.Connection) -> int:
            now = self._wall()
            rows = conn.execute(
                f"UPDATE receipts SET status = {SYNCED}, synced_ms = ?, confirmed = 1,"
                " lease_until_ms = NULL, last_error = NULL, updated_ms = ?"
                f" WHERE status IN {UNSENT} AND fd < ? RETURNING id, fd",
                (now, now, fd),
            ).fetchall()
            for row in rows:
                append_event(
                    conn,
                    now,
                    "info",
                    "synced",
                    row[0],
                    None,
                    ReceiptStatus.SYNCED,
                    f"FD {row[1]}: the register's FN has the OFD's receipt",
                )
            return len(rows)

        return await self._db.write(write)

    async def release_expired(self) -> int:
        """Return ``syncing`` receipts whose lease ran out to ``pending``."""

        def write(conn: sqlite3.Connection) -> int:
            now = self._wall()
            rows = conn.execute(
                f"UPDATE receipts SET status = {PENDING}, lease_until_ms = NULL, updated_ms = ?"
                f" WHERE status = {SYNCING} AND lease_until_ms < ? RETURNING id",
                (now, now),
            ).fetchall()
            for row in rows:
                append_event(
                    conn,
                    now,
                    "warning",
                    "lease_expired",
                    row["id"],
                    ReceiptStatus.SYNCING,
                    ReceiptStatus.PENDING,
                )
            return len(rows)

        return await self._db.write(write)

    async def release_fence(self, fence: int) -> int:
        """Give back every claim held under ``fence`` (clean shutdown)."""

        def write(conn: sqlite3.Connection) -> int:
            now = self._wall()
            rows = conn.execute(
                f"UPDATE receipts SET status = {PENDING}, lease_until_ms = NULL, updated_ms = ?"
                f" WHERE status = {SYNCING} AND fence = ? RETURNING id",
                (now, fence),
            ).fetchall()
            for row in rows:
                append_event(
                    conn,
                    now,
                    "info",
                    "released",
                    row["id"],
                    ReceiptStatus.SYNCING,
                    ReceiptStatus.PENDING,
                    "shutdown",
                )
            return len(rows)

        return await self._db.write(write)

    async def unconfirmed_fds(self, limit: int = 500) -> list[tuple[str, str, int]]:
        """Synced receipts the KKT has not been told about yet: (id, FN, FD)."""
        rows = await self._db.read(
            lambda conn: conn.execute(
                f"SELECT id, fn, fd FROM receipts WHERE status = {SYNCED} AND confirmed = 0"
                " ORDER BY fd LIMIT ?",
                (limit,),
            ).fetchall()
        )
        return [(row["id"], str(row["fn"]), int(row["fd"])) for row in rows]

    async def mark_confirmed(self, receipt_ids: list[str]) -> None:
        await self._db.write(
            lambda conn: conn.executemany(
                "UPDATE receipts SET confirmed = 1 WHERE id = ?", [(rid,) for rid in receipt_ids]
            )
        )

    async def requeue(self, receipt_id: str) -> bool:
        """A ``failed`` receipt back to ``pending`` (operator action); False if not in the DLQ."""

        def write(conn: sqlite3.Connection) -> bool:
            now = self._wall()
            changed = conn.execute(
                f"UPDATE receipts SET status = {PENDING}, next_attempt_ms = ?, updated_ms = ?,"
                f" last_error = NULL WHERE id = ? AND status = {FAILED}",
                (now, now, receipt_id),
            ).rowcount
            if changed:
                conn.execute("DELETE FROM dlq WHERE receipt_id = ?", (receipt_id,))
                append_event(
                    conn,
                    now,
                    "info",
                    "requeued",
                    receipt_id,
                    ReceiptStatus.FAILED,
                    ReceiptStatus.PENDING,
                )
            return bool(changed)

        return await self._db.write(write)

    async def save_last_sync(self, summary: SyncSummary) -> None:
        text = json.dumps(dataclasses.asdict(summary))
        await self._db.write(lambda conn: set_meta(conn, "last_sync", text))

    async def last_sync(self) -> SyncSummary | None:
        row = await self._db.read(
            lambda conn: conn.execute("SELECT value FROM meta WHERE key = 'last_sync'").fetchone()
        )
        return SyncSummary(**json.loads(row[0])) if row else None

    async def dlq_page(self, page: int, limit: int) -> list[dict[str, Any]]:
        rows = await self._db.read(
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
        rows = await self._db.read(lambda conn: conn.execute(sql, params).fetchall())
        return [dict(row) for row in rows]

    async def remaining(self) -> int:
        """Receipts the OFD still has to get: pending or being sent."""
        row = await self._db.read(
            lambda conn: conn.execute(
                "SELECT COALESCE(SUM(n), 0) FROM status_counts"
                f" WHERE status IN ({PENDING}, {SYNCING})"
            ).fetchone()
        )
        return int(row[0])

    # -- the sync lease of the sqlite backend (kkt_adapter.delivery.lease) ----------------

    async def acquire_lease(self, holder: str, ttl_ms: int) -> int | None:
        """The lease's fencing token for ``holder`` if the lease is free, expired, already
        ``holder``'s or held by a process that is dead (a new token when it changes hands);
        ``None`` while another live process holds it."""

        def write(conn: sqlite3.Connection) -> int | None:
            now = self._wall()
            row = conn.execute(
                "SELECT holder, fence, expires_ms FROM leases WHERE name = ?", (LEASE_NAME,)
            ).fetchone()
            held = row is not None and row["expires_ms"] > now
            if held and row["holder"] != holder and self._alive(row["holder"]):
                return None
            if held and row["holder"] == holder:
                fence = int(row["fence"])
            else:
                fence = _next_fence(conn)
                gone = f" ({row['holder']} is gone)" if held else ""
                append_event(
                    conn,
                    now,
                    "info",
                    "leader",
                    None,
                    None,
                    None,
                    f"{holder} leads, fence {fence}{gone}",
                )
            conn.execute(
                "INSERT INTO leases (name, holder, fence, expires_ms) VALUES (?, ?, ?, ?)"
                " ON CONFLICT (name) DO UPDATE SET holder = excluded.holder,"
                " fence = excluded.fence, expires_ms = excluded.expires_ms",
                (LEASE_NAME, holder, fence, now + ttl_ms),
            )
            return fence

        return await self._db.write(write)

    async def renew_lease(self, holder: str, fence: int, ttl_ms: int) -> bool:
        """Extend ``holder``'s unexpired lease under ``fence``; False if it is not theirs."""

        def write(conn: sqlite3.Connection) -> bool:
            now = self._wall()
            changed = conn.execute(
                "UPDATE leases SET expires_ms = ? WHERE name = ? AND holder = ? AND fence = ?"
                " AND expires_ms > ?",
                (now + ttl_ms, LEASE_NAME, holder, fence, now),
            ).rowcount
            return bool(changed)

        return await self._db.write(write)

    async def lease_holder(self) -> str | None:
        """Who holds the sqlite sync lease now (``None``: nobody, or it expired)."""

        def read(conn: sqlite3.Connection) -> str | None:
            row = conn.execute(
                "SELECT holder FROM leases WHERE name = ? AND expires_ms > ?",
                (LEASE_NAME, self._wall()),
            ).fetchone()
            return None if row is None else str(row["holder"])

        return await self._db.read(read)

    async def release_lease(self, holder: str, fence: int) -> None:
        """Let the lease go at once (a clean shutdown)."""
        await self._db.write(
            lambda conn: conn.execute(
                "UPDATE leases SET expires_ms = 0 WHERE name = ? AND holder = ? AND fence = ?",
                (LEASE_NAME, holder, fence),
            )
        )


def _next_fence(conn: sqlite3.Connection) -> int:
    """A token above every token this buffer has seen, from any backend: the sqlite lease's
    own counter lags behind ``fence_high`` after a spell on Redis, and a token below it would
    be refused by every claim."""
    row = conn.execute(
        "SELECT MAX(COALESCE((SELECT CAST(value AS INTEGER) FROM meta WHERE key = 'fence'), 0),"
        " (SELECT CAST(value AS INTEGER) FROM meta WHERE key = 'fence_high'))"
    ).fetchone()
    token = int(row[0]) + 1
    set_meta(conn, "fence", str(token))
    return token


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
        lease_until_ms=int(row["lease_until_ms"]),
    )
