"""HTTP routes of the adapter (API v1). Handlers stay thin: they call the services."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
from fastapi import APIRouter, Request
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field

from kkt_adapter.api.views import receipt_view, report_view, shift_view
from kkt_adapter.domain.dates import iso_ms
from kkt_adapter.errors import NotFound
from kkt_adapter.http_errors import error_responses
from kkt_adapter.status import (
    Facts,
    LinkFacts,
    buffer_component,
    buffer_status,
    delivery_status,
    erp_component,
    kkt_component,
    ofd_component,
    overall,
)

router = APIRouter()


class ShiftAction(BaseModel):
    """Optional body of shift actions."""

    model_config = ConfigDict(extra="forbid")
    cashier: str | None = Field(default=None, max_length=64, examples=["Ivanova A."])


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(body), status, headers, media_type="application/json")


def _runtime(request: Request) -> Any:
    return request.app.state.runtime


@router.get(
    "/v1/kkt/receipt/{receipt_id}",
    tags=["receipts"],
    summary="One receipt: status, fiscal attributes, delivery attempts, HLC",
    responses=error_responses(404),
)
async def get_receipt(receipt_id: str, request: Request) -> Response:
    row = await _runtime(request).buffer.get_receipt(receipt_id)
    if row is None:
        raise NotFound(f"no receipt {receipt_id}", details={"receipt_id": receipt_id})
    return json_response(receipt_view(row))


async def gather_facts(runtime: Any) -> Facts:
    """Measure buffer and device state for status and health."""
    counts, oldest = await asyncio.gather(runtime.buffer.counts(), runtime.buffer.oldest_unsent())
    device, device_error = None, None
    try:
        device = await runtime.intake.device_status()
    except Exception as exc:  # health must report a broken device, not fail
        device_error = str(exc)
    return Facts(
        counts=counts,
        capacity=runtime.buffer.capacity,
        oldest=oldest,
        device=device,
        device_error=device_error,
        now_ms=runtime.buffer.now_ms(),
        erp=runtime.erp.facts(),
    )


async def link_facts(runtime: Any) -> LinkFacts:
    """Measured state of the OFD link."""
    worker = runtime.worker
    return LinkFacts(
        breaker=worker.breaker.state.value,
        consecutive_failures=worker.breaker.consecutive_failures,
        last_success_ms=worker.contact.last_success_ms,
        last_failure_ms=worker.contact.last_failure_ms,
        last_error=worker.contact.last_error,
        last_sync=await runtime.outbox.last_sync(),
        target=runtime.ofd_target,
        emulator=runtime.ofd_emulator,
        leadership=leadership_view(worker.leadership),
    )


def leadership_view(leadership: Any) -> dict[str, Any]:
    return {
        "leader": leadership.leader,
        "backend": leadership.backend,
        "holder": leadership.holder,
        "fence": leadership.fence,
        "since": iso_ms(leadership.since_ms),
        "error": leadership.last_error,
    }


@router.get("/v1/kkt/buffer/status", tags=["buffer"], summary="Buffer counters, state and alerts")
async def get_buffer_status(request: Request) -> Response:
    runtime = _runtime(request)
    facts, link = await asyncio.gather(gather_facts(runtime), link_facts(runtime))
    return json_response(buffer_status(facts, delivery_status(link)))


@router.get("/v1/health", tags=["health"], summary="Health of the KKT, OFD, buffer and ERP link")
async def health(request: Request) -> Response:
    runtime = _runtime(request)
    facts, link = await asyncio.gather(gather_facts(runtime), link_facts(runtime))
    components = {
        "kkt": kkt_component(facts),
        "ofd": ofd_component(link),
        "buffer": buffer_component(facts),
        "erp": erp_component(facts.erp, facts.now_ms),
    }
    state = overall(components)
    body = {"status": state, "components": components}
    return json_response(body, status=503 if state == "unhealthy" else 200)


@router.get("/v1/kkt/shift", tags=["shift"], summary="Shift state of the KKT")
async def get_shift(request: Request) -> Response:
    status = await _runtime(request).intake.device_status()
    return json_response(shift_view(status))


@router.post(
    "/v1/kkt/shift/open", tags=["shift"], summary="Open a shift", responses=error_responses(409)
)
async def open_shift(request: Request, action: ShiftAction | None = None) -> Response:
    report = await _runtime(request).intake.open_shift(action.cashier if action else None)
    return json_response(report_view(report))


@router.post(
    "/v1/kkt/shift/close",
    tags=["shift"],
    summary="Close the shift (Z report)",
    responses=error_responses(409),
)
async def close_shift(request: Request, action: ShiftAction | None = None) -> Response:
    report = await _runtime(request).intake.close_shift(action.cashier if action else None)
    return json_response(report_view(report))


@router.post("/v1/kkt/x_report", tags=["shift"], summary="X report (no state change)")
async def x_report(request: Request) -> Response:
    report = await _runtime(request).intake.x_report()
    return json_response(report_view(report))
