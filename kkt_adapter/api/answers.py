"""The answers of the API as pydantic models: what ``/openapi.json`` says each route returns.

The routes write their answers as dicts through ``orjson`` (``views.py``, ``status.py``), for
speed: validating a model on every answer would cost the intake path (issue 14, point 7). So
these models only *describe* the answers, attached to the routes as OpenAPI ``responses``; the
tests hold the views to them (``tests/api/test_answers.py``) and schemathesis checks every
answer against the schema. They forbid fields they do not name (``additionalProperties:
false``), so a view that grows a field without its model fails those checks.

Plain pydantic models with no FastAPI import, so a client (``kkt_adapter.client``) can reuse
them. Money is a decimal string in rubles with two digits (``Money``), quantities in units with
three (``Quantity``); moments are ISO 8601 strings as the views write them.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from kkt_adapter.domain.lifecycle import ReceiptStatus

Money = Annotated[str, Field(pattern=r"^-?[0-9]+\.[0-9]{2}$", examples=["7990.00"])]
"""Rubles as a decimal string with two fraction digits (``format_money``)."""
Quantity = Annotated[str, Field(pattern=r"^-?[0-9]+\.[0-9]{3}$", examples=["1.000"])]
"""Units as a decimal string with three fraction digits (``format_quantity``)."""
Moment = Annotated[str, Field(examples=["2026-11-24T10:15:30.123+00:00"])]
"""An ISO 8601 date and time."""


class Answer(BaseModel):
    """Every answer model: exactly the named fields."""

    model_config = ConfigDict(extra="forbid")


class ErrorBody(Answer):
    """Every error answer (``kkt_adapter.http_errors``); its OpenAPI schema is
    ``http_errors.ERROR_SCHEMA``."""

    code: str = Field(examples=["invalid_money"], description="Stable machine code")
    message: str = Field(examples=["items[0].price: more than 2 fraction digits"])
    details: Any = Field(
        default=None, examples=[{"field": "items[0].price", "reason": "more than 2 fraction"}]
    )
    request_id: str = Field(examples=["114d934400000002"])


# -- receipts ---------------------------------------------------------------------------------


class FiscalOut(Answer):
    """The fiscal attributes the KKT gave the receipt."""

    fn: str = Field(description="FN number (tag 1041)", examples=["9999078900001234"])
    fd: int = Field(description="Fiscal document number (tag 1040)", examples=[2])
    fp: str = Field(description="Fiscal sign (tag 1077)", examples=["1234567890"])
    shift: int = Field(description="Shift number (tag 1038)", examples=[1])
    number_in_shift: int = Field(description="Receipt number in the shift (tag 1042)")
    datetime: str = Field(
        description="Date and time of the document, ISO 8601",
        examples=["2026-11-24T13:15:00+03:00"],
    )
    qr: str = Field(
        description="The QR code string printed on the receipt",
        examples=["t=20261124T1315&s=7990.00&fn=9999078900001234&i=2&fp=1234567890&n=1"],
    )


class OfdQueueOut(Answer):
    """Where the receipt stands on its way to the OFD."""

    status: Literal["pending"]
    queue_position: int = Field(examples=[1])


class ReceiptAnswer(Answer):
    """The answer to ``POST /v1/kkt/receipt`` (also replayed for a retry with the same key)."""

    receipt_id: str = Field(examples=["06H2RESY9CJ8B47Q"])
    status: Literal["pending"]
    change: Money = Field(
        description="Cash to hand back, rubles with two decimals: cash received over the "
        'total ("0.00" when paid exactly)',
        examples=["50.00"],
    )
    fiscal: FiscalOut
    ofd: OfdQueueOut


class DlqReason(Answer):
    """Why the OFD rejected the document."""

    code: str = Field(examples=["document_rejected"])
    reason: str | None


class OfdState(Answer):
    """The receipt's delivery to the OFD."""

    status: Literal["pending", "sending", "delivered", "rejected", "not_fiscalized"]
    attempts: int
    next_attempt_at: Moment | None = Field(description="When `pending`: the next attempt")
    synced_at: Moment | None
    ofd_receipt_id: str | None
    dlq: DlqReason | None


class ItemEcho(Answer):
    """One item line as the request gave it (``quantity`` in units)."""

    name: str
    price: Money
    quantity: Quantity
    vat: str = Field(examples=["vat22"])
    subject: str = Field(examples=["goods"])
    payment_method: str = Field(examples=["full_payment"])
    sku: str | None
    mark_code: str | None
    line: int | None = Field(default=None, description="Only on an item naming its line")


class PaymentEcho(Answer):
    """One payment as the request gave it (cash as received)."""

    method: str = Field(examples=["card"])
    amount: Money


