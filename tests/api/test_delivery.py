"""Delivery endpoints in-process, against the embedded OFD emulator."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx
import pytest
from helpers import new_key, priced_receipt

OFD = "/ofd-emulator"
FAST = {"backoff_base_seconds": 0.05, "backoff_cap_seconds": 0.2, "delivery_sweep_seconds": 0.05}


async def eventually(api: httpx.AsyncClient, ready: Any, timeout: float = 20) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        status: dict[str, Any] = (await api.get("/v1/kkt/buffer/status")).json()
        if ready(status):
            return status
        assert time.monotonic() < deadline, f"timed out; last status {status}"
        await asyncio.sleep(0.05)


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
    status = await eventually(api, lambda s: s["synced"] == 5)
    assert status["network_status"] == "online"
    assert status["last_sync"]["synced_count"] >= 1
    row = (await api.get(f"/v1/kkt/receipt/{ids[0]}")).json()
    assert row["status"] == "synced" and row["ofd"]["status"] == "delivered"
    assert row["ofd"]["ofd_receipt_id"] and row["ofd"]["attempts"] == 1
    device = api.app.state.runtime.device  # type: ignore[attr-defined]
    deadline = time.monotonic() + 10
    while device.status().unconfirmed_count and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    assert device.status().unconfirmed_count == 0  # the KKT was told
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
    status = await eventually(api, lambda s: s["synced"] == 30)
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
    await eventually(api, lambda s: s["dlq"] == 1 and s["failed"] == 1)
    dlq = (await api.get("/v1/kkt/dlq")).json()
    assert dlq["total"] == 1 and dlq["items"][0]["receipt_id"] == receipt_id
    assert dlq["items"][0]["http_status"] == 422
    requeued = await api.post(f"/v1/kkt/dlq/{receipt_id}/requeue")
    assert requeued.status_code == 200
    status = await eventually(api, lambda s: s["synced"] == 1)
    assert (status["failed"], status["dlq"]) == (0, 0)


async def test_logs_are_paged_and_filtered(api: httpx.AsyncClient) -> None:
    ids = await post_receipts(api, 3)
    await eventually(api, lambda s: s["synced"] == 3)
    one = (await api.get("/v1/kkt/buffer/logs", params={"receipt_id": ids[0]})).json()
    events = [item["event"] for item in one["items"]]
    assert events[-1] == "accepted" and "fiscalized" in events and events[0] == "synced"
    page = (await api.get("/v1/kkt/buffer/logs", params={"limit": 2, "page": 2})).json()
    assert len(page["items"]) == 2 and page["page"] == 2
    infos = (await api.get("/v1/kkt/buffer/logs", params={"level": "info"})).json()
    assert all(item["level"] != "debug" for item in infos["items"])
    future = (
        await api.get("/v1/kkt/buffer/logs", params={"since": "2100-01-01T00:00:00+00:00"})
    ).json()
    assert future["items"] == []


@pytest.mark.parametrize(
    "params",
    [{"level": "loud"}, {"limit": 501}, {"page": 0}, {"since": "yesterday"}],
)
async def test_bad_log_queries_are_422_with_a_code(
    api: httpx.AsyncClient, params: dict[str, Any]
) -> None:
    answer = await api.get("/v1/kkt/buffer/logs", params=params)
    assert answer.status_code == 422
    assert answer.json()["code"] in {"invalid_value", "validation_error"}


async def test_requeue_of_a_receipt_not_in_the_dlq_is_404(api: httpx.AsyncClient) -> None:
    answer = await api.post("/v1/kkt/dlq/NOPE/requeue")
    assert answer.status_code == 404 and answer.json()["code"] == "not_found"
