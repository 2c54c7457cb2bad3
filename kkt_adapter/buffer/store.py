"""The durable receipt buffer: every SQL statement the adapter runs on it lives here.

Writes go through the group-committing ``Database``; each public coroutine returns once its
change is committed and fsync'd (promise I1). Status counters are exact and O(1) (triggers keep
``status_counts``), so capacity checks and status reads stay cheap at a million receipts.
"""

from __future__ import annotations

import json
import secrets
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from kkt_adapter.buffer.schema import migrate
from kkt_adapter.domain.fiscal import FfdDocument, FiscalResult
from kkt_adapter.errors import BufferFull, IdempotencyKeyReused, RequestInProgress
from kkt_adapter.hlc import HlcStamp, HybridClock, WallClock, system_wall_ms
from kkt_adapter.sqlite import Database, connect

STATUSES = ("accepted", "print_failed", "pending", "syncing", "synced", "failed")
BUFFER_FILE = "buffer.sqlite"


@dataclass(frozen=True)
class NewReceipt:
    """A validated receipt about to enter the buffer."""

    receipt_id: str
    idempotency_key: str
    fingerprint: str
    pos_id: str
    type: str
    total: int
    payload: dict[str, Any]
    document: FfdDocument


@dataclass(frozen=True)
class IntakeStart:
    """What intake must do next for a key: print ``document``, or replay ``replay``."""

    receipt_id: str
    document: FfdDocument
    replay: dict[str, Any] | None
    retry: bool
    queued: int = 0
    """Receipts waiting for the OFD when this one was accepted."""


@dataclass(frozen=True)
class OldestUnsent:
    receipt_id: str
    created_ms: int


