"""HTTP routes of the adapter (API v1). Handlers stay thin: they call the services."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
from fastapi import APIRouter, Request
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field

from kkt_adapter.api.answers import (
    BufferStatus,
    Health,
    ReceiptView,
    ShiftReportView,
    ShiftView,
    ok,
)
from kkt_adapter.api.views import receipt_view, refunds_view, report_view, shift_view
from kkt_adapter.domain.receipt import REFUND_OF_TYPES
from kkt_adapter.domain.refund import refund_state
from kkt_adapter.errors import NotFound
from kkt_adapter.http_errors import error_responses
from kkt_adapter.runtime import Runtime
from kkt_adapter.status import (
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


def _runtime(request: Request) -> Runtime:
    """The app's runtime (``kkt_adapter.runtime``), built in its lifespan."""
    runtime: Runtime = request.app.state.runtime
    return runtime


@router.get(
    "/v1/kkt/receipt/{receipt_id}",
    tags=["receipts"],
    summary="One receipt: status, fiscal attributes, delivery attempts, HLC",
    description=(
        "A refund shows the sale it names (`refund_of`). A sale or an expense shows its"
        " `refunds`: whether a refund naming it is `allowed` now and the `reason` if not"
        " (`refund_of_not_fiscalized`, `refund_of_lines_unknown`, `fully_refunded`,"
        " `refund_held_until_synced`), the refund `receipts`, each line's `quantity` and"
        " `refunded`, and the `cash_refundable`."
    ),
    responses={**ok(ReceiptView), **error_responses(404)},
)
async def get_receipt(receipt_id: str, request: Request) -> Response:
    runtime = _runtime(request)
    row = await runtime.buffer.get_receipt(receipt_id)
    if row is None:
        raise NotFound(f"no receipt {receipt_id}", details={"receipt_id": receipt_id})
    refunds = None
    if row["type"] in REFUND_OF_TYPES.values():
        found = await runtime.buffer.refunds(receipt_id)
        if found is not None:  # gone between the reads (pruned): shown without
            original, earlier = found
            required = runtime.settings.refund_requires_synced
            state = refund_state(original, earlier, require_synced=required)
            refunds = refunds_view(state, earlier)
    return json_response(receipt_view(row, refunds))


@router.get(
    "/v1/kkt/buffer/status",
    tags=["buffer"],
    summary="Buffer counters, state and alerts",
    responses=ok(BufferStatus),
)
async def get_buffer_status(request: Request) -> Response:
    runtime = _runtime(request)
    facts, link = await asyncio.gather(runtime.facts(), runtime.link_facts())
    return json_response(buffer_status(facts, delivery_status(link)))


@router.get(
    "/v1/health",
    tags=["health"],
    summary="Health of the KKT, OFD, buffer and ERP link",
    responses={
        **ok(Health, "Healthy or degraded"),
        503: {"model": Health, "description": "Unhealthy: no sale can be taken"},
    },
)
async def health(request: Request) -> Response:
    runtime = _runtime(request)
    facts, link = await asyncio.gather(runtime.facts(), runtime.link_facts())
    components = {
        "kkt": kkt_component(
            facts, stale_after_ms=int(runtime.settings.device_status_stale_seconds * 1000)
        ),
        "ofd": ofd_component(link),
        "buffer": buffer_component(facts),
        "erp": erp_component(facts.erp, facts.now_ms),
    }
    state = overall(components)
    body = {"status": state, "components": components}
    return json_response(body, status=503 if state == "unhealthy" else 200)


@router.get(
    "/v1/kkt/shift", tags=["shift"], summary="Shift state of the KKT", responses=ok(ShiftView)
)
async def get_shift(request: Request) -> Response:
    status = await _runtime(request).kkt.status()
    return json_response(shift_view(status))


@router.post(
    "/v1/kkt/shift/open",
    tags=["shift"],
    summary="Open a shift",
    responses={**ok(ShiftReportView), **error_responses(400, 409)},
)
async def open_shift(request: Request, action: ShiftAction | None = None) -> Response:
    report = await _runtime(request).shifts.open(action.cashier if action else None)
    return json_response(report_view(report))


@router.post(
    "/v1/kkt/shift/close",
    tags=["shift"],
    summary="Close the shift (Z report)",
    responses={**ok(ShiftReportView), **error_responses(400, 409)},
)
async def close_shift(request: Request, action: ShiftAction | None = None) -> Response:
    report = await _runtime(request).shifts.close(action.cashier if action else None)
    return json_response(report_view(report))


@router.post(
    "/v1/kkt/x_report",
    tags=["shift"],
    summary="X report (no state change)",
    responses=ok(ShiftReportView),
)
async def x_report(request: Request) -> Response:
    report = await _runtime(request).shifts.x_report()
    return json_response(report_view(report))
