"""The durable receipt buffer: the one door to its SQLite file.

Nothing outside ``kkt_adapter.buffer`` sees its connection or its SQL: callers use the
``Buffer`` (intake, reads, retention) and its ``outbox`` (delivery, the DLQ, the audit log, the
sync lease). Writes go through the group-committing ``Database``; each public coroutine returns
once its change is committed and fsync'd (promise I1). Status counters are exact and O(1)
(triggers keep ``status_counts``), so capacity checks and status reads stay cheap at a million
receipts.
"""

from __future__ import annotations

import contextlib
import json
import logging
import secrets
import shutil
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from kkt_adapter.buffer.cash import CashBook
from kkt_adapter.buffer.lookup import by_fiscal_tx, by_id_tx, by_key_tx, shift_page_tx
from kkt_adapter.buffer.outbox import Outbox
from kkt_adapter.buffer.owners import Owners
from kkt_adapter.buffer.recovery import (
    FnView,
    KnownRow,
    Recovered,
    fn_view_tx,
    insert_recovered_tx,
    known_tx,
    neighbours_tx,
)
from kkt_adapter.buffer.refunds import RefundClaim, check_claim_tx, earlier_tx, original_tx
from kkt_adapter.buffer.retention import (
    Leftover,
    Retention,
    clear_print_failed_tx,
    leftovers_tx,
    prune_batch_tx,
    prune_events_tx,
    prune_print_failed_tx,
)
from kkt_adapter.buffer.schema import migrate
from kkt_adapter.buffer.shift_reports import ShiftReports
from kkt_adapter.buffer.sql import (
    ACCEPTED,
    PENDING,
    PRINT_FAILED,
    SYNCED,
    SYNCING,
    UNSENT,
    append_event,
    get_meta,
    set_meta,
)
from kkt_adapter.domain.fiscal import FfdDocument, FiscalResult
from kkt_adapter.domain.journal import key_digest, read_mark
from kkt_adapter.domain.lifecycle import ReceiptStatus
from kkt_adapter.domain.refund import EarlierRefund, Original
from kkt_adapter.errors import (
    BufferFull,
    IdempotencyKeyReused,
    RecordLost,
    RequestInProgress,
    StorageUnavailable,
)
from kkt_adapter.hlc import HlcStamp, HybridClock, WallClock, stamp_between, system_wall_ms
from kkt_adapter.serial import Poster
from kkt_adapter.settings import default_of
from kkt_adapter.sqlite import Database, Staged, StorageHealth, connect

log = logging.getLogger(__name__)
STATUSES = tuple(ReceiptStatus)
BUFFER_FILE = "buffer.sqlite"
STORAGE_PROBE_BYTES = 8192
"""About what one receipt writes (row, document, key, event): a probe that small may fit in
space a full disk still has, and say "writable" while sales fail."""


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
    refund: RefundClaim | None = None
    """A refund that names its sale: checked against it in the same transaction as its
    insert (``kkt_adapter.buffer.refunds``)."""


@dataclass(frozen=True)
class IntakeStart:
    """What intake must do next for a key: print ``document``, or replay ``replay``."""

    receipt_id: str
    document: FfdDocument
    replay: dict[str, Any] | None
    queued: int = 0
    """Receipts waiting for the OFD when this one was accepted."""


@dataclass(frozen=True)
class AcceptedRow:
    """A receipt left ``accepted``, and the process that owns it (``Owners``)."""

    receipt_id: str
    idempotency_key: str
    owner: str | None


@dataclass(frozen=True)
class OldestUnsent:
    receipt_id: str
    created_ms: int


@dataclass(frozen=True)
class Disk:
    """The buffer's disk: free bytes (``None``: not measured) and the sales floor
    (``KKT_BUFFER_MIN_FREE_MB``; 0: no floor)."""

    free_bytes: int | None
    min_free_bytes: int


def _free_bytes(directory: Path) -> int:
    """Free bytes an unprivileged writer can use on the file system of ``directory``."""
    return shutil.disk_usage(directory).free


