"""ATOL JSON tasks, strictly validated, run on the KKT emulator's core (``EmulatedKkt``).

The models follow the driver's task scripts and the web server's OpenAPI description as far as
``docs/atol.md`` confirms them. Validation is strict on purpose: an unknown field or a value
of the wrong kind is refused with error 501 naming the field, as the real driver refuses a
task, so the adapter cannot get away with anything a register would not take.

A receipt task becomes the emulator core's FFD document (tag 1192 from the
``additionalAttribute`` item is the emulator's receipt id; a receipt without one gets the task
uuid), and the core's ``FiscalResult`` becomes the driver's ``fiscalParams``. Money in tasks is
rubles as JSON numbers; it is read through ``Decimal`` from the number's text and must be a
whole number of kopecks.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from kkt_adapter.device.base import ShiftReport
from kkt_adapter.device.emulator import EmulatedKkt
from kkt_adapter.domain.ffd import VATS_BY_CODE
from kkt_adapter.domain.fiscal import FiscalResult
from kkt_adapter.domain.money import Kopecks
from kkt_adapter.domain.shift_totals import CashKind, shift_totals
from kkt_adapter.domain.vat import RECEIPT_SUM_TAGS, line_vat, receipt_vat_sums
from kkt_adapter.errors import DeviceError, InsufficientCash, ShiftError

RECEIPT_TYPES = {
    "sell": 1,
    "sellReturn": 2,
    "buy": 3,
    "buyReturn": 4,
    "sellCorrection": 1,
    "sellReturnCorrection": 2,
    "buyCorrection": 3,
    "buyReturnCorrection": 4,
}
TAX_TYPES = {
    "vat20": 1, "vat10": 2, "vat120": 3, "vat110": 4, "vat0": 5, "none": 6, "vat5": 7,
    "vat7": 8, "vat105": 9, "vat107": 10, "vat22": 11, "vat122": 12,
}  # fmt: skip
PAYMENT_METHODS = {
    "fullPrepayment": 1, "prepayment": 2, "advance": 3, "fullPayment": 4,
    "partialPayment": 5, "credit": 6, "creditPayment": 7,
}  # fmt: skip
PAYMENT_TAGS = {"cash": "1031", "electronically": "1081", "prepaid": "1215", "credit": "1216",
                "other": "1217"}  # fmt: skip
# Our stable device reasons as the driver's error codes (libfptr10.h, docs/atol.md).
ERROR_CODES = {
    "out_of_paper": (44, "Нет бумаги"),
    "cover_open": (45, "Открыта крышка"),
    "shift_expired": (68, "Смена превысила 24 часа"),
    "shift_closed": (73, "Смена закрыта - операция невозможна"),
    "fn_blocked": (120, "ФН: исчерпан ресурс или превышено время ожидания ответа ОФД"),
    "offline": (241, "Нет связи"),
    "insufficient_cash": (80, "Не хватает наличности в кассе"),
    "invalid_document": (501, "Неверный формат задания"),
    "repeat_print": (
        1000,
        "EMULATOR: this receipt id was fiscalized already; a real register would print it again",
    ),
}


class TaskError(Exception):
    """A task the register refuses: the driver's error code and description."""

    def __init__(self, code: int, description: str) -> None:
        super().__init__(f"{code}: {description}")
        self.code = code
        self.description = description


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


Money = Annotated[Decimal, Field(ge=0, max_digits=14, decimal_places=2)]


class Tax(_Strict):
    type: Literal[
        "vat20", "vat10", "vat120", "vat110", "vat0", "none",
        "vat5", "vat7", "vat105", "vat107", "vat22", "vat122",
    ]  # fmt: skip
    sum: Money | None = None


class Position(_Strict):
    type: Literal["position"]
    name: Annotated[str, Field(min_length=1, max_length=128)]
    price: Money
    quantity: Annotated[Decimal, Field(gt=0, max_digits=12, decimal_places=3)]
    amount: Money
    tax: Tax
    paymentMethod: Literal[
        "fullPrepayment", "prepayment", "advance", "fullPayment",
        "partialPayment", "credit", "creditPayment",
    ] = "fullPayment"  # fmt: skip
    paymentObject: str | int = "commodity"
    measurementUnit: str | int = 0
    department: int | None = None
    infoDiscountAmount: Money | None = None
    additionalAttribute: Annotated[str, Field(max_length=64)] | None = None
    imcParams: dict[str, Any] | None = None