class Buffer:
    """The adapter's SQLite buffer (``<data_dir>/buffer.sqlite``)."""

    def __init__(
        self,
        data_dir: Path,
        *,
        capacity: int,
        node_id: str | None = None,
        wall: WallClock = system_wall_ms,
    ) -> None:
        self.path = data_dir / BUFFER_FILE
        self.capacity = capacity
        self.db = Database(self.path, migrate=migrate, name="buffer")
        self._wall = wall
        self._node_setting = node_id
        self.clock: HybridClock | None = None

    def open(self) -> None:
        """Open and migrate the file, and restore the HLC (blocking: call off the loop)."""
        self.db.open()
        conn = connect(self.path)
        try:
            conn.execute("BEGIN IMMEDIATE")
            node = self._node_setting or get_meta(conn, "node_id") or f"n{secrets.token_hex(4)}"
            set_meta(conn, "node_id", node)
            last = get_meta(conn, "hlc")
            top = conn.execute(
                "SELECT hlc_wall, hlc_counter FROM receipts"
                " ORDER BY hlc_wall DESC, hlc_counter DESC LIMIT 1"
            ).fetchone()
            conn.execute("COMMIT")
        finally:
            conn.close()
        stamps = [HlcStamp.parse(last)] if last else []
        if top is not None:
            stamps.append(HlcStamp(int(top[0]), int(top[1]), node))
        self.clock = HybridClock(node, last=max(stamps, default=None), wall=self._wall)

    def close(self) -> None:
        self.db.close()

    @property
    def node(self) -> str:
        """The buffer's node id (shared by every process on this data dir)."""
        assert self.clock is not None, "Buffer.open() first"
        return self.clock.node

    def now_ms(self) -> int:
        return self._wall()

    # -- intake ---------------------------------------------------------------------------

    async def begin_intake(self, new: NewReceipt) -> IntakeStart:
        """Record ``new`` as ``accepted`` (or resolve its key: replay, retry or conflict)."""
        return await self.db.write(lambda conn: self.begin_intake_tx(conn, new))

    def begin_intake_tx(self, conn: sqlite3.Connection, new: NewReceipt) -> IntakeStart:
        """``begin_intake`` inside the caller's transaction."""
        # One statement for the key and the counters: each statement on the writer is a
        # round trip through the GIL, and intake is the hot path.
        known = conn.execute(
            "SELECT k.fingerprint, r.response, r.id, r.status, r.document,"
            " (SELECT COALESCE(SUM(n), 0) FROM status_counts WHERE status != 'synced'),"
            " (SELECT COALESCE(SUM(n), 0) FROM status_counts"
            "  WHERE status IN ('pending', 'syncing'))"
            " FROM (SELECT 1) LEFT JOIN idempotency_keys k ON k.key = ?"
            " LEFT JOIN receipts r ON r.id = k.receipt_id",
            (new.idempotency_key,),
        ).fetchone()
        if known["id"] is not None:
            return self._resolve_known_key(conn, new, known)
        unsynced, queued = int(known[5]), int(known[6])
        if unsynced >= self.capacity:
            raise BufferFull(
                f"the buffer holds {unsynced} unsynced receipts (capacity {self.capacity})",
                details={"capacity": self.capacity, "unsynced": unsynced},
                retry_after=30,
            )
        now = self._wall()
        stamp = self._tick()
        conn.execute(
            "INSERT INTO receipts (id, idempotency_key, pos_id, type, total, status, created_ms,"
            " updated_ms, hlc_wall, hlc_counter, hlc_node, payload, document)"
            " VALUES (?, ?, ?, ?, ?, 'accepted', ?, ?, ?, ?, ?, ?, ?)",
            (
                new.receipt_id,
                new.idempotency_key,
                new.pos_id,
                new.type,
                new.total,
                now,
                now,
                stamp.wall_ms,
                stamp.counter,
                stamp.node,
                _dumps(new.payload),
                _dumps(new.document),
            ),
        )
        conn.execute(
            "INSERT INTO idempotency_keys (key, receipt_id, fingerprint, created_ms)"
            " VALUES (?, ?, ?, ?)",
            (new.idempotency_key, new.receipt_id, new.fingerprint, now),
        )
        append_event(conn, now, "info", "accepted", new.receipt_id, None, "accepted")
        return IntakeStart(new.receipt_id, new.document, None, retry=False, queued=queued)

    def _resolve_known_key(
        self, conn: sqlite3.Connection, new: NewReceipt, known: sqlite3.Row
    ) -> IntakeStart:
        if known["fingerprint"] != new.fingerprint:
            raise IdempotencyKeyReused(
                "this Idempotency-Key was used for a different receipt",
                details={"receipt_id": known["id"]},
            )
        status = known["status"]
        if status == "accepted":
            raise RequestInProgress(
                "a request with this Idempotency-Key is still being processed",
                details={"receipt_id": known["id"]},
                retry_after=1,
            )
        if status == "print_failed":
            now = self._wall()
            conn.execute(
                "UPDATE receipts SET status = 'accepted', updated_ms = ? WHERE id = ?",
                (now, known["id"]),
            )
            append_event(conn, now, "info", "print_retry", known["id"], "print_failed", "accepted")
            document = json.loads(known["document"])
            return IntakeStart(known["id"], document, None, retry=True, queued=int(known[6]))
        replay = json.loads(known["response"]) if known["response"] else None
        return IntakeStart(known["id"], json.loads(known["document"]), replay, retry=False)

    async def record_fiscal(
        self,
        receipt_id: str,
        result: FiscalResult,
        answer: Callable[[], dict[str, Any]],
        stamp: HlcStamp | None = None,
    ) -> dict[str, Any]:
        """Mark a printed receipt ``pending`` with its fiscal attributes.

        ``answer()`` builds the response kept for idempotent replays; it is stored in the same
        transaction and returned.
        """
        return await self.db.write(
            lambda conn: self.record_fiscal_tx(conn, receipt_id, result, answer, stamp)
        )

    def record_fiscal_tx(
        self,
        conn: sqlite3.Connection,
        receipt_id: str,
        result: FiscalResult,
        answer: Callable[[], dict[str, Any]],
        stamp: HlcStamp | None = None,
    ) -> dict[str, Any]:
        """``record_fiscal`` inside the caller's transaction.

        ``stamp`` is the fiscalization stamp taken under the device gate (HLC order follows
        FD order); without one the receipt is stamped now.
        """
        now = self._wall()
        stamp = stamp or self._tick()
        body = answer()
        conn.execute(
            "UPDATE receipts SET status = 'pending', updated_ms = ?, next_attempt_ms = ?,"
            " hlc_wall = ?, hlc_counter = ?, hlc_node = ?,"
            " fn = ?, fd = ?, fp = ?, shift = ?, number_in_shift = ?, fiscal_at = ?, qr = ?,"
            " document = ?, response = ?, last_error = NULL WHERE id = ? AND status = 'accepted'",
            (
                now,
                now,
                stamp.wall_ms,
                stamp.counter,
                stamp.node,
                result.fn,
                result.fd,
                result.fp,
                result.shift,
                result.number_in_shift,
                result.datetime.isoformat(),
                result.qr,
                _dumps(result.document),
                _dumps(body),
                receipt_id,
            ),
        )
        append_event(
            conn, now, "info", "fiscalized", receipt_id, "accepted", "pending", f"FD {result.fd}"
        )
        return body

    async def record_print_failed(self, receipt_id: str, reason: str) -> None:
        """The device refused: ``print_failed``; the POS may retry with the same key."""
        await self.db.write(lambda conn: self.print_failed_tx(conn, receipt_id, reason))

    def print_failed_tx(self, conn: sqlite3.Connection, receipt_id: str, reason: str) -> None:
        """``record_print_failed`` inside the caller's transaction."""
        now = self._wall()
        conn.execute(
            "UPDATE receipts SET status = 'print_failed', updated_ms = ?, last_error = ?"
            " WHERE id = ? AND status = 'accepted'",
            (now, reason, receipt_id),
        )
        append_event(
            conn, now, "warning", "print_failed", receipt_id, "accepted", "print_failed", reason
        )

    async def accepted_ids(self) -> list[str]:
        """Receipts left ``accepted`` (a crash between intake and record): to reconcile."""
        rows = await self.db.read(
            lambda conn: conn.execute(
                "SELECT id FROM receipts WHERE status = 'accepted' ORDER BY created_ms"
            ).fetchall()
        )
        return [row["id"] for row in rows]

    # -- reads ----------------------------------------------------------------------------

    async def get_receipt(self, receipt_id: str) -> dict[str, Any] | None:
        """One receipt row as a dict, or ``None``."""

        def read(conn: sqlite3.Connection) -> dict[str, Any] | None:
            row = conn.execute(
                "SELECT r.*, d.code AS dlq_code, d.reason AS dlq_reason FROM receipts r"
                " LEFT JOIN dlq d ON d.receipt_id = r.id WHERE r.id = ?",
                (receipt_id,),
            ).fetchone()
            return dict(row) if row is not None else None

        return await self.db.read(read)

    async def counts(self) -> dict[str, int]:
        """Receipts per status, plus ``total`` and ``dlq``."""

        def read(conn: sqlite3.Connection) -> dict[str, int]:
            counts = {
                row[0]: int(row[1]) for row in conn.execute("SELECT status, n FROM status_counts")
            }
            counts["total"] = sum(counts.values())
            counts["dlq"] = int(conn.execute("SELECT COUNT(*) FROM dlq").fetchone()[0])
            return counts

        return await self.db.read(read)

    async def oldest_unsent(self) -> OldestUnsent | None:
        """The oldest fiscalized receipt the OFD has not acknowledged."""

        def read(conn: sqlite3.Connection) -> OldestUnsent | None:
            row = conn.execute(
                "SELECT id, created_ms FROM receipts INDEXED BY receipts_unsent"
                " WHERE status IN ('pending', 'syncing', 'failed') ORDER BY created_ms LIMIT 1"
            ).fetchone()
            return OldestUnsent(row["id"], row["created_ms"]) if row else None

        return await self.db.read(read)

    async def log_event(
        self, level: str, event: str, message: str, receipt_id: str | None = None
    ) -> None:
        """Append an audit event that is not a receipt transition (shift actions, start-up)."""
        await self.db.write(
            lambda conn: append_event(
                conn, self._wall(), level, event, receipt_id, None, None, message
            )
        )

    def _tick(self) -> HlcStamp:
        """Next HLC stamp. It is stored in the receipt's own row, and ``open`` restores the
        clock from the highest stamp stored, so it never goes back (I5)."""
        assert self.clock is not None, "Buffer.open() first"
        return self.clock.now()


def append_event(
    conn: sqlite3.Connection,
    ts_ms: int,
    level: str,
    event: str,
    receipt_id: str | None,
    from_status: str | None,
    to_status: str | None,
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


def _dumps(value: Any) -> str:
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode()
