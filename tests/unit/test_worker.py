"""The delivery worker against a scripted OFD, with an injected wall clock."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from fakes import ScriptedOfd, Wall
from helpers import eventually, fiscalized

from kkt_adapter.buffer import Buffer
from kkt_adapter.delivery import Backoff, BreakerConfig, CircuitBreaker, DeliveryWorker
from kkt_adapter.delivery.lease import SqliteLease
from kkt_adapter.delivery.worker import WorkerConfig
from kkt_adapter.errors import NotSyncLeader
from kkt_adapter.hlc import HlcStamp
from kkt_adapter.ofd import Delivered, OfdAnswer, Rejected, Submission, Transient


@pytest.fixture
def wall() -> Wall:
    return Wall(1_000_000)


@pytest.fixture
async def buffer(tmp_path: Path, wall: Wall) -> AsyncIterator[Buffer]:
    buf = Buffer(tmp_path, capacity=100, node_id="n1", wall=wall)
    buf.open()
    yield buf
    buf.close()


def worker(buffer: Buffer, wall: Wall, ofd: ScriptedOfd, confirmed: list[int]) -> DeliveryWorker:
    async def confirm(fn: str, fds: list[int]) -> None:
        confirmed.extend(fds)

    return DeliveryWorker(
        buffer.outbox,
        ofd,
        confirm,
        lease=SqliteLease(buffer.outbox),
        holder="me",
        breaker=CircuitBreaker(BreakerConfig(failure_threshold=2), clock=lambda: wall.ms / 1000),
        backoff=Backoff(base=1, cap=300),
        wall_ms=wall,
    )


async def test_transient_failure_persists_the_backoff_from_the_injected_clock(
    buffer: Buffer, wall: Wall
) -> None:
    rid = await fiscalized(buffer, 1)
    ofd = ScriptedOfd(Transient("503", 503, retry_after=30))
    delivery = worker(buffer, wall, ofd, [])
    await delivery.start()
    try:
        await delivery.sync_now()
        row = await buffer.get_receipt(rid)
        assert row is not None and row["status"] == "pending" and row["attempts"] == 1
        assert row["next_attempt_ms"] == wall.ms + 30_000  # Retry-After beats the jitter (≤1 s)
        assert row["last_error"] == "503"
    finally:
        await delivery.stop()


async def test_delivered_rejected_and_confirmed(buffer: Buffer, wall: Wall) -> None:
    good, bad = await fiscalized(buffer, 1), await fiscalized(buffer, 2)
    ofd = ScriptedOfd(
        Delivered("ofd-1", HlcStamp(wall.ms + 5_000, 3, "ofd"), False),
        Rejected(422, "invalid_fiscal_sign", "bad FP"),
    )
    confirmed: list[int] = []
    delivery = worker(buffer, wall, ofd, confirmed)
    await delivery.start()
    try:
        summary = await delivery.sync_now()
        assert (summary["synced"], summary["failed"], summary["remaining"]) == (1, 1, 0)
        assert [s.receipt_id for s in ofd.sent] == [good, bad]  # HLC order
        assert confirmed == [1]  # the KKT is told about the acknowledged one only
        row = await buffer.get_receipt(bad)
        assert row is not None and row["dlq_code"] == "invalid_fiscal_sign"
        # the OFD's stamp is merged in; the injected wall is frozen behind it, so the clock
        # keeps the OFD's wall time exactly
        assert buffer.clock is not None and buffer.clock.now().wall_ms == wall.ms + 5_000
    finally:
        await delivery.stop()


async def test_a_process_without_the_lease_refuses_a_manual_sync(
    buffer: Buffer, wall: Wall
) -> None:
    await SqliteLease(buffer.outbox).acquire("someone-else", 60_000)
    ofd = ScriptedOfd()
    delivery = worker(buffer, wall, ofd, [])
    await delivery.start()
    try:
        with pytest.raises(NotSyncLeader):
            await delivery.sync_now()
        assert ofd.sent == []
    finally:
        await delivery.stop()


async def test_after_a_spell_on_redis_the_sqlite_leader_delivers_again(
    buffer: Buffer, wall: Wall
) -> None:
    await buffer.outbox.take_over(50)  # a Redis leader's token, the highest the buffer saw
    rid = await fiscalized(buffer, 1)
    ofd = ScriptedOfd()
    delivery = worker(buffer, wall, ofd, [])
    await delivery.start()
    try:
        assert delivery.fence == 51
        summary = await delivery.sync_now()
        assert (summary["synced"], summary["remaining"]) == (1, 0)
        assert [s.receipt_id for s in ofd.sent] == [rid]
    finally:
        await delivery.stop()


async def test_a_manual_sync_fenced_out_says_so_instead_of_answering_synced_zero(
    buffer: Buffer, wall: Wall
) -> None:
    await fiscalized(buffer, 1)
    ofd = ScriptedOfd()
    delivery = worker(buffer, wall, ofd, [])
    await delivery.start()
    try:
        await buffer.outbox.take_over(delivery.fence + 1)  # another leader's newer token
        with pytest.raises(NotSyncLeader) as refused:
            await delivery.sync_now()
        assert refused.value.code == "sync_fenced_out"
        assert refused.value.http_status == 409
        assert ofd.sent == []
    finally:
        await delivery.stop()


async def test_an_ofd_stamp_far_in_the_future_is_not_adopted(buffer: Buffer, wall: Wall) -> None:
    await fiscalized(buffer, 1)
    year_2286 = HlcStamp(9_999_999_999_999, 0, "ofd")
    delivery = worker(buffer, wall, ScriptedOfd(Delivered("ofd-1", year_2286, False)), [])
    await delivery.start()
    try:
        assert (await delivery.sync_now())["synced"] == 1  # delivered all the same
        assert buffer.clock.now().wall_ms < wall.ms + 300_000
    finally:
        await delivery.stop()
    buffer.close()
    buffer.open()  # the refused stamp was not persisted either
    assert buffer.clock.now().wall_ms < wall.ms + 300_000


async def test_a_backing_off_receipt_is_due_after_the_wall_clock_stepped_back(
    buffer: Buffer, wall: Wall
) -> None:
    rid = await fiscalized(buffer, 1)
    ofd = ScriptedOfd(Transient("503", 503, retry_after=30))
    delivery = worker(buffer, wall, ofd, [])
    await delivery.start()
    try:
        await delivery.sync_now()  # fails: next attempt 30 s from now
        wall.ms -= 3_600_000  # NTP steps the clock back an hour
        result = await delivery.run_pass(manual=False)  # an automatic pass honours timers
        assert result.synced == 1  # not an hour and 30 s later
        assert [s.receipt_id for s in ofd.sent] == [rid, rid]
    finally:
        await delivery.stop()


async def test_a_due_time_beyond_the_longest_backoff_is_due_now(buffer: Buffer, wall: Wall) -> None:
    await fiscalized(buffer, 1)
    await buffer.outbox.take_over(1)
    [item] = await buffer.outbox.claim(limit=1, fence=1, lease_ms=60_000, ignore_timers=False)
    # Written by a clock an hour ahead (then stepped back): due in an hour and a minute.
    await buffer.outbox.record_transient(item, 1, "503", 3_660_000)
    claim = buffer.outbox.claim
    assert await claim(limit=1, fence=1, lease_ms=60_000, ignore_timers=False) == []
    again = await claim(
        limit=1, fence=1, lease_ms=60_000, ignore_timers=False, max_delay_ms=300_000
    )
    assert [c.receipt_id for c in again] == [item.receipt_id]


@pytest.mark.parametrize("concurrency", [1, 4])
async def test_a_failure_in_a_batch_holds_back_the_rest_of_its_fn(
    buffer: Buffer, wall: Wall, concurrency: int
) -> None:
    ids = [await fiscalized(buffer, n) for n in (1, 2, 3)]
    ofd = ScriptedOfd(Transient("503", 503))
    delivery = worker(buffer, wall, ofd, [])
    delivery.config = WorkerConfig(concurrency=concurrency)
    await delivery.start()
    try:
        result = await delivery.run_pass(manual=False)
        assert (result.claimed, result.synced) == (3, 0)
        assert [s.receipt_id for s in ofd.sent] == ids[:1]  # FD 2 and 3 were not sent
        rows = [await buffer.get_receipt(rid) for rid in ids]
        assert [(r["status"], r["attempts"]) for r in rows if r] == [("pending", 1)] + [
            ("pending", 0)
        ] * 2
        wall.ms += 300_000  # past any backoff
        await delivery.run_pass(manual=False)
        assert [s.receipt_id for s in ofd.sent] == [ids[0], *ids]  # then in FD order
    finally:
        await delivery.stop()


class StalledOfd(ScriptedOfd):
    """Its first call hangs until ``go`` is set; every other one is delivered at once."""

    def __init__(self) -> None:
        super().__init__()
        self.go = asyncio.Event()

    async def submit(self, submission: Submission) -> OfdAnswer:
        first = not self.sent
        self.sent.append(submission)
        if first:
            await self.go.wait()
        return Delivered(f"o-{submission.receipt_id}", None, False)


async def test_expired_claims_are_released_while_a_pass_is_stuck_in_flight(
    buffer: Buffer, wall: Wall
) -> None:
    stuck, waiting = await fiscalized(buffer, 1), await fiscalized(buffer, 2)
    ofd = StalledOfd()
    delivery = DeliveryWorker(
        buffer.outbox,
        ofd,
        lambda fn, fds: asyncio.sleep(0),
        lease=SqliteLease(buffer.outbox),
        holder="me",
        breaker=CircuitBreaker(BreakerConfig(), clock=lambda: wall.ms / 1000),
        # One send at a time, so the second receipt waits behind the stuck one; the sync lease
        # is renewed (and expired claims released) every 0.1 s.
        config=WorkerConfig(concurrency=1, lease_ms=100, leadership_ttl_ms=300, sweep_seconds=60),
        wall_ms=wall,
    )
    await delivery.start()
    try:
        await eventually(lambda: asyncio.sleep(0, ofd.sent), bool, what="the stuck call")
        wall.ms += 200  # both claims expire while the first pass is stuck (the sync lease not)
        await eventually(
            lambda: buffer.get_receipt(waiting),
            lambda row: row is not None and row["status"] == "pending",
            what="the waiting receipt released during the stuck pass",
        )
        summary = await delivery.sync_now()  # takes both up again and delivers them
        assert (summary["synced"], summary["remaining"]) == (2, 0)
    finally:
        ofd.go.set()
        await delivery.stop()  # lets the stuck pass finish
    # The stuck pass did not send the receipt whose claim it no longer held.
    assert [s.receipt_id for s in ofd.sent] == [stuck, stuck, waiting]