class AdditionalAttribute(_Strict):
    type: Literal["additionalAttribute"]
    value: Annotated[str, Field(min_length=1, max_length=16)]
    print: bool | None = None


class Payment(_Strict):
    type: Literal["cash", "electronically", "prepaid", "credit", "other"]
    sum: Money


class Operator(_Strict):
    name: Annotated[str, Field(min_length=1, max_length=64)]
    vatin: Annotated[str, Field(pattern=r"^\d{10}(\d{2})?$")] | None = None


class ClientInfo(_Strict):
    emailOrPhone: Annotated[str, Field(max_length=64)] | None = None
    name: str | None = None
    vatin: str | None = None


class UserAttribute(_Strict):
    type: Literal["userAttribute"]
    name: Annotated[str, Field(min_length=1, max_length=64)]
    value: Annotated[str, Field(min_length=1, max_length=256)]
    print: bool | None = None


class ReceiptTask(_Strict):
    type: Literal[
        "sell", "sellReturn", "buy", "buyReturn", "sellCorrection",
        "sellReturnCorrection", "buyCorrection", "buyReturnCorrection",
    ]  # fmt: skip
    taxationType: Literal["osn", "usnIncome", "usnIncomeOutcome", "esn", "patent"] | None = None
    operator: Operator | None = None
    clientInfo: ClientInfo | None = None
    items: Annotated[
        list[
            Annotated[Position | AdditionalAttribute | UserAttribute, Field(discriminator="type")]
        ],
        Field(min_length=1),
    ]
    payments: Annotated[list[Payment], Field(min_length=1)]
    total: Money | None = None
    taxes: list[Tax] | None = None
    electronically: bool | None = None
    paymentsPlace: str | None = None
    correctionType: Literal["self", "instruction"] | None = None
    correctionBaseDate: str | None = None
    correctionBaseNumber: str | None = None


class OperatorTask(_Strict):
    type: Literal["openShift", "closeShift", "reportX"]
    operator: Operator | None = None
    electronically: bool | None = None


class CashTask(_Strict):
    """``cashIn`` / ``cashOut`` ([J] ``json_cashIn.js``: ``cashSum`` a number, ``operator``,
    ``electronically``; ``preItems``/``postItems`` are not used by the adapter)."""

    type: Literal["cashIn", "cashOut"]
    cashSum: Annotated[Decimal, Field(gt=0, max_digits=14, decimal_places=2)]
    operator: Operator | None = None
    electronically: bool | None = None


class QueryTask(_Strict):
    type: Literal[
        "getDeviceStatus", "getShiftStatus", "getFnInfo", "getFnStatus",
        "ofdExchangeStatus", "continuePrint", "getShiftTotals",
    ]  # fmt: skip


class FnDocumentTask(_Strict):
    type: Literal["getFnDocument"]
    fiscalDocumentNumber: Annotated[int, Field(ge=1)]
    withRawData: bool | None = None


Task = Annotated[
    ReceiptTask | OperatorTask | CashTask | QueryTask | FnDocumentTask, Field(discriminator="type")
]


class _Envelope(_Strict):
    task: Task


def parse_task(task: Any) -> ReceiptTask | OperatorTask | CashTask | QueryTask | FnDocumentTask:
    """The task, validated; ``TaskError(501)`` naming the first bad field."""
    try:
        return _Envelope.model_validate({"task": task}).task
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"][1:]) or "type"
        raise TaskError(501, f"Неверный формат задания: {where}: {first['msg']}") from None


def kopecks(rubles: Decimal) -> int:
    value = rubles * 100
    if value != value.to_integral_value():
        raise TaskError(501, f"Неверный формат задания: {rubles} is not whole kopecks")
    return int(value)