class Buffer:
    """The adapter's SQLite buffer (``<data_dir>/buffer.sqlite``)."""

    def __init__(
        self,
        data_dir: Path,
        *,
        capacity: int,
        min_free_bytes: int = 0,
        node_id: str | None = None,
        wall: WallClock = system_wall_ms,
        hlc_max_offset_ms: int = int(default_of("hlc_max_offset_seconds") * 1000),
        free_bytes: Callable[[Path], int] | None = None,
    ) -> None:
        self.path = data_dir / BUFFER_FILE
        self.capacity = capacity
        self.min_free_bytes = min_free_bytes
        self._free_bytes = free_bytes or _free_bytes
        self.hlc_max_offset_ms = hlc_max_offset_ms
        self._db = Database(self.path, migrate=migrate, name="buffer")
        self._wall = wall
        self._node_setting = node_id
        self._clock: HybridClock | None = None
        self._owners: Owners | None = None
        self.outbox = Outbox(self._db, wall, self.merge_remote, self.owner_alive)
        self.cash = CashBook(self._db, wall, lambda: self.owner)
        self.shift_reports = ShiftReports(self._db)

    def open(self) -> None:
        """Open and migrate the file, and restore the HLC (blocking: call off the loop)."""
        self._db.open()
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
        self._clock = HybridClock(node, last=max(stamps, default=None), wall=self._wall)
        self._owners = Owners(self.path.parent, node)
        self._owners.claim()

    def close(self) -> None:
        self._db.close()
        if self._owners is not None:
            self._owners.release()

    @property
    def owner(self) -> str:
        """This process's owner id on the data dir (rows it accepts carry it)."""
        assert self._owners is not None, "Buffer.open() first"
        return self._owners.me

    def owner_alive(self, owner: str | None) -> bool:
        """Whether the process that owns a row still lives (``Owners.alive``)."""
        assert self._owners is not None, "Buffer.open() first"
        return self._owners.alive(owner)

    @property
    def clock(self) -> HybridClock:
        """The hybrid logical clock of this buffer's node, restored by ``open`` (I5)."""
        assert self._clock is not None, "Buffer.open() first"
        return self._clock

    @property
    def node(self) -> str:
        """The buffer's node id (shared by every process on this data dir)."""
        return self.clock.node

    def merge_remote(self, stamp: HlcStamp) -> HlcStamp | None:
        """Merge another node's stamp (the OFD's) into the clock; the merged stamp, or ``None``
        when it is too far ahead to adopt (``KKT_HLC_MAX_OFFSET_SECONDS``)."""
        return self.clock.merge_remote(stamp, max_offset_ms=self.hlc_max_offset_ms)

    def leap_clock(self) -> HlcStamp:
        """Move the clock to the wall clock plus the largest offset a merged stamp may have.

        Used before receipts recovered from the KKT's journal are stamped: the buffer lost
        stamps (a restored backup), and documents delivered since then may carry stamps up to
        that far ahead, merged from the OFD; the recovered ones and everything after must come
        above them (I5)."""
        return self.clock.merge(HlcStamp(self._wall() + self.hlc_max_offset_ms, 0, self.clock.node))

    def now_ms(self) -> int:
        return self._wall()

    # -- intake ---------------------------------------------------------------------------

    async def intake(self, steps: Callable[[IntakeTx], Staged], device: Poster) -> Any:
        """Run an intake as one staged write: ``steps`` gets the buffer's intake statements on
        the writer's transaction (``IntakeTx``), and yields the calls to run on ``device``
        between its commits (the print). Returns what ``steps`` returns."""
        return await self._db.staged(lambda conn: steps(IntakeTx(self, conn)), device)

    def begin_intake_tx(self, conn: sqlite3.Connection, new: NewReceipt) -> IntakeStart:
        """Record ``new`` as ``accepted`` (or resolve its key: replay, retry or conflict).

        A refund that names its sale is checked here, on the writer's transaction that
        inserts it: the refunds of the sale it counts are the committed ones and those of
        the same group before it, so two refunds of one sale cannot both pass on the same
        quantity (docs/decisions.md, "Refunds"). A replay is not checked again: it is no
        new refund."""
        # One statement for the key and the counters: each statement on the writer is a
        # round trip through the GIL, and intake is the hot path.
        known = conn.execute(
            "SELECT k.fingerprint, r.response, r.id, r.status, r.document,"
            " (SELECT COALESCE(SUM(n), 0) FROM status_counts"
            f"  WHERE status NOT IN ({SYNCED}, {PRINT_FAILED})),"
            " (SELECT COALESCE(SUM(n), 0) FROM status_counts"
            f"  WHERE status IN ({PENDING}, {SYNCING}))"
            " FROM (SELECT 1) LEFT JOIN idempotency_keys k ON k.key IN (?, ?)"
            " LEFT JOIN receipts r ON r.id = k.receipt_id",
            # A receipt recovered from the KKT's journal is known by the key's digest.
            (new.idempotency_key, key_digest(new.idempotency_key)),
        ).fetchone()
        if known["id"] is not None:
            return self._resolve_known_key(conn, new, known)
        refund_lines = None if new.refund is None else check_claim_tx(conn, new.refund)
        unsynced, queued = int(known[5]), int(known[6])
        if unsynced >= self.capacity:
            raise BufferFull(
                f"the buffer holds {unsynced} unsynced receipts (capacity {self.capacity})",
                details={"reason": "capacity", "capacity": self.capacity, "unsynced": unsynced},
                retry_after=30,
            )
        if self.min_free_bytes:
            # One statvfs (microseconds) per sale, checked before the KKT prints, so the
            # refusal comes while there is still room to record and deliver what was sold.
            free = self._free_bytes(self.path.parent)
            if free < self.min_free_bytes:
                raise BufferFull(
                    f"the buffer's disk has {free // 2**20} MB free, below the floor of"
                    f" {self.min_free_bytes // 2**20} MB (KKT_BUFFER_MIN_FREE_MB)",
                    details={
                        "reason": "disk",
                        "free_bytes": free,
                        "min_free_bytes": self.min_free_bytes,
                    },
                    retry_after=30,
                )
        now = self._wall()
        stamp = self._tick()
        conn.execute(
            "INSERT INTO receipts (id, idempotency_key, pos_id, type, total, status, created_ms,"
            " updated_ms, hlc_wall, hlc_counter, hlc_node, payload, document, owner, refund_of,"
            f" refund_lines) VALUES (?, ?, ?, ?, ?, {ACCEPTED}, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
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
                self.owner,
                None if new.refund is None else new.refund.refund_of,
                refund_lines,
            ),
        )
        conn.execute(
            "INSERT INTO idempotency_keys (key, receipt_id, fingerprint, created_ms)"
            " VALUES (?, ?, ?, ?)",
            (new.idempotency_key, new.receipt_id, new.fingerprint, now),
        )
        append_event(conn, now, "info", "accepted", new.receipt_id, None, ReceiptStatus.ACCEPTED)
        return IntakeStart(new.receipt_id, new.document, None, queued=queued)

    def _resolve_known_key(
        self, conn: sqlite3.Connection, new: NewReceipt, known: sqlite3.Row
    ) -> IntakeStart:
        if known["fingerprint"] != new.fingerprint:
            raise IdempotencyKeyReused(
                "this Idempotency-Key was used for a different receipt",
                details={"receipt_id": known["id"]},
            )
        status = known["status"]
        if status == ReceiptStatus.ACCEPTED:
            raise RequestInProgress(
                "a request with this Idempotency-Key is still being processed",
                details={"receipt_id": known["id"]},
                retry_after=1,
            )
        if status == ReceiptStatus.PRINT_FAILED:
            # Printing it now makes it a refund again: checked as a new one (its own failed
            # row does not count), since others may have been taken meanwhile.
            refund_lines = None if new.refund is None else check_claim_tx(conn, new.refund)
            now = self._wall()
            conn.execute(
                f"UPDATE receipts SET status = {ACCEPTED}, updated_ms = ?, owner = ?,"
                " refund_lines = COALESCE(?, refund_lines) WHERE id = ?",
                (now, self.owner, refund_lines, known["id"]),
            )
            append_event(
                conn,
                now,
                "info",
                "print_retry",
                known["id"],
                ReceiptStatus.PRINT_FAILED,
                ReceiptStatus.ACCEPTED,
            )
            document = json.loads(known["document"])
            return IntakeStart(known["id"], document, None, queued=int(known[6]))
        replay = json.loads(known["response"]) if known["response"] else None
        return IntakeStart(known["id"], json.loads(known["document"]), replay)

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
        return await self._db.write(
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
        values = (
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
        )
        update = (
            f"UPDATE receipts SET status = {PENDING}, updated_ms = ?, next_attempt_ms = ?,"
            " hlc_wall = ?, hlc_counter = ?, hlc_node = ?,"
            " fn = ?, fd = ?, fp = ?, shift = ?, number_in_shift = ?, fiscal_at = ?, qr = ?,"
            " document = ?, response = ?, last_error = NULL WHERE id = ? AND status = "
        )
        before = ReceiptStatus.ACCEPTED
        if not conn.execute(update + ACCEPTED, values).rowcount:
            # Settled as not printed while the KKT was printing it (I8: the KKT is right).
            before = ReceiptStatus.PRINT_FAILED
            if not conn.execute(update + PRINT_FAILED, values).rowcount:
                return _recorded_already(conn, receipt_id, result)
        append_event(
            conn,
            now,
            "info" if before == ReceiptStatus.ACCEPTED else "warning",
            "fiscalized",
            receipt_id,
            before,
            ReceiptStatus.PENDING,
            f"FD {result.fd}",
        )
        return body

    async def record_print_failed(self, receipt_id: str, reason: str) -> None:
        """The device refused: ``print_failed``; the POS may retry with the same key."""
        await self._db.write(lambda conn: self.print_failed_tx(conn, receipt_id, reason))

    def print_failed_tx(self, conn: sqlite3.Connection, receipt_id: str, reason: str) -> None:
        """``record_print_failed`` inside the caller's transaction."""
        now = self._wall()
        changed = conn.execute(
            f"UPDATE receipts SET status = {PRINT_FAILED}, updated_ms = ?, last_error = ?"
            f" WHERE id = ? AND status = {ACCEPTED}",
            (now, reason, receipt_id),
        ).rowcount
        if not changed:
            return  # settled already (recorded from the KKT by another process)
        append_event(
            conn,
            now,
            "warning",
            "print_failed",
            receipt_id,
            ReceiptStatus.ACCEPTED,
            ReceiptStatus.PRINT_FAILED,
            reason,
        )

    async def accepted(self) -> list[AcceptedRow]:
        """Receipts left ``accepted`` with their owners: to reconcile those whose owner died."""
        rows = await self._db.read(
            lambda conn: conn.execute(
                f"SELECT id, idempotency_key, owner FROM receipts WHERE status = {ACCEPTED}"
                " ORDER BY created_ms"
            ).fetchall()
        )
        return [AcceptedRow(row["id"], row["idempotency_key"], row["owner"]) for row in rows]

    # -- the journal check (kkt_adapter.journal, I8) --------------------------------------

    async def fn_view(self, fn: str) -> FnView:
        """The highest FD of ``fn`` ever held, and other FNs' documents still to deliver."""
        return await self._db.read(lambda conn: fn_view_tx(conn, fn))

    async def known(self, receipt_ids: list[str]) -> dict[str, KnownRow]:
        """The rows of these receipt ids that the buffer holds."""
        if not receipt_ids:
            return {}
        return await self._db.read(lambda conn: known_tx(conn, receipt_ids))

    async def late_stamp(
        self, result: FiscalResult, taken: HlcStamp, *, scan: bool = True
    ) -> HlcStamp:
        """The stamp for a document recorded late (a leftover, or recovered from the journal).

        The stamp it was printed with, from its document (tag 1084), merged into the clock.
        Without one (printed before stamps travelled in documents): ``taken`` (under the
        device gate, above every stamp) if no later document of its FN was recorded yet, else
        one between its FD neighbours' stamps (``scan``: look for them), so HLC order stays FD
        order (I5)."""
        mark = read_mark(result.document)
        if mark is not None and mark.stamp is not None:
            try:
                own = HlcStamp.parse(mark.stamp)
            except ValueError:
                pass
            else:
                self.clock.merge(own)  # later stamps come above it
                return own
        if not scan:
            return taken
        lower, upper = await self._db.read(lambda conn: neighbours_tx(conn, result.fn, result.fd))
        if upper is None:
            return taken
        between = stamp_between(lower, upper, self.node)
        if between is None:
            log.warning("no HLC stamp fits between FD %d's neighbours: stamped now", result.fd)
            return taken
        return between

    async def insert_recovered(self, rows: list[Recovered]) -> int:
        """Receipts from the KKT's journal that the buffer lacked, as ``pending``."""
        return await self._db.write(lambda conn: insert_recovered_tx(conn, self._wall(), rows))

    # -- reads ----------------------------------------------------------------------------

    async def get_receipt(self, receipt_id: str) -> dict[str, Any] | None:
        """One receipt row as a dict, or ``None``."""

        return await self._db.read(lambda conn: by_id_tx(conn, receipt_id))

    async def refunds(self, receipt_id: str) -> tuple[Original, list[EarlierRefund]] | None:
        """A receipt as a sale that may be refunded, and the refunds naming it so far."""

        def read(conn: sqlite3.Connection) -> tuple[Original, list[EarlierRefund]] | None:
            original = original_tx(conn, receipt_id)
            return None if original is None else (original, earlier_tx(conn, receipt_id))

        return await self._db.read(read)

    async def find_by_key(self, idempotency_key: str) -> dict[str, Any] | None:
        """The receipt posted with this ``Idempotency-Key`` (or recovered under its digest)."""
        return await self._db.read(lambda conn: by_key_tx(conn, idempotency_key))

    async def find_by_fiscal(self, fn: str, fd: int) -> dict[str, Any] | None:
        """The receipt that is fiscal document ``fd`` of FN ``fn``."""
        return await self._db.read(lambda conn: by_fiscal_tx(conn, fn, fd))

    async def shift_receipts(
        self, shift: int, fn: str | None, *, page: int, limit: int
    ) -> list[dict[str, Any]]:
        """One page of a shift's fiscalized receipts, in number-in-shift order."""
        return await self._db.read(lambda conn: shift_page_tx(conn, shift, fn, page, limit))

    async def counts(self) -> dict[str, int]:
        """Receipts per status, plus ``total`` and ``dlq``."""

        def read(conn: sqlite3.Connection) -> dict[str, int]:
            counts = {
                row[0]: int(row[1]) for row in conn.execute("SELECT status, n FROM status_counts")
            }
            counts["total"] = sum(counts.values())
            counts["dlq"] = int(conn.execute("SELECT COUNT(*) FROM dlq").fetchone()[0])
            return counts

        return await self._db.read(read)

    async def oldest_unsent(self) -> OldestUnsent | None:
        """The oldest fiscalized receipt the OFD has not acknowledged."""

        def read(conn: sqlite3.Connection) -> OldestUnsent | None:
            row = conn.execute(
                "SELECT id, created_ms FROM receipts INDEXED BY receipts_unsent"
                f" WHERE status IN {UNSENT} ORDER BY created_ms LIMIT 1"
            ).fetchone()
            return OldestUnsent(row["id"], row["created_ms"]) if row else None

        return await self._db.read(read)

    def disk(self) -> Disk:
        """Free space on the buffer's file system and the floor below which sales stop
        (``free_bytes`` ``None``: it could not be measured). One ``statvfs``: microseconds."""
        try:
            free: int | None = self._free_bytes(self.path.parent)
        except OSError:
            free = None
        return Disk(free, self.min_free_bytes)

    async def storage(self) -> StorageHealth:
        """Whether the buffer can be written. While the last commit failed (a full disk), a
        probe write the size of a receipt finds out first whether it recovered, even with no
        sale coming."""
        if not self._db.storage.available:
            probe = f"{self._wall()}:".ljust(STORAGE_PROBE_BYTES, "x")
            with contextlib.suppress(StorageUnavailable):
                await self._db.write(lambda conn: set_meta(conn, "storage_probe", probe))
        return self._db.storage

    async def log_event(
        self, level: str, event: str, message: str, receipt_id: str | None = None
    ) -> None:
        """Append an audit event that is not a receipt transition (shift actions, start-up)."""
        await self._db.write(
            lambda conn: append_event(
                conn, self._wall(), level, event, receipt_id, None, None, message
            )
        )

    # -- housekeeping ---------------------------------------------------------------------

    async def prune(self, retention: Retention) -> int:
        """Prune until nothing is due; one bounded write per batch. Returns receipts deleted."""
        total = 0
        while True:
            deleted = await self._db.write(
                lambda conn: prune_batch_tx(conn, self._wall(), retention)
            )
            total += deleted
            if deleted < retention.batch:
                break
        while deleted := await self._db.write(
            lambda conn: prune_print_failed_tx(conn, self._wall(), retention)
        ):
            total += deleted
        before = self._wall() - max(retention.synced_ms, retention.dlq_ms)
        while await self._db.write(lambda conn: prune_events_tx(conn, before, retention.batch)):
            pass
        return total

    async def clear_print_failed(self) -> int:
        """Delete every ``print_failed`` receipt (an operator's action); how many went."""
        return await self._db.write(lambda conn: clear_print_failed_tx(conn, self._wall()))

    async def leftovers(self, idle_before_ms: int) -> list[Leftover]:
        """Receipts ``accepted`` and untouched since ``idle_before_ms``: their intake failed to
        record its outcome (e.g. the disk was full) and nothing is working on them."""
        return await self._db.read(lambda conn: leftovers_tx(conn, idle_before_ms))

    def _tick(self) -> HlcStamp:
        """Next HLC stamp. It is stored in the receipt's own row, and ``open`` restores the
        clock from the highest stamp stored, so it never goes back (I5)."""
        return self.clock.now()


class IntakeTx:
    """The buffer's intake statements on the writer's transaction of one staged intake."""

    def __init__(self, buffer: Buffer, conn: sqlite3.Connection) -> None:
        self._buffer = buffer
        self._conn = conn

    def begin(self, new: NewReceipt) -> IntakeStart:
        """``accepted`` (or the key resolved: replay, retry of a failed print, conflict)."""
        return self._buffer.begin_intake_tx(self._conn, new)

    def record_fiscal(
        self,
        receipt_id: str,
        result: FiscalResult,
        answer: Callable[[], dict[str, Any]],
        stamp: HlcStamp | None,
    ) -> dict[str, Any]:
        """``pending`` with its fiscal attributes; the answer kept for replays, returned."""
        return self._buffer.record_fiscal_tx(self._conn, receipt_id, result, answer, stamp)

    def print_failed(self, receipt_id: str, reason: str) -> None:
        """``print_failed``: the device refused."""
        self._buffer.print_failed_tx(self._conn, receipt_id, reason)


def _recorded_already(
    conn: sqlite3.Connection, receipt_id: str, result: FiscalResult
) -> dict[str, Any]:
    """A record that changed no row: fine if another process recorded the same document (its
    answer is returned); anything else is lost loudly (``RecordLost``)."""
    row = conn.execute(
        "SELECT status, fn, fd, response FROM receipts WHERE id = ?", (receipt_id,)
    ).fetchone()
    if row is not None and (row["fn"], row["fd"]) == (result.fn, result.fd) and row["response"]:
        answer: dict[str, Any] = json.loads(row["response"])
        return answer
    found = "no row" if row is None else f"status {row['status']}, FD {row['fd']}"
    raise RecordLost(
        f"receipt {receipt_id} was fiscalized as FN {result.fn} FD {result.fd} but its row"
        f" holds {found}: not recorded; the KKT's journal keeps the document",
        details={"receipt_id": receipt_id, "fn": result.fn, "fd": result.fd},
    )


def _dumps(value: Any) -> str:
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode()
