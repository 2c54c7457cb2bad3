"""Finding receipts (by idempotency key, by FN and FD, by shift) and the customer's copy."""

from __future__ import annotations

import json
from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, Response

from kkt_adapter.api.answers import ReceiptPage, ok
from kkt_adapter.api.receipt_page import receipt_page
from kkt_adapter.api.routes import _runtime, json_response
from kkt_adapter.api.routes_delivery import Limit, Page
from kkt_adapter.api.views import receipt_view
from kkt_adapter.domain.receipt_copy import receipt_copy
from kkt_adapter.errors import NotFiscalized, NotFound, ValidationError
from kkt_adapter.http_errors import error_responses
from kkt_adapter.runtime import Runtime

lookup_router = APIRouter()

FN_PATTERN = r"^[0-9]{16}$"


@lookup_router.get(
    "/v1/kkt/receipts",
    tags=["receipts"],
    summary="Find receipts: by Idempotency-Key, by (FN, FD), or a shift's receipts (paged)",
    description=(
        "Give exactly one of: `idempotency_key`; `fn` and `fd`; `shift` (with `fn` to pick"
        " one FN's shift: shift numbers start again on a new FN). The answer is always a page"
        " `{items, page, limit}` of receipts as `GET /v1/kkt/receipt/{id}` shows them: no"
        " item when nothing matches."
    ),
    responses={**ok(ReceiptPage), **error_responses(422)},
)
async def find_receipts(
    request: Request,
    idempotency_key: Annotated[
        str | None, Query(min_length=1, max_length=255, description="The key it was posted with.")
    ] = None,
    fn: Annotated[
        str | None, Query(pattern=FN_PATTERN, description="FN number (16 digits).")
    ] = None,
    fd: Annotated[int | None, Query(ge=1, le=4_294_967_295, description="FD number.")] = None,
    shift: Annotated[int | None, Query(ge=1, le=1_000_000, description="Shift number.")] = None,
    page: Page = 1,
    limit: Limit = 100,
) -> Response:
    buffer = _runtime(request).buffer
    _one_criterion(idempotency_key, fn, fd, shift)
    if shift is not None:
        rows = await buffer.shift_receipts(shift, fn, page=page, limit=limit)
    else:
        if idempotency_key is not None:
            row = await buffer.find_by_key(idempotency_key)
        else:
            assert fn is not None and fd is not None  # _one_criterion
            row = await buffer.find_by_fiscal(fn, fd)
        rows = [row] if row is not None and page == 1 else []
    return json_response(
        {"items": [receipt_view(row) for row in rows], "page": page, "limit": limit}
    )


def _one_criterion(key: str | None, fn: str | None, fd: int | None, shift: int | None) -> None:
    """Exactly one way of finding: a key, an (FN, FD) pair, or a shift (maybe of one FN)."""
    ways = [
        name
        for name, given in (
            ("idempotency_key", key is not None),
            ("fn+fd", fd is not None),
            ("shift", shift is not None),
        )
        if given
    ]
    if len(ways) != 1:
        raise ValidationError(
            "give exactly one of: idempotency_key; fn and fd; shift",
            code="invalid_query",
            details={"given": ways},
        )
    if fd is not None and fn is None:
        raise ValidationError(
            "fd needs fn: FD numbers are per FN", code="invalid_query", details={"field": "fn"}
        )
    if key is not None and fn is not None:
        raise ValidationError(
            "fn goes with fd or shift, not with idempotency_key",
            code="invalid_query",
            details={"field": "fn"},
        )


@lookup_router.get(
    "/v1/kkt/receipt/{receipt_id}/view",
    tags=["receipts"],
    summary="The customer's copy of a receipt: a printable HTML page with its QR code",
    response_class=HTMLResponse,
    responses=error_responses(404, 409),
)
async def receipt_copy_page(receipt_id: str, request: Request) -> HTMLResponse:
    runtime = _runtime(request)
    row = await runtime.buffer.get_receipt(receipt_id)
    if row is None:
        raise NotFound(f"no receipt {receipt_id}", details={"receipt_id": receipt_id})
    if row["fd"] is None or row["qr"] is None:
        raise NotFiscalized(
            f"receipt {receipt_id} is {row['status']}: not fiscalized, so it has no copy",
            details={"receipt_id": receipt_id, "status": row["status"]},
        )
    page = receipt_page(
        receipt_id,
        receipt_copy(json.loads(row["document"])),
        row["qr"],
        emulator=_emulator(runtime),
    )
    return HTMLResponse(page, headers={"Cache-Control": "no-store"})


def _emulator(runtime: Runtime) -> bool:
    """Whether the KKT is the emulator (I7): by configuration, or as the device said."""
    status = runtime.kkt.snapshot().status
    return runtime.settings.device == "emulator" or (status is not None and status.emulator)
