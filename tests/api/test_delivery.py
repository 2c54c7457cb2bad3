"""Delivery endpoints in-process, against the embedded OFD emulator."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest
from conftest import RedisServer
from helpers import adapter, eventually, new_key, priced_receipt

from kkt_adapter.settings import Settings

OFD = "/ofd-emulator"
FAST = {"backoff_base_seconds": 0.05, "backoff_cap_seconds": 0.2, "delivery_sweep_seconds": 0.05}


async def status_when(api: httpx.AsyncClient, ready: Any, timeout: float = 20) -> dict[str, Any]:
    """The buffer status once ``ready`` holds for it; fails at ``timeout``."""

    async def status() -> dict[str, Any]:
        answer: dict[str, Any] = (await api.get("/v1/kkt/buffer/status")).json()
        return answer

    return await eventually(status, ready, timeout=timeout, what="buffer status")


async def post_receipts(api: httpx.AsyncClient, count: int, start: int = 100) -> list[str]:
    ids = []
    for n in range(count):
        answer = await api.post(
            "/v1/kkt/receipt", json=priced_receipt(start + n), headers=new_key()
        )
        assert answer.status_code == 200
        ids.append(answer.json()["receipt_id"])
    return ids


async def test_receipts_are_delivered_in_the_background_and_confirmed(
    api: httpx.AsyncClient,
) -> None:
    ids = await post_receipts(api, 5)
    status = await status_when(api, lambda s: s["synced"] == 5)
    assert status["network_status"] == "online"
    assert status["last_sync"]["synced_count"] >= 1
    row = (await api.get(f"/v1/kkt/receipt/{ids[0]}")).json()
    assert row["status"] == "synced" and row["ofd"]["status"] == "delivered"
    assert row["ofd"]["attempts"] == 1
    received = (await api.get(f"{OFD}/_control/received")).json()["items"]
    stored = [item["ofd_receipt_id"] for item in received if item["receipt_id"] == ids[0]]
    assert stored == [row["ofd"]["ofd_receipt_id"]]  # the id the OFD gave that very receipt
    kkt = api.app.state.runtime.kkt  # type: ignore[attr-defined]
    await eventually(  # the KKT is told after the pass
        kkt.status, lambda s: s.unconfirmed_count == 0, what="the KKT confirmed"
    )
    stats = (await api.get(f"{OFD}/_control/stats")).json()
    assert stats["unique_documents"] == 5


async def test_health_shows_the_ofd_link(api: httpx.AsyncClient) -> None:
    ofd = (await api.get("/v1/health")).json()["components"]["ofd"]
    assert ofd["circuit_breaker"] == "CLOSED"
    assert ofd["emulator"] is True and "emulator" in ofd["target"]


@pytest.mark.parametrize("settings", [FAST], indirect=True)
async def test_manual_sync_after_an_outage_and_concurrent_syncs_never_double_send(
    api: httpx.AsyncClient,
) -> None:
    await api.post(f"{OFD}/_control/mode", json={"mode": "fail"})
    await post_receipts(api, 30)
    await api.post(f"{OFD}/_control/mode", json={"mode": "success"})
    results = await asyncio.gather(*(api.post("/v1/kkt/buffer/sync") for _ in range(3)))
    bodies = [r.json() for r in results]
    assert all(set(b) == {"synced", "failed", "remaining", "duration_seconds"} for b in bodies)
    status = await status_when(api, lambda s: s["synced"] == 30)
    assert status["pending"] == status["syncing"] == 0
    stats = (await api.get(f"{OFD}/_control/stats")).json()
    assert stats["unique_documents"] == 30
    assert stats["duplicate_submissions"] == 0  # no receipt was sent twice


@pytest.mark.parametrize("settings", [FAST], indirect=True)
async def test_rejected_document_lands_in_the_dlq_and_can_be_requeued(
    api: httpx.AsyncClient,
) -> None:
    await api.post(f"{OFD}/_control/mode", json={"mode": "success", "reject_next": 1})
    (receipt_id,) = await post_receipts(api, 1)
    await status_when(api, lambda s: s["dlq"] == 1 and s["failed"] == 1)
    dlq = (await api.get("/v1/kkt/dlq")).json()
    assert dlq["total"] == 1 and dlq["items"][0]["receipt_id"] == receipt_id
    assert dlq["items"][0]["http_status"] == 422
    requeued = await api.post(f"/v1/kkt/dlq/{receipt_id}/requeue")
    assert requeued.status_code == 200
    status = await status_when(api, lambda s: s["synced"] == 1)
    assert (status["failed"], status["dlq"]) == (0, 0)


async def test_logs_are_paged_and_filtered(api: httpx.AsyncClient) -> None:
    ids = await post_receipts(api, 3)
    await status_when(api, lambda s: s["synced"] == 3)
    one = (await api.get("/v1/kkt/buffer/logs", params={"receipt_id": ids[0]})).json()
    events = [item["event"] for item in one["items"]]
    assert events[-1] == "accepted" and "fiscalized" in events and events[0] == "synced"
    page = (await api.get("/v1/kkt/buffer/logs", params={"limit": 2, "page": 2})).json()
    assert len(page["items"]) == 2 and page["page"] == 2
    # A debug event of the test's own (delivery writes debug "claimed" ones too); nothing else
    # is written now that all are synced, so both reads see the same events.
    buffer = api.app.state.runtime.buffer  # type: ignore[attr-defined]
    await buffer.log_event("debug", "probe", "x")
    every = (await api.get("/v1/kkt/buffer/logs")).json()["items"]
    assert ("debug", "probe") in [(item["level"], item["event"]) for item in every]
    infos = (await api.get("/v1/kkt/buffer/logs", params={"level": "info"})).json()["items"]
    assert infos and infos == [item for item in every if item["level"] != "debug"]
    future = (
        await api.get("/v1/kkt/buffer/logs", params={"since": "2100-01-01T00:00:00+00:00"})
    ).json()
    assert future["items"] == []


@pytest.mark.parametrize(
    ("params", "code"),
    [
        ({"level": "loud"}, "invalid_value"),  # checked by the route itself
        ({"limit": 501}, "validation_error"),  # the rest by FastAPI's query validation
        ({"page": 0}, "validation_error"),
        ({"since": "yesterday"}, "validation_error"),
    ],
)
async def test_bad_log_queries_are_422_with_a_code(
    api: httpx.AsyncClient, params: dict[str, Any], code: str
) -> None:
    answer = await api.get("/v1/kkt/buffer/logs", params=params)
    assert answer.status_code == 422
    assert answer.json()["code"] == code


async def test_requeue_of_a_receipt_not_in_the_dlq_is_404(api: httpx.AsyncClient) -> None:
    answer = await api.post("/v1/kkt/dlq/NOPE/requeue")
    assert answer.status_code == 404 and answer.json()["code"] == "not_found"


async def test_a_manual_sync_that_cannot_deliver_is_409_with_a_code(
    api: httpx.AsyncClient,
) -> None:
    runtime = api.app.state.runtime  # type: ignore[attr-defined]
    await runtime.buffer.outbox.take_over(runtime.worker.fence + 1)  # a newer leader's token
    answer = await api.post("/v1/kkt/buffer/sync")
    assert answer.status_code == 409, answer.text
    body = answer.json()
    assert body["code"] == "sync_fenced_out"
    assert "fencing token" in body["message"]


async def test_after_a_spell_on_redis_the_sqlite_lease_delivers_again(
    settings: Settings, redis_server: RedisServer
) -> None:
    # A Redis that saw many changes of leadership hands out tokens far above the sqlite
    # lease's own counter; back on sqlite, tokens must continue above them.
    import redis

    with redis.Redis.from_url(redis_server.url) as raw:
        raw.set("kkt-test:fence", 40)
    on_redis = settings.model_copy(
        update={"redis_url": redis_server.url, "redis_key_prefix": "kkt-test", **FAST}
    )
    async with adapter(on_redis) as api:
        await post_receipts(api, 2)
        status = await status_when(api, lambda s: s["synced"] == 2)
        assert status["sync_leader"]["backend"] == "redis"
        assert status["sync_leader"]["fence"] == 41
    async with adapter(settings.model_copy(update=FAST)) as api:
        await post_receipts(api, 2, start=200)
        status = await status_when(api, lambda s: s["synced"] == 4)
        assert status["sync_leader"]["backend"] == "sqlite"
        assert status["sync_leader"]["fence"] == 42
        manual = await api.post("/v1/kkt/buffer/sync")
        assert manual.status_code == 200, manual.text
    # And back on Redis, whose counter (41) is now below the buffer's: it starts above.
    async with adapter(on_redis) as api:
        await post_receipts(api, 1, start=300)
        status = await status_when(api, lambda s: s["synced"] == 5)
        assert status["sync_leader"]["fence"] == 43


async def arrival_fds(api: httpx.AsyncClient) -> list[int]:
    """The FDs in the order the OFD emulator first stored them."""
    items = (await api.get(f"{OFD}/_control/received", params={"limit": 500})).json()["items"]
    return [int(item["fd"]) for item in items]


ONE_AT_A_TIME = {**FAST, "backoff_base_seconds": 1.0, "backoff_cap_seconds": 1.0}


@pytest.mark.parametrize("settings", [{**ONE_AT_A_TIME, "delivery_concurrency": 1}], indirect=True)
async def test_with_concurrency_1_a_receipt_in_backoff_holds_back_the_later_ones_of_its_fn(
    api: httpx.AsyncClient,
) -> None:
    await api.post(f"{OFD}/_control/mode", json={"mode": "success", "fail_next": 1})
    await post_receipts(api, 6)  # the first one's first attempt fails: up to 1 s of backoff
    await status_when(api, lambda s: s["synced"] == 6)
    fds = await arrival_fds(api)
    assert fds == sorted(fds) and len(fds) == 6  # arrival order at the OFD is FD order
    stats = (await api.get(f"{OFD}/_control/stats")).json()
    assert (stats["failed"], stats["unique_documents"]) == (1, 6)


@pytest.mark.parametrize("settings", [ONE_AT_A_TIME], indirect=True)
async def test_with_concurrency_above_1_a_receipt_in_backoff_still_holds_back_its_fn(
    api: httpx.AsyncClient,
) -> None:
    await api.post(f"{OFD}/_control/mode", json={"mode": "success", "fail_next": 1})
    (first,) = await post_receipts(api, 1)

    async def row() -> dict[str, Any]:
        answer: dict[str, Any] = (await api.get(f"/v1/kkt/receipt/{first}")).json()
        return answer

    await eventually(row, lambda r: r["ofd"]["attempts"] == 1, what="the first attempt failed")
    await post_receipts(api, 4, start=200)  # sent while the first one backs off
    await status_when(api, lambda s: s["synced"] == 5)
    fds = await arrival_fds(api)
    assert fds[0] == min(fds) and len(fds) == 5
