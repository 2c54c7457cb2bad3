"""``GET /metrics`` after real traffic: the values match what happened."""

from __future__ import annotations

import math
from datetime import datetime

import httpx
import pytest
from helpers import eventually, new_key, priced_receipt
from prometheus_client.parser import text_string_to_metric_families

from kkt_adapter.api import create_app
from kkt_adapter.hlc import system_wall_ms
from kkt_adapter.settings import Settings

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]
"""Each sample's value by (name, sorted labels)."""


async def scrape(api: httpx.AsyncClient) -> Samples:
    answer = await api.get("/metrics")
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/plain")
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(answer.text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples[(name, tuple(sorted(labels.items())))]


@pytest.mark.parametrize(
    "settings", [{"backoff_base_seconds": 60, "breaker_failures": 100}], indirect=True
)
async def test_metrics_after_receipts_offline_then_synced(api: httpx.AsyncClient) -> None:
    await api.post("/ofd-emulator/_control/mode", json={"mode": "fail"})
    before_ms = system_wall_ms()  # the buffer's clock
    for n in range(3):
        sold = await api.post("/v1/kkt/receipt", json=priced_receipt(100 + n), headers=new_key())
        assert sold.status_code == 200
    await api.post("/v1/kkt/buffer/sync")  # every call fails: transient
    offline = await scrape(api)
    elapsed_s = (system_wall_ms() - before_ms) / 1000
    assert value(offline, "kkt_intake_seconds_count") == 3
    assert value(offline, "kkt_intake_seconds_sum") > 0
    unsent = value(offline, "kkt_receipts", status="pending") + value(
        offline, "kkt_receipts", status="syncing"
    )
    assert unsent == 3
    assert value(offline, "kkt_receipts", status="synced") == 0
    assert value(offline, "kkt_buffer_queued") == 3
    assert value(offline, "kkt_buffer_capacity") == 50_000
    assert value(offline, "kkt_buffer_fill_ratio") == pytest.approx(3 / 50_000)
    # In seconds: the first receipt's age, no older than this test's traffic.
    assert 0 < value(offline, "kkt_oldest_pending_age_seconds") <= elapsed_s
    assert value(offline, "kkt_ofd_calls_total", outcome="transient") >= 1
    assert value(offline, "kkt_ofd_calls_total", outcome="delivered") == 0
    assert value(offline, "kkt_sync_leader") == 1
    assert value(offline, "kkt_sync_fencing_token") == 1  # the first lease of a new buffer
    assert value(offline, "kkt_dlq_size") == 0

    await api.post("/ofd-emulator/_control/mode", json={"mode": "success", "reject_next": 1})
    assert (await api.post("/v1/kkt/buffer/sync")).status_code == 200
    online = await settled(api)
    calls = {
        o: value(online, "kkt_ofd_calls_total", outcome=o)
        for o in ("delivered", "duplicate", "rejected", "transient")
    }
    # Each document reached the OFD once: nothing was stored there to answer as a duplicate.
    assert (calls["delivered"], calls["duplicate"], calls["rejected"]) == (2, 0, 1)
    assert value(online, "kkt_ofd_call_seconds_count") == sum(calls.values())
    assert value(online, "kkt_receipts", status="synced") == 2
    assert value(online, "kkt_receipts", status="failed") == 1
    assert value(online, "kkt_dlq_size") == 1
    assert value(online, "kkt_buffer_queued") == 1  # the rejected one still counts
    assert value(online, "kkt_ofd_breaker_state") == 0


async def settled(api: httpx.AsyncClient) -> Samples:
    """Scrape until no receipt is pending or in flight (the worker may hold one briefly)."""

    async def sync_and_scrape() -> Samples:
        await api.post("/v1/kkt/buffer/sync")
        return await scrape(api)

    def idle(samples: Samples) -> bool:
        return sum(value(samples, "kkt_receipts", status=s) for s in ("pending", "syncing")) == 0

    return await eventually(sync_and_scrape, idle, timeout=5, what="no receipt pending")


@pytest.mark.parametrize(
    "settings", [{"breaker_failures": 1, "breaker_open_seconds": 3600}], indirect=True
)
async def test_breaker_state_and_device_errors(api: httpx.AsyncClient) -> None:
    assert value(await scrape(api), "kkt_ofd_breaker_state") == 0
    await api.post("/ofd-emulator/_control/mode", json={"mode": "fail"})
    await api.post("/v1/kkt/receipt", json=priced_receipt(100), headers=new_key())
    await api.post("/v1/kkt/buffer/sync")
    assert value(await scrape(api), "kkt_ofd_breaker_state") == 2  # open
    api.app.state.runtime.kkt.driver.set_fault("out_of_paper")  # type: ignore[attr-defined]
    for n in range(2):
        refused = await api.post("/v1/kkt/receipt", json=priced_receipt(200 + n), headers=new_key())
        assert refused.status_code == 503
    samples = await scrape(api)
    assert value(samples, "kkt_device_errors_total", reason="out_of_paper") == 2
    assert value(samples, "kkt_intake_seconds_count") == 3


async def test_each_app_has_its_own_registry(settings: Settings) -> None:
    first = create_app(settings)
    second = create_app(settings.model_copy(update={"data_dir": settings.data_dir / "other"}))
    assert first.state.metrics.registry is not second.state.metrics.registry
    first.state.metrics.observe_intake(0.5)
    assert b"kkt_intake_seconds_count 1.0" in first.state.metrics.render()
    assert b"kkt_intake_seconds_count 0.0" in second.state.metrics.render()


async def test_device_and_fn_gauges_follow_health(api: httpx.AsyncClient) -> None:
    samples = await scrape(api)
    kkt = (await api.get("/v1/health")).json()["components"]["kkt"]
    valid_until = datetime.fromisoformat(kkt["fn_valid_until"]).timestamp()  # health: the day
    shown = value(samples, "kkt_fn_valid_until_timestamp_seconds")
    assert shown == pytest.approx(valid_until, abs=86_400)
    assert value(samples, "kkt_device_available") == 1
    assert value(samples, "kkt_shift_expired") == 0
    assert value(samples, "kkt_fn_oldest_unconfirmed_age_seconds") == 0
    assert math.isnan(value(samples, "kkt_erp_heartbeat_age_seconds"))  # no ERP configured
    api.app.state.runtime.kkt.driver.set_fault("offline")  # type: ignore[attr-defined]
    await api.post("/v1/kkt/receipt", json=priced_receipt(100), headers=new_key())  # re-read
    down = await eventually(
        lambda: scrape(api),
        lambda s: value(s, "kkt_device_available") == 0,
        what="the KKT unavailable in /metrics",
    )
    health = (await api.get("/v1/health")).json()["components"]["kkt"]
    assert health["status"] == "error" and value(down, "kkt_device_available") == 0


@pytest.mark.parametrize("settings", [{"backoff_base_seconds": 60}], indirect=True)
async def test_oldest_unconfirmed_counts_the_kkt_too(api: httpx.AsyncClient) -> None:
    await api.post("/ofd-emulator/_control/mode", json={"mode": "fail"})
    await api.post("/v1/kkt/receipt", json=priced_receipt(100), headers=new_key())
    samples = await scrape(api)
    assert value(samples, "kkt_fn_oldest_unconfirmed_age_seconds") >= value(
        samples, "kkt_oldest_pending_age_seconds"
    )
    assert value(samples, "kkt_fn_oldest_unconfirmed_age_seconds") > 0


@pytest.mark.parametrize(
    "settings",
    [{"erp_url": "http://127.0.0.1:9/erp", "erp_heartbeat_seconds": 0.1, "erp_lost_seconds": 60}],
    indirect=True,
)
async def test_erp_heartbeat_age_and_its_limit(api: httpx.AsyncClient) -> None:
    samples = await scrape(api)
    assert value(samples, "kkt_erp_heartbeat_lost_after_seconds") == 60
    # No beat was ever answered: counted from start-up, as the erp_heartbeat_lost alert does.
    assert 0 <= value(samples, "kkt_erp_heartbeat_age_seconds") < 60
