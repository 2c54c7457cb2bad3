"""The SQLite buffer: group commit, idempotency resolution, capacity, counters, HLC."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path

import pytest
from fakes import Wall, begin_intake, write_directly

from kkt_adapter.buffer import Buffer, NewReceipt
from kkt_adapter.buffer.schema import migrate
from kkt_adapter.domain.fiscal import FiscalResult
from kkt_adapter.errors import (
    BufferFull,
    IdempotencyKeyReused,
    RecordLost,
    RequestInProgress,
    StorageUnavailable,
)
from kkt_adapter.hlc import HlcStamp
from kkt_adapter.sqlite import Database


@pytest.fixture
async def buffer(tmp_path: Path) -> AsyncIterator[Buffer]:
    buf = Buffer(tmp_path, capacity=5, node_id="n1", wall=Wall(1_000_000))
    buf.open()
    yield buf
    buf.close()


def new(n: int, key: str | None = None, fingerprint: str = "f") -> NewReceipt:
    return NewReceipt(
        receipt_id=f"R{n:04d}",
        idempotency_key=key or f"k{n}",
        fingerprint=fingerprint,
        pos_id="POS-1",
        type="sale",
        total=100 * n,
        payload={"n": n},
        document={"1192": f"R{n:04d}"},
    )


def fiscal(receipt_id: str, fd: int) -> FiscalResult:
    return FiscalResult(
        receipt_id=receipt_id,
        fn="9999000000000001",
        fd=fd,
        fp="0123456789",
        shift=1,
        number_in_shift=fd,
        datetime=datetime.fromisoformat("2026-11-24T13:38:00+03:00"),
        qr="t=...",
        document={"1192": receipt_id, "1040": fd},
    )


async def test_concurrent_writes_are_group_committed_and_all_durable(tmp_path: Path) -> None:
    db = Database(tmp_path / "g.sqlite", migrate=migrate, name="buffer")
    db.open()
    await db.write(lambda c: c.execute("CREATE TABLE t (v INTEGER)"))
    await asyncio.gather(
        *(db.write(lambda c, v=v: c.execute("INSERT INTO t VALUES (?)", (v,))) for v in range(200))
    )
    db.close()
    with sqlite3.connect(tmp_path / "g.sqlite") as other:
        assert other.execute("SELECT COUNT(*), SUM(v) FROM t").fetchone() == (200, sum(range(200)))


async def test_one_failing_write_does_not_undo_its_batch_neighbours(tmp_path: Path) -> None:
    db = Database(tmp_path / "g.sqlite", migrate=migrate, name="buffer")
    db.open()
    await db.write(lambda c: c.execute("CREATE TABLE t (v INTEGER)"))

    def bad(conn: sqlite3.Connection) -> None:
        conn.execute("INSERT INTO t VALUES (-1)")
        raise BufferFull("refused")

    results = await asyncio.gather(
        db.write(lambda c: c.execute("INSERT INTO t VALUES (1)")),
        db.write(bad),
        db.write(lambda c: c.execute("INSERT INTO t VALUES (2)")),
        return_exceptions=True,
    )
    assert isinstance(results[1], BufferFull)
    rows = await db.read(lambda c: c.execute("SELECT v FROM t ORDER BY v").fetchall())
    assert [row[0] for row in rows] == [1, 2]
    db.close()


async def test_a_storage_failure_fails_the_batch_with_storage_unavailable(tmp_path: Path) -> None:
    db = Database(tmp_path / "g.sqlite", migrate=migrate, name="buffer")
    db.open()
    with pytest.raises(StorageUnavailable):
        await db.write(lambda c: c.execute("INSERT INTO no_such_table VALUES (1)"))
    assert await db.read(lambda c: c.execute("SELECT 1").fetchone()[0]) == 1  # still usable
    db.close()


async def test_intake_lifecycle_counts_and_replay(buffer: Buffer) -> None:
    start = await begin_intake(buffer, new(1))
    assert start.replay is None and start.receipt_id == "R0001"
    assert (await buffer.counts())["accepted"] == 1
    body = await buffer.record_fiscal("R0001", fiscal("R0001", 2), lambda: {"pos": 1})
    assert body == {"pos": 1}
    counts = await buffer.counts()
    assert (counts["accepted"], counts["pending"], counts["total"]) == (0, 1, 1)
    repeat = await begin_intake(buffer, new(99, key="k1"))
    assert repeat.replay == {"pos": 1} and repeat.receipt_id == "R0001"


async def test_key_conflicts(buffer: Buffer) -> None:
    await begin_intake(buffer, new(1))
    with pytest.raises(RequestInProgress):
        await begin_intake(buffer, new(2, key="k1"))
    with pytest.raises(IdempotencyKeyReused):
        await begin_intake(buffer, new(3, key="k1", fingerprint="other"))


async def test_print_failed_then_retry_with_the_same_key(buffer: Buffer) -> None:
    await begin_intake(buffer, new(1))
    await buffer.record_print_failed("R0001", "out_of_paper")
    row = await buffer.get_receipt("R0001")
    assert row is not None and row["status"] == "print_failed"
    assert row["last_error"] == "out_of_paper"
    retry = await begin_intake(buffer, new(7, key="k1"))
    assert retry.receipt_id == "R0001"  # the failed receipt again, not a new one
    assert (await buffer.counts())["accepted"] == 1


async def test_capacity_counts_everything_not_synced(buffer: Buffer) -> None:
    for n in range(5):
        await begin_intake(buffer, new(n))
    with pytest.raises(BufferFull) as caught:
        await begin_intake(buffer, new(5))
    assert caught.value.retry_after == 30  # the POS is told when to try again
    assert caught.value.details == {"reason": "capacity", "capacity": 5, "unsynced": 5}
    assert (await buffer.counts())["total"] == 5


async def test_hlc_is_persisted_and_never_goes_back_across_restarts(tmp_path: Path) -> None:
    wall = Wall(5_000_000)
    first = Buffer(tmp_path, capacity=10, node_id="n1", wall=wall)
    first.open()
    await begin_intake(first, new(1))
    row1 = await first.get_receipt("R0001")
    first.close()
    wall.ms = 1_000  # the wall clock stepped far back while the adapter was down
    second = Buffer(tmp_path, capacity=10, node_id="n1", wall=wall)
    second.open()
    await begin_intake(second, new(2))
    row2 = await second.get_receipt("R0002")
    second.close()
    assert row1 is not None and row2 is not None
    stamp1 = HlcStamp(row1["hlc_wall"], row1["hlc_counter"], row1["hlc_node"])
    stamp2 = HlcStamp(row2["hlc_wall"], row2["hlc_counter"], row2["hlc_node"])
    assert stamp2 > stamp1


async def test_generated_node_id_is_kept(tmp_path: Path) -> None:
    first = Buffer(tmp_path, capacity=10)
    first.open()
    node = first.clock.node if first.clock else ""
    first.close()
    second = Buffer(tmp_path, capacity=10)
    second.open()
    assert second.clock is not None and second.clock.node == node
    second.close()


async def test_oldest_unsent_is_one_index_step_and_skips_synced(buffer: Buffer) -> None:
    for n in (1, 2):
        await begin_intake(buffer, new(n))
        await buffer.record_fiscal(f"R000{n}", fiscal(f"R000{n}", n + 1), lambda: {})
    write_directly(
        buffer.path,
        lambda c: c.execute("UPDATE receipts SET status = 'synced' WHERE id = 'R0001'"),
    )
    oldest = await buffer.oldest_unsent()
    assert oldest is not None and oldest.receipt_id == "R0002"


async def test_a_record_after_a_wrong_settlement_still_records_what_the_kkt_printed(
    buffer: Buffer,
) -> None:
    await begin_intake(buffer, new(1))
    await buffer.record_print_failed("R0001", "interrupted_before_print")
    body = await buffer.record_fiscal("R0001", fiscal("R0001", 7), lambda: {"fd": 7})
    row = await buffer.get_receipt("R0001")
    assert row is not None
    assert (body, row["status"], row["fd"], row["last_error"]) == ({"fd": 7}, "pending", 7, None)


async def test_a_record_of_the_same_document_twice_returns_the_first_answer(
    buffer: Buffer,
) -> None:
    await begin_intake(buffer, new(1))
    await buffer.record_fiscal("R0001", fiscal("R0001", 7), lambda: {"fd": 7})
    again = await buffer.record_fiscal("R0001", fiscal("R0001", 7), lambda: {"other": 1})
    assert again == {"fd": 7}


async def test_a_record_that_changes_no_row_is_an_error(buffer: Buffer) -> None:
    await begin_intake(buffer, new(1))
    await buffer.record_fiscal("R0001", fiscal("R0001", 7), lambda: {"fd": 7})
    with pytest.raises(RecordLost, match="FD 8 but its row holds status pending, FD 7"):
        await buffer.record_fiscal("R0001", fiscal("R0001", 8), lambda: {"fd": 8})
    with pytest.raises(RecordLost, match="holds no row"):
        await buffer.record_fiscal("R9999", fiscal("R9999", 9), lambda: {"fd": 9})


async def test_accepted_rows_carry_their_owner_and_its_liveness(tmp_path: Path) -> None:
    first = Buffer(tmp_path, capacity=5, node_id="n1", wall=Wall(1_000_000))
    second = Buffer(tmp_path, capacity=5, node_id="n1", wall=Wall(1_000_000))
    first.open()
    second.open()
    try:
        await begin_intake(first, new(1))
        [row] = await second.accepted()
        assert (row.receipt_id, row.owner) == ("R0001", first.owner)
        assert first.owner != second.owner
        assert second.owner_alive(row.owner) and first.owner_alive(second.owner)
        first.close()
        assert not second.owner_alive(row.owner)  # its process let go of the data dir
        assert not second.owner_alive(None)
    finally:
        second.close()


async def test_a_schema_3_buffer_gains_the_refund_columns_and_keeps_its_receipts(
    tmp_path: Path,
) -> None:
    from kkt_adapter.buffer.schema import MIGRATIONS
    from kkt_adapter.sqlite import apply_migrations

    conn = sqlite3.connect(tmp_path / "buffer.sqlite")
    apply_migrations(conn, MIGRATIONS[:3], "buffer")
    conn.close()
    buf = Buffer(tmp_path, capacity=5, node_id="n1", wall=Wall(1_000_000))
    buf.open()
    try:
        await begin_intake(buf, new(1))
        row = await buf.get_receipt("R0001")
        assert row is not None and row["refund_of"] is None and row["refund_lines"] is None
        found = await buf.refunds("R0001")
        assert found is not None and found[1] == []
    finally:
        buf.close()
    with sqlite3.connect(tmp_path / "buffer.sqlite") as check:
        assert check.execute("PRAGMA user_version").fetchone()[0] >= 4
        indexes = {r[0] for r in check.execute("SELECT name FROM sqlite_master")}
        assert "receipts_refund_of" in indexes
