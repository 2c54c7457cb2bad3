"""Pure ASGI middleware (cheaper than Starlette's BaseHTTPMiddleware on the intake hot path)."""

from __future__ import annotations

import itertools
import secrets
from typing import Any

from starlette.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from kkt_adapter.api.guard import Access, Gate
from kkt_adapter.errors import BodyTooLarge
from kkt_adapter.http_errors import ErrorAnswer
from kkt_adapter.logs import REQUEST_ID

REQUEST_ID_HEADER = b"x-request-id"


class RequestContext:
    """Gives every request an id (kept from ``X-Request-ID`` if sane), runs the ``gate`` (rate
    limit and token) and caps the body size.

    The id is put in ``scope["state"]["request_id"]`` and in the log context, and echoed in the
    response header; a body over ``max_body_bytes`` is refused with ``413 payload_too_large``
    before it is read. ``access`` fixes the route class (the intake fast path serves one
    route); ``None`` looks it up by path.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        max_body_bytes: int,
        gate: Gate | None = None,
        access: Access | None = None,
    ) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.gate = gate
        self.access = access

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = _request_id(scope)
        scope.setdefault("state", {})["request_id"] = request_id

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                headers.append((REQUEST_ID_HEADER, request_id.encode()))
                message["headers"] = headers
            await send(message)

        if self.gate is not None:
            refusal = self.gate.refuse(scope, self.access)
            if refusal is not None:
                await refusal.send(send_with_id, request_id)
                return
        declared = _content_length(scope)
        if declared is not None and declared > self.max_body_bytes:
            await too_large(self.max_body_bytes).send(send_with_id, request_id)
            return

        received = 0

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body_bytes:
                    raise BodyTooLarge
            return message

        context = REQUEST_ID.set(request_id)
        try:
            await self.app(scope, limited_receive, send_with_id)
        except BodyTooLarge:
            await too_large(self.max_body_bytes).send(send_with_id, request_id)
        finally:
            REQUEST_ID.reset(context)


# A random prefix per process and a counter: unique, cheap (no syscall per request), and
# request ids need no secrecy.
_ID_PREFIX = secrets.token_hex(4)
_id_counter = itertools.count(1)


def _request_id(scope: Scope) -> str:
    for name, value in scope["headers"]:
        if name == REQUEST_ID_HEADER and 0 < len(value) <= 64 and value.isascii():
            return str(value.decode())
    return f"{_ID_PREFIX}{next(_id_counter):08x}"


def _content_length(scope: Scope) -> int | None:
    for name, value in scope["headers"]:
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


def too_large(limit: int) -> ErrorAnswer:
    return ErrorAnswer(
        413,
        "payload_too_large",
        f"the request body is larger than {limit} bytes",
        ((b"connection", b"close"),),
        {"limit_bytes": limit},
    )


def with_cors(app: ASGIApp, origins: list[str]) -> ASGIApp:
    """``app`` behind CORS for these explicit origins (never a wildcard)."""
    return CORSMiddleware(app, **cors_options(origins))


def cors_options(origins: list[str]) -> dict[str, Any]:
    """CORS for a browser POS page: the API's methods and headers, its answers readable."""
    return {
        "allow_origins": origins,
        "allow_methods": ["GET", "POST"],
        "allow_headers": ["Authorization", "Content-Type", "Idempotency-Key", "X-Request-ID"],
        "expose_headers": ["X-Request-ID", "Idempotent-Replayed", "Retry-After"],
        "max_age": 600,
    }
