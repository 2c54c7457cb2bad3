"""Every error the API returns, mapped in one place to ``{code, message, details, request_id}``."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from kkt_adapter.api.intake_endpoint import error_payload
from kkt_adapter.errors import KktAdapterError

log = logging.getLogger(__name__)

HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    413: "payload_too_large",
    415: "unsupported_media_type",
}


def request_id(request: Request) -> str:
    return str(request.scope.get("state", {}).get("request_id", ""))


def error_response(
    request: Request,
    status: int,
    code: str,
    message: str,
    details: Any = None,
    headers: dict[str, str] | None = None,
) -> Response:
    body = error_payload(code, message, details, request_id(request))
    return Response(body, status_code=status, media_type="application/json", headers=headers)


async def _adapter_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, KktAdapterError)
    headers = {"Retry-After": str(exc.retry_after)} if exc.retry_after is not None else None
    if exc.http_status >= 500:
        log.warning("%s %s -> %s %s", request.method, request.url.path, exc.code, exc.message)
    return error_response(request, exc.http_status, exc.code, exc.message, exc.details, headers)


async def _validation_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    errors = [
        {"field": ".".join(str(p) for p in e.get("loc", ())), "reason": e.get("msg", "")}
        for e in exc.errors()[:10]
    ]
    field = errors[0]["field"] if errors else None
    return error_response(
        request,
        422,
        "validation_error",
        "the request is invalid",
        {"field": field, "errors": errors},
    )


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    code = HTTP_CODES.get(exc.status_code, f"http_{exc.status_code}")
    headers = dict(exc.headers) if exc.headers else None
    return error_response(request, exc.status_code, code, str(exc.detail), None, headers)


async def _unexpected(request: Request, exc: Exception) -> Response:
    log.exception("unexpected error on %s %s", request.method, request.url.path)
    return error_response(request, 500, "internal_error", "unexpected error; see the adapter's log")


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(KktAdapterError, _adapter_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected)
