"""``POST /v1/kkt/receipt`` as a plain ASGI endpoint, dispatched ahead of FastAPI's stack.

Intake is the hot path: routing, dependency solving and the exception middlewares of FastAPI
cost about 15% of intake throughput (measured with ``bench/intake.py``). This endpoint serves
every request to the path, with the same error bodies (``kkt_adapter.http_errors``) and the same
request context; ``RECEIPT_OPERATION`` declares it in the OpenAPI schema.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from time import perf_counter

import orjson
from starlette.types import Receive, Scope, Send

from kkt_adapter.api.schemas import check_idempotency_key, parse_receipt
from kkt_adapter.errors import BodyTooLarge, DeviceError, KktAdapterError
from kkt_adapter.http_errors import UNEXPECTED, answer_for, error_responses
from kkt_adapter.metrics import Metrics
from kkt_adapter.runtime import Runtime

log = logging.getLogger(__name__)

RECEIPT_PATH = "/v1/kkt/receipt"

RECEIPT_ERROR_CODES: dict[int, tuple[str, ...]] = {
    409: (
        "request_in_progress",
        "refund_of_not_fiscalized",
        "refund_of_lines_unknown",
        "refund_exceeds_sale",
        "refund_cash_exceeds_paid",
        "refund_held_until_synced",
    ),
    422: (
        "idempotency_key_reused",
        "payment_mismatch",
        "change_not_allowed",
        "refund_of_not_allowed",
        "refund_of_required",
        "refund_of_unknown",
        "refund_of_type_mismatch",
        "refund_line_unknown",
        "refund_line_mismatch",
    ),
    503: ("kkt_unavailable", "buffer_full", "storage_unavailable"),
}
"""Codes the receipt path answers that a POS acts on, named in its OpenAPI description (the
refusals of a refund that names its sale among them); not every validation code."""

RECEIPT_OPERATION: dict[str, object] = {
    "tags": ["receipts"],
    "summary": "Create a receipt: durable, fiscalized, answered",
    "operationId": "create_receipt_v1_kkt_receipt_post",
    "parameters": [
        {
            "name": "Idempotency-Key",
            "in": "header",
            "required": True,
            "schema": {"type": "string", "minLength": 1, "maxLength": 255},
            "description": "Unique per receipt; a retry with the same key and body replays.",
        }
    ],
    "requestBody": {
        "required": True,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ReceiptIn"}}},
    },
    "responses": {
        "200": {
            "description": "Fiscalized; `Idempotent-Replayed: true` on a replay",
            "content": {
                "application/json": {"schema": {"$ref": "#/components/schemas/ReceiptAnswer"}}
            },
        },
        **{
            str(status): answer
            for status, answer in error_responses(
                400, 409, 413, 422, 503, codes=RECEIPT_ERROR_CODES
            ).items()
        },
    },
}
"""The OpenAPI operation of the path, declared by hand: FastAPI never routes it."""


def is_receipt_post(scope: Scope) -> bool:
    return bool(
        scope["type"] == "http" and scope["method"] == "POST" and scope["path"] == RECEIPT_PATH
    )


class ReceiptEndpoint:
    """Reads the body, runs intake, answers; ``runtime()`` gives the app's runtime."""

    def __init__(self, runtime: Callable[[], Runtime], metrics: Metrics | None = None) -> None:
        self._runtime = runtime
        self._metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = perf_counter()
        request_id = scope["state"]["request_id"]
        try:
            body = await _read_body(receive)
            key = check_idempotency_key(_header(scope, b"idempotency-key"))
            runtime = self._runtime()
            intake = await runtime.intake.create_receipt(key, parse_receipt(body, runtime.today()))
        except KktAdapterError as exc:
            if isinstance(exc, DeviceError) and self._metrics is not None:
                self._metrics.device_error(exc.reason)
            await answer_for(exc, "POST", RECEIPT_PATH).send(send, request_id)
            self._observe(started)
            return
        except BodyTooLarge:
            raise  # the request middleware answers it: 413 with its limit
        except Exception:
            log.exception("unexpected error on POST %s", RECEIPT_PATH)
            await UNEXPECTED.send(send, request_id)
            self._observe(started)
            return
        headers = [(b"idempotent-replayed", b"true")] if intake.replayed else []
        await _send_json(send, 200, orjson.dumps(intake.body), headers)
        self._observe(started)

    def _observe(self, started: float) -> None:
        if self._metrics is not None:
            self._metrics.observe_intake(perf_counter() - started)


async def _read_body(receive: Receive) -> bytes:
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            break
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope["headers"]:
        if key == name:
            return str(value.decode("latin-1"))
    return None


async def _send_json(
    send: Send, status: int, body: bytes, headers: list[tuple[bytes, bytes]]
) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                *headers,
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
