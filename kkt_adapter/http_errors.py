"""Every error an HTTP app of this package returns, mapped in one place to
``{code, message, details, request_id}``: the adapter's API and the OFD emulator alike.

Outside ``kkt_adapter.api`` so the OFD emulator, which the adapter's app embeds, can use it
without importing that app.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from starlette.exceptions import HTTPException as StarletteHTTPException

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


ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["code", "message", "request_id"],
    "properties": {
        "code": {"type": "string"},
        "message": {"type": "string"},
        "details": {},
        "request_id": {"type": "string"},
    },
}
"""The error body as an OpenAPI schema."""


def error_payload(code: str, message: str, details: Any, request_id: str) -> bytes:
    """The one error body shape: ``{code, message, details, request_id}``."""
    return orjson.dumps(
        {"code": code, "message": message, "details": details, "request_id": request_id}
    )


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


def _validation_error(code: str) -> Callable[[Request, Exception], Awaitable[Response]]:
    """A handler for FastAPI's own request validation, answering with ``code``."""

    async def handle(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        errors = [
            {"field": ".".join(str(p) for p in e.get("loc", ())), "reason": e.get("msg", "")}
            for e in exc.errors()[:10]
        ]
        field = errors[0]["field"] if errors else None
        details = {"field": field, "errors": errors}
        return error_response(request, 422, code, "the request is invalid", details)

    return handle


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    code = HTTP_CODES.get(exc.status_code, f"http_{exc.status_code}")
    headers = dict(exc.headers) if exc.headers else None
    return error_response(request, exc.status_code, code, str(exc.detail), None, headers)


async def _unexpected(request: Request, exc: Exception) -> Response:
    log.exception("unexpected error on %s %s", request.method, request.url.path)
    return error_response(request, 500, "internal_error", "unexpected error; see the log")


def install_error_handlers(app: FastAPI, *, validation_code: str = "validation_error") -> None:
    """Map the project's errors, FastAPI's validation, HTTP errors and anything else."""
    app.add_exception_handler(KktAdapterError, _adapter_error)
    app.add_exception_handler(RequestValidationError, _validation_error(validation_code))
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected)
