"""Cash in and out, and the kept Z reports of closed shifts (issue 13, points 2 and 4)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import Response

from kkt_adapter.api.answers import CashAnswer, ShiftReportPage, ShiftReportView, ok
from kkt_adapter.api.routes import _runtime, json_response
from kkt_adapter.api.routes_lookup import FN_PATTERN
from kkt_adapter.api.schemas import CashIn, check_idempotency_key, parse_cash
from kkt_adapter.api.views import report_view
from kkt_adapter.cash_desk import CashRequest
from kkt_adapter.domain.money import Kopecks
from kkt_adapter.domain.shift_totals import CashKind
from kkt_adapter.errors import NotFound
from kkt_adapter.http_errors import error_responses

cash_router = APIRouter()
REPLAYED = {"Idempotent-Replayed": "true"}

_CASH_OPERATION: dict[str, Any] = {
    "parameters": [
        {
            "name": "Idempotency-Key",
            "in": "header",
            "required": True,
            "schema": {"type": "string", "minLength": 1, "maxLength": 255},
            "description": "Unique per operation; a retry with the same key and body replays.",
        }
    ],
    "requestBody": {
        "required": True,
        "content": {"application/json": {"schema": CashIn.model_json_schema()}},
    },
}
_CASH_RESPONSES: dict[int | str, dict[str, Any]] = {
    **ok(
        CashAnswer,
        "Done by the KKT (a non-fiscal document: no FD); `Idempotent-Replayed: true` on a replay",
    ),
    **error_responses(409, 422, 503),
}
_CASH_DESCRIPTION = (
    "Recorded in the buffer before the KKT is asked; a retry with the same `Idempotency-Key`"
    " and body returns the stored answer (a different body: 422 `idempotency_key_reused`)."
    " `amount` ≤ 0 or too large: 422 `invalid_money`. Refusals: 409 `insufficient_cash`"
    " (cash out beyond the drawer: `details.drawer_cash`, `details.requested`), 409"
    " `cash_operation_outcome_unknown` (a retry the register cannot settle: read the X"
    " report), 409 `request_in_progress`, 503 `kkt_unavailable` (`details.reason`:"
    " `shift_closed`, `shift_expired`, `out_of_paper`, ...)."
)


async def _cash(request: Request, kind: CashKind) -> Response:
    key = check_idempotency_key(request.headers.get("idempotency-key"))
    body = parse_cash(await request.body())
    runtime = _runtime(request)
    done = await runtime.cash.operate(key, CashRequest(kind, Kopecks(body.amount), body.cashier))
    return json_response(done.body, headers=REPLAYED if done.replayed else None)


@cash_router.post(
    "/v1/kkt/cash/in",
    tags=["cash"],
    summary="Cash in (внесение): put cash into the drawer",
    description=_CASH_DESCRIPTION,
    openapi_extra=_CASH_OPERATION,
    responses=_CASH_RESPONSES,
)
async def cash_in(request: Request) -> Response:
    return await _cash(request, CashKind.CASH_IN)


@cash_router.post(
    "/v1/kkt/cash/out",
    tags=["cash"],
    summary="Cash out (выплата): take cash out of the drawer",
    description=_CASH_DESCRIPTION,
    openapi_extra=_CASH_OPERATION,
    responses=_CASH_RESPONSES,
)
async def cash_out(request: Request) -> Response:
    return await _cash(request, CashKind.CASH_OUT)


@cash_router.get(
    "/v1/kkt/shifts",
    tags=["shift"],
    summary="Closed shifts' Z reports, newest first (paged with `limit` and `before`)",
    description=(
        "Each item is the Z report as `POST /v1/kkt/shift/close` answered it. `before`: only"
        " shifts numbered below it (the next page: the last item's `shift`); `fn`: one FN's"
        " shifts (shift numbers start again on a new FN)."
    ),
    responses={**ok(ShiftReportPage), **error_responses(422)},
)
async def closed_shifts(
    request: Request,
    limit: Annotated[int, Query(ge=1, le=500, description="Items at most (500).")] = 50,
    before: Annotated[
        int | None, Query(ge=1, le=1_000_000, description="Shifts numbered below this.")
    ] = None,
    fn: Annotated[str | None, Query(pattern=FN_PATTERN, description="FN number.")] = None,
) -> Response:
    reports = await _runtime(request).shifts.closed(fn=fn, before=before, limit=limit)
    return json_response({"items": [report_view(report) for report in reports], "limit": limit})


@cash_router.get(
    "/v1/kkt/shifts/{shift}/z_report",
    tags=["shift"],
    summary="The Z report of a closed shift, as kept when it closed",
    responses={**ok(ShiftReportView), **error_responses(404, 422)},
)
async def z_report(
    request: Request,
    shift: Annotated[int, Path(ge=1, le=1_000_000, description="Shift number.")],
    fn: Annotated[
        str | None, Query(pattern=FN_PATTERN, description="FN number (default: newest).")
    ] = None,
) -> Response:
    report = await _runtime(request).shifts.z_report(shift, fn)
    if report is None:
        raise NotFound(f"no closed shift {shift}", details={"shift": shift, "fn": fn})
    return json_response(report_view(report))