def receipt_document(task: ReceiptTask, fallback_id: str) -> tuple[str, dict[str, Any]]:
    """The emulator core's FFD document of a receipt task, and its receipt id."""
    positions = [item for item in task.items if isinstance(item, Position)]
    attributes = [item for item in task.items if isinstance(item, AdditionalAttribute)]
    user = [item for item in task.items if isinstance(item, UserAttribute)]
    if not positions:
        raise TaskError(501, "Неверный формат задания: items: no position")
    receipt_id = attributes[0].value if attributes else fallback_id[:16]
    total = sum(kopecks(item.amount) for item in positions)
    paid = sum(kopecks(payment.sum) for payment in task.payments)
    if task.total is not None and kopecks(task.total) != total:
        raise TaskError(501, f"Неверный формат задания: total {task.total} != sum of items")
    if paid < total:
        raise TaskError(501, f"Неверный формат задания: payments {paid} kopecks < total {total}")
    # The register computes the VAT sums itself, per line and per rate, as the adapter does.
    lines = [(VATS_BY_CODE[TAX_TYPES[p.tax.type]], kopecks(p.amount)) for p in positions]
    document: dict[str, Any] = {
        "1054": RECEIPT_TYPES[task.type],
        "1059": [_item(item) for item in positions],
        "1020": total,
        **receipt_vat_sums(lines),
        **{tag: 0 for tag in PAYMENT_TAGS.values()},
        "1192": receipt_id,
        "1209": 4,
    }
    for payment in task.payments:
        document[PAYMENT_TAGS[payment.type]] += kopecks(payment.sum)
    if task.operator is not None:
        document["1021"] = task.operator.name
        if task.operator.vatin:
            document["1203"] = task.operator.vatin
    if task.clientInfo is not None and task.clientInfo.emailOrPhone:
        document["1008"] = task.clientInfo.emailOrPhone
    if user:
        document["1084"] = {"1085": user[0].name, "1086": user[0].value}
    if task.type.endswith("Correction"):
        document["1173"] = 1 if task.correctionType == "instruction" else 0
        document["1174"] = {"1178": task.correctionBaseDate, "1179": task.correctionBaseNumber}
    return receipt_id, document


def _item(item: Position) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "1030": item.name,
        "1079": kopecks(item.price),
        "1023": f"{item.quantity:.3f}",
        "1043": kopecks(item.amount),
        "1199": TAX_TYPES[item.tax.type],
        "1212": item.paymentObject,
        "1214": PAYMENT_METHODS[item.paymentMethod],
        "2108": item.measurementUnit,
    }
    vat_sum = line_vat(entry["1043"], VATS_BY_CODE[entry["1199"]])
    if vat_sum is not None:
        entry["1200"] = vat_sum
    if item.additionalAttribute is not None:
        entry["1191"] = item.additionalAttribute
    return entry


def fiscal_params(result: FiscalResult, registration_number: str) -> dict[str, Any]:
    """The driver's ``fiscalParams`` of a fiscalized receipt."""
    total = Decimal(int(result.document.get("1020", 0))) / 100
    return {
        "fiscalDocumentNumber": result.fd,
        "fiscalDocumentDateTime": result.datetime.isoformat(),
        "fiscalDocumentSign": result.fp,
        "fnNumber": result.fn,
        "registrationNumber": registration_number,
        "fnsUrl": "www.nalog.gov.ru",
        "shiftNumber": result.shift,
        "fiscalReceiptNumber": result.number_in_shift,
        "total": float(total),  # exact: a kopeck amount as a two-place decimal number
    }


def shift_params(report: ShiftReport, fn: str, registration_number: str) -> dict[str, Any]:
    params: dict[str, Any] = {
        "fiscalDocumentNumber": report.fd,
        "fiscalDocumentDateTime": (
            report.closed_at or report.opened_at or datetime.now()
        ).isoformat(),
        "fnNumber": fn,
        "registrationNumber": registration_number,
        "shiftNumber": report.shift,
    }
    if report.kind == "z":
        params["receiptsCount"] = report.receipts
    return params


@dataclass
class Exchange:
    """The FN's exchange with the OFD as ``ofdExchangeStatus`` reports it."""

    last_success: datetime | None = None
    last_error: str | None = None


def device_error(exc: DeviceError | ShiftError | InsufficientCash) -> TaskError:
    if isinstance(exc, InsufficientCash):
        code, text = ERROR_CODES["insufficient_cash"]
        return TaskError(code, f"{text} ({exc.message})")
    if isinstance(exc, ShiftError):
        return TaskError(82 if "open" in exc.message else 73, exc.message)
    code, text = ERROR_CODES.get(exc.reason, (999, "Ошибка"))
    return TaskError(code, f"{text} ({exc.message})")


