"""Sync leadership and fencing on the buffer (sqlite backend), with an injected clock."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from fakes import Wall
from helpers import fiscalized

from kkt_adapter.buffer import Buffer
from kkt_adapter.delivery.lease import Grant, SqliteLease
from kkt_adapter.errors import StaleLeader


@pytest.fixture
def wall() -> Wall:
    return Wall(1_000_000)


@pytest.fixture
async def buffer(tmp_path: Path, wall: Wall) -> AsyncIterator[Buffer]:
    buf = Buffer(tmp_path, capacity=100, node_id="n1", wall=wall)
    buf.open()
    yield buf
    buf.close()


async def test_one_holder_at_a_time_and_takeover_after_expiry(buffer: Buffer, wall: Wall) -> None:
    lease = SqliteLease(buffer.outbox)
    first = await lease.acquire("A", 1000)
    assert first is not None
    assert await lease.acquire("B", 1000) is None  # A holds it
    assert await lease.acquire("A", 1000) == first  # re-acquiring keeps the token
    assert await lease.renew("A", first, 1000)
    wall.ms += 1001  # A stopped renewing (paused, partitioned)
    second = await lease.acquire("B", 1000)
    assert second is not None and second.fence == first.fence + 1
    assert not await lease.renew("A", first, 1000)  # A finds out it lost


async def test_released_lease_is_free_at_once(buffer: Buffer, wall: Wall) -> None:
    lease = SqliteLease(buffer.outbox)
    grant = await lease.acquire("A", 60_000)
    assert grant is not None
    await lease.release("A", grant)
    assert await lease.acquire("B", 60_000) is not None


async def test_a_stale_leader_can_neither_claim_nor_record(buffer: Buffer, wall: Wall) -> None:
    for n in range(1, 4):
        await fiscalized(buffer, n)
    outbox = buffer.outbox
    old, new = Grant(1), Grant(2)
    await outbox.take_over(old.fence)
    claimed = await outbox.claim(limit=2, fence=old.fence, lease_ms=60_000, ignore_timers=False)
    assert len(claimed) == 2
    # A new leader takes over while the old one is paused with its claims in flight.
    returned = await outbox.take_over(new.fence)
    assert returned == 2
    assert not await outbox.record_delivered(claimed[0], old.fence, "ofd-1", None)
    assert not await outbox.record_transient(claimed[1], old.fence, "late", 0)
    with pytest.raises(StaleLeader):
        await outbox.claim(limit=1, fence=old.fence, lease_ms=60_000, ignore_timers=False)
    mine = await outbox.claim(limit=10, fence=new.fence, lease_ms=60_000, ignore_timers=False)
    assert sorted(c.receipt_id for c in mine) == ["R0001", "R0002", "R0003"]
    assert [await outbox.record_delivered(c, new.fence, "ofd", None) for c in mine] == [True] * 3
    counts = await buffer.counts()
    assert (counts["synced"], counts["syncing"], counts["pending"]) == (3, 0, 0)


async def test_fencing_token_survives_a_restart(tmp_path: Path, wall: Wall) -> None:
    first = Buffer(tmp_path, capacity=10, node_id="n1", wall=wall)
    first.open()
    grant = await SqliteLease(first.outbox).acquire("A", 10)
    first.close()
    wall.ms += 100
    second = Buffer(tmp_path, capacity=10, node_id="n1", wall=wall)
    second.open()
    again = await SqliteLease(second.outbox).acquire("B", 10)
    second.close()
    assert grant is not None and again is not None and again.fence == grant.fence + 1


async def test_after_a_new_leader_reclaims_the_stale_leaders_results_are_refused_by_the_fence(
    buffer: Buffer,
) -> None:
    # The rows are ``syncing`` again (the new leader's claims), so the status check alone
    # would let the stale leader's results through: only the fencing token stops them.
    for n in range(1, 4):
        await fiscalized(buffer, n)
    outbox = buffer.outbox
    old, new = Grant(1), Grant(2)
    await outbox.take_over(old.fence)
    stale = await outbox.claim(limit=3, fence=old.fence, lease_ms=60_000, ignore_timers=False)
    await outbox.take_over(new.fence)
    mine = await outbox.claim(limit=3, fence=new.fence, lease_ms=60_000, ignore_timers=False)
    assert (
        [c.receipt_id for c in mine]
        == [c.receipt_id for c in stale]
        == [
            "R0001",
            "R0002",
            "R0003",
        ]
    )
    assert not await outbox.record_delivered(stale[0], old.fence, "ofd-stale", None)
    assert not await outbox.record_rejected(stale[1], old.fence, 422, "bad", "stale verdict")
    assert not await outbox.record_transient(stale[2], old.fence, "stale retry", 60_000)
    assert (await buffer.counts())["syncing"] == 3
    assert (await buffer.counts())["dlq"] == 0
    for item in mine:
        row = await buffer.get_receipt(item.receipt_id)
        assert row is not None
        assert (row["status"], row["fence"], row["ofd_receipt_id"]) == ("syncing", 2, None)
        assert (row["attempts"], row["last_error"]) == (0, None)
    assert [await outbox.record_delivered(c, new.fence, "ofd", None) for c in mine] == [True] * 3


async def test_a_claim_under_a_token_below_the_highest_seen_cannot_record_a_result(
    buffer: Buffer,
) -> None:
    # The row still carries the stale token and is still ``syncing``: the check that the
    # token is the highest the buffer has seen is all that refuses the write.
    for n in range(1, 3):
        await fiscalized(buffer, n)
    outbox = buffer.outbox
    await outbox.take_over(1)
    [stale] = await outbox.claim(limit=1, fence=1, lease_ms=60_000, ignore_timers=False)
    await outbox.claim(limit=1, fence=2, lease_ms=60_000, ignore_timers=False)  # a newer leader
    assert await outbox.fence_high() == 2
    assert not await outbox.record_delivered(stale, 1, "ofd-stale", None)
    assert not await outbox.record_rejected(stale, 1, 422, "bad", "stale verdict")
    assert not await outbox.record_transient(stale, 1, "stale retry", 60_000)
    row = await buffer.get_receipt(stale.receipt_id)
    assert row is not None and (row["status"], row["fence"], row["attempts"]) == ("syncing", 1, 0)


async def test_a_dead_holders_lease_is_taken_over_before_it_expires(
    tmp_path: Path, wall: Wall
) -> None:
    first = Buffer(tmp_path, capacity=100, node_id="n1", wall=wall)
    second = Buffer(tmp_path, capacity=100, node_id="n1", wall=wall)
    first.open()
    second.open()
    try:
        held = await SqliteLease(first.outbox).acquire(first.owner, 60_000)
        lease = SqliteLease(second.outbox)
        assert held is not None
        assert await lease.acquire(second.owner, 60_000) is None  # alive: it waits
        assert await lease.current_holder() == first.owner
        first.close()  # the process is gone (the kernel drops its lock, as on kill -9)
        taken = await lease.acquire(second.owner, 60_000)
        assert taken is not None and taken.fence > held.fence
        assert await lease.current_holder() == second.owner
    finally:
        second.close()


async def test_after_a_spell_on_redis_the_sqlite_lease_continues_above_the_highest_token(
    buffer: Buffer,
) -> None:
    # The sqlite lease handed out 1, then a Redis leader delivered under token 50 for a while.
    lease = SqliteLease(buffer.outbox)
    first = await lease.acquire("A", 1000)
    assert first is not None and first.fence == 1
    await lease.release("A", first)
    await buffer.outbox.take_over(50)
    again = await lease.acquire("A", 1000)
    assert again is not None and again.fence == 51
    await buffer.outbox.take_over(again.fence)
    await fiscalized(buffer, 1)
    claimed = await buffer.outbox.claim(
        limit=1, fence=again.fence, lease_ms=60_000, ignore_timers=False
    )
    assert [c.receipt_id for c in claimed] == ["R0001"]  # the fence lets it deliver