class CorrectionEcho(Answer):
    kind: Literal["self", "order"]
    date: str = Field(examples=["2026-01-10"])
    number: str | None


class RequestEcho(Answer):
    """The receipt as the POS sent it, validated. Empty (``{}``) for a receipt recovered from
    the KKT's journal, which kept no request."""

    pos_id: str | None = None
    type: str | None = None
    items: list[ItemEcho] | None = None
    payments: list[PaymentEcho] | None = None
    customer_email: str | None = None
    customer_phone: str | None = None
    cashier_name: str | None = None
    cashier_inn: str | None = None
    correction: CorrectionEcho | None = None
    dated: str | None = Field(default=None, description="The day it was taken (ISO 8601)")
    refund_of: str | None = None


class RefundReceipt(Answer):
    receipt_id: str
    total: Money
    status: ReceiptStatus


class RefundLine(Answer):
    line: int = Field(description="1-based position in the sale's items")
    sku: str | None
    quantity: Quantity = Field(description="Sold")
    refunded: Quantity = Field(description="Refunded so far")


class RefundsView(Answer):
    """A sale's (or an expense's) refunds."""

    allowed: bool = Field(description="Whether a refund naming it is taken now")
    reason: str | None = Field(examples=["fully_refunded"])
    receipts: list[RefundReceipt]
    lines: list[RefundLine]
    cash_refundable: Money


class ReceiptView(Answer):
    """``GET /v1/kkt/receipt/{id}``: status, fiscal attributes, delivery, HLC."""

    receipt_id: str = Field(examples=["06H2RESY9CJ8B47Q"])
    status: ReceiptStatus
    pos_id: str = Field(examples=["POS-001"])
    type: str = Field(examples=["sale"])
    total: Money
    change: Money
    created_at: Moment
    updated_at: Moment
    hlc: str = Field(examples=["1764000000000.0.node-1"], description="Hybrid logical clock")
    fiscal: FiscalOut | None = Field(description="`null` until the KKT printed it")
    ofd: OfdState
    last_error: str | None
    refund_of: str | None
    refunds: RefundsView | None = Field(default=None, description="Only on a sale or expense")
    receipt: RequestEcho


class ReceiptPage(Answer):
    """``GET /v1/kkt/receipts``: a page of receipts."""

    items: list[ReceiptView]
    page: int
    limit: int


# -- shift and cash ---------------------------------------------------------------------------


class ShiftView(Answer):
    """``GET /v1/kkt/shift``."""

    open: bool
    shift: int
    opened_at: Moment | None
    expired: bool = Field(description="Open over 24 h: close it (Z report)")
    fn: str
    last_fd: int
    emulator: bool


class VatFigures(Answer):
    amount: Money = Field(description="Turnover at the rate (VAT included)")
    vat: Money


class CashMovementView(Answer):
    amount: Money
    count: int


class ShiftReportView(Answer):
    """An open-shift, X or Z report. The X and Z reports add the shift's figures (``counts``
    onwards), maps keyed by receipt type, payment method and VAT rate."""

    kind: Literal["open", "x", "z"] = Field(description="open-shift, X or Z report", examples=["z"])
    shift: int
    fn: str | None
    fd: int
    opened_at: Moment | None
    closed_at: Moment | None
    receipts: int
    totals: dict[str, Money] = Field(description="Per receipt type", examples=[{"sale": "9.90"}])
    counts: dict[str, int] | None = Field(default=None, examples=[{"sale": 3}])
    payments: dict[str, dict[str, Money]] | None = Field(
        default=None, examples=[{"sale": {"cash": "500.00", "card": "7990.00"}}]
    )
    vat: dict[str, dict[str, VatFigures]] | None = Field(
        default=None, examples=[{"sale": {"vat22": {"amount": "7990.00", "vat": "1440.82"}}}]
    )
    cash_in: CashMovementView | None = None
    cash_out: CashMovementView | None = None
    drawer_cash: Money | None = None


class ShiftReportPage(Answer):
    """``GET /v1/kkt/shifts``: closed shifts' Z reports, newest first."""

    items: list[ShiftReportView]
    limit: int


class CashAnswer(Answer):
    """The answer to a cash in or out."""

    operation_id: str
    kind: Literal["cash_in", "cash_out"]
    amount: Money = Field(examples=["500.00"])
    shift: int
    number: int = Field(description="The operation's number among the shift's cash operations.")
    at: Moment = Field(description="When the KKT did it (ISO 8601, the KKT's time zone).")
    drawer_cash: Money = Field(examples=["1234.00"], description="Cash in the drawer after it.")


# -- buffer, delivery, health -----------------------------------------------------------------


class Alert(Answer):
    level: Literal["critical", "warning", "info"]
    code: str = Field(examples=["dlq_not_empty"])
    message: str


