"""HTTP routes of the delivery side and the buffer's operator actions: manual sync, audit log,
DLQ, clearing failed prints."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response

from kkt_adapter.api.answers import AuditPage, Cleared, DlqPage, Requeued, SyncResult, ok
from kkt_adapter.api.routes import _runtime, json_response
from kkt_adapter.buffer.outbox import LEVELS
from kkt_adapter.domain.dates import iso_ms
from kkt_adapter.errors import NotFound, ValidationError
from kkt_adapter.http_errors import error_responses

delivery_router = APIRouter()

Page = Annotated[int, Query(ge=1, le=1_000_000, description="Page number, from 1.")]
Limit = Annotated[int, Query(ge=1, le=500, description="Items per page (at most 500).")]


@delivery_router.post(
    "/v1/kkt/buffer/sync",
    tags=["buffer"],
    summary="Deliver everything pending now (ignores backoff timers and the breaker's timer)",
    responses={**ok(SyncResult), **error_responses(409)},
)
async def sync_now(request: Request) -> Response:
    return json_response(await _runtime(request).worker.sync_now())


@delivery_router.get(
    "/v1/kkt/buffer/logs",
    tags=["buffer"],
    summary="Audit events of the buffer, newest first",
    responses={**ok(AuditPage), **error_responses(422)},
)
async def buffer_logs(
    request: Request,
    page: Page = 1,
    limit: Limit = 100,
    level: Annotated[
        str | None, Query(description="Minimum level: debug, info, warning, error, critical.")
    ] = None,
    since: Annotated[
        datetime | None, Query(description="Only events at or after this ISO 8601 time.")
    ] = None,
    receipt_id: Annotated[str | None, Query(max_length=64)] = None,
) -> Response:
    if level is not None and level not in LEVELS:
        raise ValidationError(
            f"level must be one of {', '.join(LEVELS)}",
            code="invalid_value",
            details={"field": "level"},
        )
    since_ms = _epoch_ms(since) if since is not None else None
    items = await _runtime(request).buffer.outbox.events_page(
        page=page, limit=limit, min_level=level, since_ms=since_ms, receipt_id=receipt_id
    )
    return json_response(
        {"items": [_event_view(item) for item in items], "page": page, "limit": limit}
    )


@delivery_router.get(
    "/v1/kkt/dlq", tags=["dlq"], summary="Documents the OFD rejected", responses=ok(DlqPage)
)
async def dlq(request: Request, page: Page = 1, limit: Limit = 100) -> Response:
    runtime = _runtime(request)
    items = await runtime.buffer.outbox.dlq_page(page, limit)
    total = (await runtime.buffer.counts())["dlq"]
    return json_response(
        {
            "items": [_dlq_view(item) for item in items],
            "page": page,
            "limit": limit,
            "total": total,
        }
    )


@delivery_router.post(
    "/v1/kkt/dlq/{receipt_id}/requeue",
    tags=["dlq"],
    summary="Send a rejected document again (after repair)",
    responses={**ok(Requeued), **error_responses(404)},
)
async def requeue(receipt_id: str, request: Request) -> Response:
    runtime = _runtime(request)
    if not await runtime.buffer.outbox.requeue(receipt_id):
        raise NotFound(f"{receipt_id} is not in the DLQ", details={"receipt_id": receipt_id})
    runtime.worker.wake()
    return json_response({"receipt_id": receipt_id, "status": "pending"})


@delivery_router.post(
    "/v1/kkt/print_failed/clear",
    tags=["buffer"],
    summary="Delete every receipt the KKT refused to print (none is a fiscal document)",
    responses=ok(Cleared),
)
async def clear_print_failed(request: Request) -> Response:
    cleared = await _runtime(request).buffer.clear_print_failed()
    return json_response({"cleared": cleared})


def _epoch_ms(moment: datetime) -> int:
    if moment.tzinfo is None:
        raise ValidationError(
            "since needs a time zone (e.g. 2026-11-24T10:00:00+03:00)",
            code="invalid_value",
            details={"field": "since"},
        )
    return int(moment.timestamp() * 1000)


def _event_view(item: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": item["id"],
        "timestamp": iso_ms(item["ts_ms"]),
        "level": item["level"],
        "event": item["event"],
        "receipt_id": item["receipt_id"],
        "from_status": item["from_status"],
        "to_status": item["to_status"],
        "message": item["message"],
    }


def _dlq_view(item: dict[str, Any]) -> dict[str, Any]:
    return {
        "receipt_id": item["receipt_id"],
        "code": item["code"],
        "reason": item["reason"],
        "http_status": item["http_status"],
        "rejected_at": iso_ms(item["created_ms"]),
        "fn": item["fn"],
        "fd": item["fd"],
        "attempts": item["attempts"],
    }