def run_task(kkt: EmulatedKkt, task: Any, uuid: str, exchange: Exchange) -> dict[str, Any]:
    """Run one task on the emulator core; its result, or ``TaskError``."""
    parsed = parse_task(task)
    status = kkt.status()
    try:
        if isinstance(parsed, ReceiptTask):
            receipt_id, document = receipt_document(parsed, uuid)
            result = kkt.print_receipt(receipt_id, document)
            return {"fiscalParams": fiscal_params(result, status.registration_number)}
        if isinstance(parsed, OperatorTask):
            cashier = parsed.operator.name if parsed.operator else None
            report = {
                "openShift": lambda: kkt.open_shift(cashier),
                "closeShift": lambda: kkt.close_shift(cashier),
                "reportX": kkt.x_report,
            }[parsed.type]()
            return {"fiscalParams": shift_params(report, status.fn, status.registration_number)}
        if isinstance(parsed, CashTask):
            return _cash(kkt, parsed, uuid)
        if isinstance(parsed, FnDocumentTask):
            return {"documentTLV": _fn_document(kkt, parsed.fiscalDocumentNumber)}
        if parsed.type == "getShiftTotals":
            return _shift_totals(kkt)
    except (DeviceError, ShiftError, InsufficientCash) as exc:
        raise device_error(exc) from None
    return _query(kkt, parsed.type, exchange)


CASH_KINDS = {"cashIn": CashKind.CASH_IN, "cashOut": CashKind.CASH_OUT}


def _cash(kkt: EmulatedKkt, task: CashTask, uuid: str) -> dict[str, Any]:
    """Cash in or out on the core, kept under the task's uuid; the drawer's cash after it
    (``counters.cashSum``), as the driver's script answers. The core keeps the drawer per
    shift and refuses a cash out beyond it (error 80)."""
    cashier = task.operator.name if task.operator else None
    shift_was_open = kkt.status().shift_open
    done = kkt.cash_operation(uuid, CASH_KINDS[task.type], Kopecks(kopecks(task.cashSum)), cashier)
    return {
        "counters": {"cashSum": _rubles(done.drawer_cash)},
        "warnings": {"shiftAutoOpened": not shift_was_open},
    }


def _shift_totals(kkt: EmulatedKkt) -> dict[str, Any]:
    """``getShiftTotals`` ([J] ``json_getShiftTotals.js``) from the core's figures of the open
    shift; zeros when no shift is open (the core keeps no counters between shifts)."""
    status = kkt.status()
    summary = kkt.x_report().summary if status.shift_open else None
    figures = summary or shift_totals([])
    types = {
        "sell": "sale",
        "sellReturn": "refund",
        "buy": "expense",
        "buyReturn": "expense_refund",
    }
    methods = {"cash": "cash", "electronically": "card", "prepaid": "prepaid", "credit": "credit",
               "other": "other"}  # fmt: skip
    receipts = {
        theirs: {
            "count": figures.counts[ours],
            "sum": _rubles(figures.totals[ours]),
            "payments": {k: _rubles(figures.payments[ours][m]) for k, m in methods.items()},
        }
        for theirs, ours in types.items()
    }
    return {
        "shiftTotals": {
            "receipts": receipts,
            "income": {"sum": _rubles(figures.cash_in.amount), "count": figures.cash_in.count},
            "outcome": {"sum": _rubles(figures.cash_out.amount), "count": figures.cash_out.count},
            "cashDrawer": {"sum": _rubles(figures.drawer_cash)},
            "shiftNumber": status.shift,
        }
    }


