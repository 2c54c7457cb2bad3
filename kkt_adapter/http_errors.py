"""Every error an HTTP app of this package returns, mapped in one place to
``{code, message, details, request_id}``: the adapter's API and the OFD emulator alike.

Outside ``kkt_adapter.api`` so the OFD emulator, which the adapter's app embeds, can use it
without importing that app.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import Send

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


def error_responses(
    *statuses: int, codes: Mapping[int, Sequence[str]] | None = None
) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` entries for these error statuses; ``codes`` names some of the
    codes a status may carry (in its description: the error schema stays one for all)."""
    named = codes or {}
    return {
        status: {
            "description": "Error with a stable machine code"
            + (
                "; among them: " + ", ".join(f"`{code}`" for code in named[status])
                if status in named
                else ""
            ),
            "content": {"application/json": {"schema": ERROR_SCHEMA}},
        }
        for status in statuses
    }


@dataclass(frozen=True)
class ErrorAnswer:
    """An error as every HTTP path of this package answers it: the status, the body
    ``{code, message, details, request_id}`` and its headers (``Retry-After`` among them).

    The one place error answers are written: FastAPI's handlers (``response``), the plain ASGI
    intake endpoint and the request middleware (``send``) all go through it.
    """

    status: int
    code: str
    message: str
    headers: tuple[tuple[bytes, bytes], ...] = ()
    details: Any = None

    @classmethod
    def of(cls, exc: KktAdapterError) -> ErrorAnswer:
        """The answer to a raised error; ``Retry-After`` when it says when to try again."""
        retry = (
            () if exc.retry_after is None else ((b"retry-after", str(exc.retry_after).encode()),)
        )
        return cls(exc.http_status, exc.code, exc.message, retry, exc.details)

    def body(self, request_id: str) -> bytes:
        return orjson.dumps(
            {
                "code": self.code,
                "message": self.message,
                "details": self.details,
                "request_id": request_id,
            }
        )

    def response(self, request_id: str) -> Response:
        """As a Starlette response (FastAPI's exception handlers)."""
        headers = {name.decode("latin-1"): value.decode("latin-1") for name, value in self.headers}
        return Response(self.body(request_id), self.status, headers, media_type="application/json")

    async def send(self, send: Send, request_id: str) -> None:
        """As raw ASGI messages (the intake endpoint and the middleware, ahead of FastAPI)."""
        body = self.body(request_id)
        await send(
            {
                "type": "http.response.start",
                "status": self.status,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    *self.headers,
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})


def answer_for(exc: KktAdapterError, method: str, path: str) -> ErrorAnswer:
    """The answer to ``exc`` raised on ``method path``; a server-side refusal is logged."""
    if exc.http_status >= 500:
        log.warning("%s %s -> %s %s", method, path, exc.code, exc.message)
    return ErrorAnswer.of(exc)


UNEXPECTED = ErrorAnswer(500, "internal_error", "unexpected error; see the adapter's log")


def request_id(request: Request) -> str:
    return str(request.scope.get("state", {}).get("request_id", ""))


async def _adapter_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, KktAdapterError)
    return answer_for(exc, request.method, request.url.path).response(request_id(request))


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
        answer = ErrorAnswer(422, code, "the request is invalid", details=details)
        return answer.response(request_id(request))

    return handle


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    code = HTTP_CODES.get(exc.status_code, f"http_{exc.status_code}")
    headers = tuple(
        (k.encode("latin-1"), v.encode("latin-1")) for k, v in (exc.headers or {}).items()
    )
    return ErrorAnswer(exc.status_code, code, str(exc.detail), headers).response(
        request_id(request)
    )


async def _unexpected(request: Request, exc: Exception) -> Response:
    log.exception("unexpected error on %s %s", request.method, request.url.path)
    return UNEXPECTED.response(request_id(request))


def install_error_handlers(app: FastAPI, *, validation_code: str = "validation_error") -> None:
    """Map the project's errors, FastAPI's validation, HTTP errors and anything else."""
    app.add_exception_handler(KktAdapterError, _adapter_error)
    app.add_exception_handler(RequestValidationError, _validation_error(validation_code))
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected)
