"""``GET /metrics``: the Prometheus text format, gauges measured at scrape time."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST

from kkt_adapter.api.routes import _runtime
from kkt_adapter.metrics import JOURNAL_ALERTS, UNKNOWN, DeviceFacts, GaugeFacts, Metrics
from kkt_adapter.status import Facts, alerts, kkt_component, oldest_unconfirmed_ms, unsynced

metrics_router = APIRouter()


class PrometheusText(Response):
    """The Prometheus text format; named so ``/openapi.json`` gives its content type."""

    media_type = CONTENT_TYPE_LATEST


@metrics_router.get(
    "/metrics",
    tags=["metrics"],
    summary="Prometheus metrics (text format)",
    response_class=PrometheusText,
    responses={200: {"description": "The Prometheus text exposition format"}},
)
async def metrics(request: Request) -> Response:
    runtime = _runtime(request)
    worker = runtime.worker
    facts = await runtime.facts()
    oldest = facts.oldest
    age_ms = facts.now_ms - oldest.created_ms if oldest is not None else 0
    registry: Metrics = request.app.state.metrics
    registry.update(
        GaugeFacts(
            counts=facts.counts,
            queued=unsynced(facts.counts),
            capacity=facts.capacity,
            oldest_age_seconds=max(age_ms, 0) / 1000,
            breaker=worker.breaker.state,
            leader=worker.leadership.leader,
            fence=worker.leadership.fence,
            storage=facts.storage,
            device=device_facts(facts, runtime.settings.device_status_stale_seconds),
            disk_free_bytes=UNKNOWN if facts.disk.free_bytes is None else facts.disk.free_bytes,
            disk_min_free_bytes=facts.disk.min_free_bytes,
            journal_problems=frozenset(a["code"] for a in alerts(facts)) & set(JOURNAL_ALERTS),
        )
    )
    return PrometheusText(registry.render())


def device_facts(facts: Facts, stale_after_seconds: float) -> DeviceFacts:
    """The facts behind the alerts the adapter computes (``status.alerts``), as gauges."""
    component = kkt_component(facts, stale_after_ms=int(stale_after_seconds * 1000))
    device = facts.device
    valid_until = None if device is None else device.fn_valid_until
    oldest_ms = oldest_unconfirmed_ms(facts)
    erp = facts.erp
    erp_since = None if erp is None else erp.last_success_ms or erp.started_ms
    return DeviceFacts(
        available=component["status"] != "error",
        shift_expired=device is not None and device.shift_expired,
        fn_valid_until_seconds=UNKNOWN if valid_until is None else valid_until.timestamp(),
        oldest_unconfirmed_age_seconds=0.0
        if oldest_ms is None
        else max(facts.now_ms - oldest_ms, 0) / 1000,
        erp_heartbeat_age_seconds=UNKNOWN
        if erp_since is None
        else max(facts.now_ms - erp_since, 0) / 1000,
        erp_lost_after_seconds=UNKNOWN if erp is None else erp.lost_after_ms / 1000,
    )
