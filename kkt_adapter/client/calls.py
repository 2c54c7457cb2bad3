"""Each operation of the API as a :class:`Call`: the request to send and how to read its answer.

Shared by the sync and the async client, which only send a call (again, when
:func:`~kkt_adapter.client.retry.retry_delay` says so). A call is built once per operation, so
its ``Idempotency-Key`` (a fresh uuid4 unless the caller gives one) is the same on every
resend of it.

Answers are read into the API's own models (``kkt_adapter.api.answers``) with
``extra="ignore"``: the models forbid unknown fields to keep ``/openapi.json`` exact, but a
client must keep working when a newer adapter adds a field.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Generic, TypeVar
from urllib.parse import quote

import httpx
from pydantic import BaseModel
from pydantic import ValidationError as PydanticValidationError

from kkt_adapter.api.answers import (
    AuditPage,
    BufferStatus,
    CashAnswer,
    Cleared,
    DlqPage,
    ErrorBody,
    Health,
    ReceiptAnswer,
    ReceiptPage,
    ReceiptView,
    Requeued,
    ShiftReportPage,
    ShiftReportView,
    ShiftView,
    SyncResult,
)
from kkt_adapter.client.errors import (
    CONNECT_FAILED,
    NO_ANSWER,
    NO_ERROR_BODY,
    KktError,
    UnexpectedAnswer,
    Unreachable,
    error_for,
)
from kkt_adapter.client.retry import retry_after_seconds

A = TypeVar("A", bound=BaseModel)
Params = Mapping[str, str | int | None]
Money = Decimal | str | int
"""An amount in rubles: ``Decimal("500.00")``, ``"500.00"`` or whole rubles ``500``."""


def new_idempotency_key() -> str:
    """A fresh key for a new receipt or cash operation. Keep it before sending when the POS
    must be able to retry after its own crash."""
    return str(uuid.uuid4())


def _json_default(value: object) -> str:
    if isinstance(value, Decimal):
        return str(value)  # money as a decimal string, never through a float
    raise TypeError(f"{type(value).__name__} is not JSON")


@dataclass(frozen=True)
class Call(Generic[A]):
    """One operation: the request, the model of its answer, the statuses that are answers."""

    method: str
    path: str
    answer: type[A]
    params: Params = field(default_factory=dict)
    body: Any = None
    idempotency_key: str | None = None
    ok: frozenset[int] = frozenset({200})

    @property
    def replayable(self) -> bool:
        """Whether sending it twice does it once: a read, or a request with a key."""
        return self.method == "GET" or self.idempotency_key is not None

    def request(self, http: httpx.Client | httpx.AsyncClient) -> httpx.Request:
        headers = {} if self.idempotency_key is None else {"Idempotency-Key": self.idempotency_key}
        content = None
        if self.body is not None:
            content = json.dumps(self.body, default=_json_default).encode()
            headers["Content-Type"] = "application/json"
        params = {k: v for k, v in self.params.items() if v is not None}
        return http.build_request(
            self.method, self.path, params=params, content=content, headers=headers
        )

    def result(self, answer: httpx.Response) -> A:
        """The answer as its model; an error answer raised as its :class:`KktError`."""
        if answer.status_code not in self.ok:
            raise self.error(answer)
        try:
            return self.answer.model_validate_json(answer.content, extra="ignore")
        except PydanticValidationError as exc:
            raise UnexpectedAnswer(
                "unexpected_answer",
                f"{self.method} {self.path}: {exc.error_count()} field(s) not as expected",
                status=answer.status_code,
                details=exc.errors(include_url=False, include_input=False)[:5],
                request_id=answer.headers.get("x-request-id"),
                idempotency_key=self.idempotency_key,
            ) from exc

    def unreachable(self, exc: httpx.TransportError) -> Unreachable:
        """No answer: ``connect_failed`` when nothing was sent, else ``no_answer``."""
        unsent = isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout | httpx.PoolTimeout)
        return Unreachable(
            CONNECT_FAILED if unsent else NO_ANSWER,
            f"{self.method} {self.path}: {type(exc).__name__}: {exc}",
            idempotency_key=self.idempotency_key,
        )

    def error(self, answer: httpx.Response) -> KktError:
        status = answer.status_code
        retry_after = retry_after_seconds(answer.headers.get("retry-after"))
        try:
            body = ErrorBody.model_validate_json(answer.content, extra="ignore")
        except PydanticValidationError:
            code, message, details = NO_ERROR_BODY, answer.text[:200], None
            request_id = answer.headers.get("x-request-id")
        else:
            code, message, details, request_id = (
                body.code,
                body.message,
                body.details,
                body.request_id,
            )
        return error_for(status, code)(
            code,
            message,
            status=status,
            details=details,
            request_id=request_id,
            retry_after=retry_after,
            idempotency_key=self.idempotency_key,
        )


# -- the operations ---------------------------------------------------------------------------


def create_receipt(receipt: Mapping[str, Any], key: str | None) -> Call[ReceiptAnswer]:
    return Call(
        "POST",
        "/v1/kkt/receipt",
        ReceiptAnswer,
        body=dict(receipt),
        idempotency_key=key or new_idempotency_key(),
    )


def get_receipt(receipt_id: str) -> Call[ReceiptView]:
    return Call("GET", f"/v1/kkt/receipt/{_segment(receipt_id)}", ReceiptView)


def find_receipts(
    *,
    idempotency_key: str | None,
    fn: str | None,
    fd: int | None,
    shift: int | None,
    page: int | None,
    limit: int | None,
) -> Call[ReceiptPage]:
    params = {
        "idempotency_key": idempotency_key,
        "fn": fn,
        "fd": fd,
        "shift": shift,
        "page": page,
        "limit": limit,
    }
    return Call("GET", "/v1/kkt/receipts", ReceiptPage, params=params)


def receipt_view_path(receipt_id: str) -> str:
    return f"/v1/kkt/receipt/{_segment(receipt_id)}/view"


def cash(kind: str, amount: Money, cashier: str | None, key: str | None) -> Call[CashAnswer]:
    body: dict[str, Any] = {"amount": amount}
    if cashier is not None:
        body["cashier"] = cashier
    return Call(
        "POST",
        f"/v1/kkt/cash/{kind}",
        CashAnswer,
        body=body,
        idempotency_key=key or new_idempotency_key(),
    )


def get_shift() -> Call[ShiftView]:
    return Call("GET", "/v1/kkt/shift", ShiftView)


def shift_action(action: str, cashier: str | None) -> Call[ShiftReportView]:
    body = None if cashier is None else {"cashier": cashier}
    return Call("POST", f"/v1/kkt/shift/{action}", ShiftReportView, body=body)


def x_report() -> Call[ShiftReportView]:
    return Call("POST", "/v1/kkt/x_report", ShiftReportView)


def closed_shifts(limit: int | None, before: int | None, fn: str | None) -> Call[ShiftReportPage]:
    params = {"limit": limit, "before": before, "fn": fn}
    return Call("GET", "/v1/kkt/shifts", ShiftReportPage, params=params)


def z_report(shift: int, fn: str | None) -> Call[ShiftReportView]:
    return Call("GET", f"/v1/kkt/shifts/{shift}/z_report", ShiftReportView, params={"fn": fn})


def buffer_status() -> Call[BufferStatus]:
    return Call("GET", "/v1/kkt/buffer/status", BufferStatus)


def health() -> Call[Health]:
    # 503 is an answer here: the adapter is unhealthy, and the body says why.
    return Call("GET", "/v1/health", Health, ok=frozenset({200, 503}))


def sync_now() -> Call[SyncResult]:
    return Call("POST", "/v1/kkt/buffer/sync", SyncResult)


def buffer_logs(
    page: int | None,
    limit: int | None,
    level: str | None,
    since: str | None,
    receipt_id: str | None,
) -> Call[AuditPage]:
    params = {
        "page": page,
        "limit": limit,
        "level": level,
        "since": since,
        "receipt_id": receipt_id,
    }
    return Call("GET", "/v1/kkt/buffer/logs", AuditPage, params=params)


def dlq(page: int | None, limit: int | None) -> Call[DlqPage]:
    return Call("GET", "/v1/kkt/dlq", DlqPage, params={"page": page, "limit": limit})


def requeue(receipt_id: str) -> Call[Requeued]:
    return Call("POST", f"/v1/kkt/dlq/{_segment(receipt_id)}/requeue", Requeued)


def clear_print_failed() -> Call[Cleared]:
    return Call("POST", "/v1/kkt/print_failed/clear", Cleared)


def _segment(value: str) -> str:
    """A path segment: ``/`` and the like cannot change the route."""
    return quote(value, safe="")
