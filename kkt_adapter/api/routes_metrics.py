"""``GET /metrics``: the Prometheus text format, gauges measured at scrape time."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Request
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST

from kkt_adapter.api.routes import _runtime
from kkt_adapter.metrics import GaugeFacts, Metrics
from kkt_adapter.status import unsynced

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
    buffer, worker = runtime.buffer, runtime.worker
    counts, oldest, storage = await asyncio.gather(
        buffer.counts(), buffer.oldest_unsent(), buffer.storage()
    )
    age_ms = buffer.now_ms() - oldest.created_ms if oldest is not None else 0
    registry: Metrics = request.app.state.metrics
    registry.update(
        GaugeFacts(
            counts=counts,
            queued=unsynced(counts),
            capacity=buffer.capacity,
            oldest_age_seconds=max(age_ms, 0) / 1000,
            breaker=worker.breaker.state,
            leader=worker.leadership.leader,
            fence=worker.leadership.fence,
            storage=storage,
        )
    )
    return PrometheusText(registry.render())