class OldestPending(Answer):
    receipt_id: str
    created_at: Moment
    age_hours: float


class LastSync(Answer):
    timestamp: Moment
    synced_count: int
    failed_count: int
    duration_seconds: float
    kind: Literal["automatic", "manual"]


class SyncLeader(Answer):
    """The sync lease: whether this process delivers."""

    leader: bool
    backend: str = Field(examples=["sqlite"])
    holder: str
    current_holder: str | None
    fence: int | None
    since: Moment | None
    error: str | None


Breaker = Literal["CLOSED", "HALF_OPEN", "OPEN", "not_used"]
Network = Literal["online", "degraded", "offline", "unknown"]


class BufferStatus(Answer):
    """``GET /v1/kkt/buffer/status``: counters per status, fill, delivery and alerts."""

    total: int
    accepted: int
    print_failed: int
    pending: int
    syncing: int
    synced: int
    failed: int
    dlq: int
    total_capacity: int
    current_queued: int
    percent_full: float
    oldest_pending: OldestPending | None
    network_status: Network
    circuit_breaker: Breaker
    delivery: Literal["relay", "device"]
    last_sync: LastSync | None
    sync_leader: SyncLeader
    alerts: list[Alert]


ComponentState = Literal["ok", "warning", "error"]


class JournalView(Answer):
    """The last check of the KKT's journal against the buffer."""

    checked_at: Moment | None
    recovered: int
    gaps: list[int]
    contradiction: str | None
    error: str | None


class KktHealth(Answer):
    """The KKT as last measured; when unreachable only ``status``, ``problems``, ``error``,
    ``emulator`` and the reading's times."""

    status: ComponentState
    problems: list[str] = Field(examples=[["out_of_paper"]])
    error: str | None = None
    measured_at: Moment | None = None
    age_seconds: float | None = None
    busy_seconds: float | None = None
    emulator: bool | None = None
    model: str | None = None
    fn: str | None = None
    registration_number: str | None = None
    shift_open: bool | None = None
    shift: int | None = None
    last_fd: int | None = None
    unconfirmed_documents: int | None = None
    oldest_unconfirmed_at: Moment | None = None
    journal: JournalView | None = None
    fn_valid_until: str | None = None
    ffd_version: str | None = None


class OfdHealth(Answer):
    status: ComponentState
    delivery: Literal["relay", "device"]
    circuit_breaker: Breaker
    network_status: Network
    consecutive_failures: int
    last_success_at: Moment | None
    last_failure_at: Moment | None
    last_error: str | None
    target: str
    emulator: bool
    sync_leader: SyncLeader


class BufferHealth(Answer):
    status: ComponentState
    storage: Literal["ok", "unavailable"]
    storage_error: str | None
    percent_full: float
    current_queued: int
    total_capacity: int


class ErpHealth(Answer):
    """``not_configured`` carries only ``status``."""

    status: Literal["ok", "warning", "error", "not_configured"]
    target: str | None = None
    last_success_at: Moment | None = None
    last_failure_at: Moment | None = None
    last_error: str | None = None
    beats_ok: int | None = None
    beats_failed: int | None = None


class HealthComponents(Answer):
    kkt: KktHealth
    ofd: OfdHealth
    buffer: BufferHealth
    erp: ErpHealth


class Health(Answer):
    """``GET /v1/health``: 200 when healthy or degraded, 503 when unhealthy."""

    status: Literal["healthy", "degraded", "unhealthy"]
    components: HealthComponents


class SyncResult(Answer):
    """``POST /v1/kkt/buffer/sync``: what the manual pass did."""

    synced: int
    failed: int
    remaining: int
    duration_seconds: float


class AuditEvent(Answer):
    id: int
    timestamp: Moment
    level: str = Field(examples=["info"])
    event: str = Field(examples=["synced"])
    receipt_id: str | None
    from_status: str | None
    to_status: str | None
    message: str | None


class AuditPage(Answer):
    """``GET /v1/kkt/buffer/logs``."""

    items: list[AuditEvent]
    page: int
    limit: int


class DlqItem(Answer):
    receipt_id: str
    code: str
    reason: str | None
    http_status: int | None
    rejected_at: Moment
    fn: str | None
    fd: int | None
    attempts: int


class DlqPage(Answer):
    """``GET /v1/kkt/dlq``."""

    items: list[DlqItem]
    page: int
    limit: int
    total: int


class Requeued(Answer):
    receipt_id: str
    status: Literal["pending"]


class Cleared(Answer):
    cleared: int = Field(description="Receipts deleted")


def ok(model: type[BaseModel], description: str = "Done") -> dict[int | str, dict[str, Any]]:
    """The OpenAPI ``responses`` entry of a 200 answer described by ``model``."""
    return {200: {"model": model, "description": description}}