def interrupted_result(kkt: EmulatedKkt, task: Any, uuid: str) -> dict[str, Any] | None:
    """The outcome of a task a power loss caught mid-run, learned from the FN, as a real web
    server learns it before it unblocks its queue: a receipt the FN has is ``ready`` with its
    document's ``fiscalParams`` (printing it again would be a second receipt), one it lacks was
    never closed (``interrupted``); a shift report is ``interrupted`` (the client reads the
    shift's state). ``None``: a query, safe to run again."""
    try:
        parsed = parse_task(task)
    except TaskError:
        return None  # refused again when run
    if isinstance(parsed, ReceiptTask):
        receipt_id, _ = receipt_document(parsed, uuid)
        found = kkt.find_document(receipt_id)
        if found is not None:
            params = fiscal_params(found, kkt.status().registration_number)
            return {"status": "ready", "result": {"fiscalParams": params,
                                                  "warnings": {"recovered": True}}}  # fmt: skip
        return {"status": "interrupted"}
    if isinstance(parsed, CashTask):
        done = kkt.find_cash_operation(uuid)
        if done is None:
            return {"status": "interrupted"}
        counters = {"cashSum": _rubles(done.drawer_cash)}
        return {"status": "ready", "result": {"counters": counters,
                                              "warnings": {"recovered": True}}}  # fmt: skip
    if isinstance(parsed, OperatorTask):
        return {"status": "interrupted"}
    return None


def _query(kkt: EmulatedKkt, kind: str, exchange: Exchange) -> dict[str, Any]:
    status = kkt.status()
    if kind == "getDeviceStatus":
        return {
            "deviceStatus": {
                "shift": "expired" if status.shift_expired else "opened" if status.shift_open
                else "closed",
                "blocked": status.fn_blocked,
                "coverOpened": False,
                "paperPresent": status.paper,
                "fnPresent": True,
                "fiscal": True,
                "currentDateTime": datetime.now().astimezone().isoformat(),
                "model": "EMULATOR (kkt-adapter mock-atol)",
            }
        }  # fmt: skip
    if kind == "getShiftStatus":
        state = "expired" if status.shift_expired else "opened" if status.shift_open else "closed"
        return {"shiftStatus": {"state": state, "number": status.shift}}
    if kind == "getFnInfo":
        return {"fnInfo": {"serial": status.fn, "ffdVersion": "1.2", "livePhase": "fiscalMode",
                           "warnings": {"ofdTimeout": status.fn_blocked}}}  # fmt: skip
    if kind == "getFnStatus":
        return {"fnStatus": {"fiscalDocumentNumber": status.last_fd, "serial": status.fn}}
    if kind == "ofdExchangeStatus":
        return {
            "status": {
                "notSentCount": status.unconfirmed_count,
                "notSentFirstDocNumber": status.first_unconfirmed_fd or 0,
                "notSentFirstDocDateTime": status.oldest_unconfirmed_at.isoformat()
                if status.oldest_unconfirmed_at
                else None,
            },
            "errors": {
                "network": {"code": 1 if exchange.last_error else 0,
                            "description": exchange.last_error or ""},
                "lastSuccessConnectionDateTime": exchange.last_success.isoformat()
                if exchange.last_success else None,
            },
        }  # fmt: skip
    return {}  # continuePrint: nothing was left unprinted


# The core's document kinds as the driver's ``fiscalDocumentType``.
ARCHIVE_KINDS = {"receipt": "receipt", "open_shift": "openShift", "close_shift": "closeShift"}


def _fn_document(kkt: EmulatedKkt, fd: int) -> dict[str, Any]:
    """Any document of the FN's archive, as a real FN keeps every FD: a receipt with its QR
    and money as rubles, a shift report with its own type."""
    archived = kkt.archive_document(fd)
    if archived is None:
        raise TaskError(401, f"Документ {fd} не найден в архиве ФН")
    kind, document = archived
    if kind != "receipt":
        return {**document, "fiscalDocumentType": ARCHIVE_KINDS.get(kind, kind)}
    entries = kkt.journal(fd - 1, 1)
    if not entries or entries[0].result.fd != fd:
        raise TaskError(401, f"Документ {fd} не найден в архиве ФН")
    result = entries[0].result
    tags: dict[str, Any] = {**result.document, "fiscalDocumentType": "receipt", "qr": result.qr}
    for tag in ("1020", *RECEIPT_SUM_TAGS, *PAYMENT_TAGS.values()):  # money as rubles
        if isinstance(tags.get(tag), int):
            tags[tag] = _rubles(tags[tag])
    item_money = ("1079", "1043", "1200")
    tags["1059"] = [
        {**item, **{t: _rubles(item[t]) for t in item_money if isinstance(item.get(t), int)}}
        for item in tags.get("1059", [])
    ]
    return tags


def _rubles(kopecks: int) -> float:
    return float(Decimal(kopecks) / 100)  # exact: two decimal places
