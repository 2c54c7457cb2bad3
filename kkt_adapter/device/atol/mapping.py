"""Our FFD documents and device requests as ATOL driver v10 JSON tasks, and the driver's
answers as our results and errors. Pure: no I/O, no clock, no randomness.

A *task* is the JSON object the driver executes (``processJson`` in the library, one element
of ``request`` on the web server); an *answer* is that task's ``result`` object (the
library's ``JSON_DATA`` after ``processJson``, ``results[i].result`` on the web server); an
*error* is the ``{code, description}`` object of a failed task. The transports move them;
everything they mean is here. Field names, values and their sources: ``docs/atol.md``.

Anything we cannot map is refused before it reaches the register: a document that cannot
become a task raises ``DeviceError(reason="invalid_document")``, a bad taxation setting
``ConfigError``; an answer we cannot read raises ``DeviceAnswerError`` (outcome unknown).
"""

from __future__ import annotations

import base64
import math
import re
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from kkt_adapter.device.base import DeviceStatus, ShiftReport
from kkt_adapter.domain.fiscal import FfdDocument, FiscalResult
from kkt_adapter.domain.money import Kopecks
from kkt_adapter.domain.shift_totals import CashKind, CashMovement, ShiftTotals
from kkt_adapter.domain.sign import qr_string
from kkt_adapter.errors import ConfigError, DeviceAnswerError, DeviceError

# -- vocabulary: FFD values -> ATOL JSON values ------------------------------------------------

RECEIPT_TASK_TYPES: dict[tuple[int, bool], str] = {
    (1, False): "sell",
    (2, False): "sellReturn",
    (3, False): "buy",
    (4, False): "buyReturn",
    (1, True): "sellCorrection",
    (2, True): "sellReturnCorrection",
    (3, True): "buyCorrection",
    (4, True): "buyReturnCorrection",
}
"""(tag 1054, is a correction) -> task type."""

TAX_TYPES: dict[int, str] = {
    1: "vat20",
    2: "vat10",
    3: "vat120",
    4: "vat110",
    5: "vat0",
    6: "none",
    7: "vat5",
    8: "vat7",
    9: "vat105",
    10: "vat107",
    11: "vat22",
    12: "vat122",
}
"""Tag 1199 -> ``tax.type``."""

PAYMENT_METHODS: dict[int, str] = {
    1: "fullPrepayment",
    2: "prepayment",
    3: "advance",
    4: "fullPayment",
    5: "partialPayment",
    6: "credit",
    7: "creditPayment",
}
"""Tag 1214 -> ``paymentMethod``."""

PAYMENT_OBJECTS: dict[int, str] = {
    1: "commodity",
    2: "excise",
    3: "job",
    4: "service",
    9: "intellectualActivity",
    10: "payment",
    11: "agentCommission",
    13: "another",
    14: "proprietaryLaw",
    19: "deposit",
    30: "exciseWithoutMarking",
    31: "exciseWithMarking",
    32: "commodityWithoutMarking",
    33: "commodityWithMarking",
}
"""Tag 1212 -> ``paymentObject``, for the subjects our receipts have."""

MEASUREMENT_UNITS: dict[int, str] = {
    0: "piece",
    10: "gram",
    11: "kilogram",
    12: "ton",
    20: "centimeter",
    21: "decimeter",
    22: "meter",
    30: "squareCentimeter",
    31: "squareDecimeter",
    32: "squareMeter",
    40: "milliliter",
    41: "liter",
    42: "cubicMeter",
    50: "kilowattHour",
    51: "gkal",
    70: "day",
    71: "hour",
    72: "minute",
    73: "second",
    80: "kilobyte",
    81: "megabyte",
    82: "gigabyte",
    83: "terabyte",
    255: "otherUnits",
}
"""Tag 2108 -> ``measurementUnit``."""

PAYMENT_TYPES: dict[str, str] = {
    "1031": "cash",
    "1081": "electronically",
    "1215": "prepaid",
    "1216": "credit",
    "1217": "other",
}
"""Payment sum tag -> ``payments[].type``, in the order the payments are listed."""

TAXATION_TYPES: frozenset[str] = frozenset(
    {"osn", "usnIncome", "usnIncomeOutcome", "esn", "patent"}
)
"""``taxationType`` values (tag 1055). ``envd`` is left out: it was abolished in 2021."""

CORRECTION_TYPES: dict[int, str] = {0: "self", 1: "instruction"}
"""Tag 1173 -> ``correctionType``."""

MARK_STATUSES: dict[int, str] = {1: "itemPieceSold", 2: "itemPieceReturn"}
"""Tag 1054 -> ``imcParams.itemEstimatedStatus`` (tag 2003) of a marked item. Expense
receipts with marking codes are refused: which status a buyer's receipt declares is not
settled in the sources we read."""

SHIFT_LENGTH = timedelta(hours=24)
"""A shift lasts at most 24 hours (54-FZ); the driver reports when it expires."""

_TASK_NAMESPACE = uuid.UUID("e56b9b0d-036c-52cb-a848-6159baa15fe4")
"""uuid5(NAMESPACE_URL, "https://github.com/kkt-adapter/kkt-adapter#atol-task"), fixed once:
changing it would give every receipt in flight a new task uuid, i.e. a second receipt."""

_EXACT_DIGITS = 15
"""Decimals with at most this many significant digits survive decimal -> double -> shortest
decimal unchanged (a double holds 15.95 decimal digits)."""

_QUANTITY_RE = re.compile(r"[0-9]{1,8}\.[0-9]{3}")
_DIGITS_RE = re.compile(r"[0-9]+")


@dataclass(frozen=True)
class Operator:
    """The cashier a task is done by (tags 1021, 1203)."""

    name: str
    vatin: str | None = None

    def as_json(self) -> dict[str, str]:
        """The task's ``operator`` object."""
        return (
            {"name": self.name} if self.vatin is None else {"name": self.name, "vatin": self.vatin}
        )


# -- money ---------------------------------------------------------------------------------


def rubles(kopecks: int) -> float:
    """Kopecks as the JSON number of rubles ATOL wants: 799001 -> 7990.01.

    Built from integers as the decimal text "7990.01" and read once by ``float()``, which
    rounds a decimal text to the nearest double; no float arithmetic touches the amount. The
    JSON written from it is still exactly "7990.01": JSON writers (``json``, ``orjson``) print
    a double as the shortest text that reads back as it, and a decimal of at most 15
    significant digits reads back as itself. Our largest amount (``MAX_MONEY``, 10**12
    kopecks, "10000000000.00") has 13 digits, so every amount goes over the wire exactly.
    """
    if type(kopecks) is not int or kopecks < 0 or kopecks >= 10**_EXACT_DIGITS:
        raise ValueError(f"not an amount of kopecks that JSON carries exactly: {kopecks!r}")
    whole, fraction = divmod(kopecks, 100)
    return float(f"{whole}.{fraction:02d}")


def kopecks_from_json(value: object, where: str) -> int:
    """A JSON number of rubles from the driver (``390.75``) as kopecks (39075), exactly.

    ``repr`` of the parsed double is the shortest decimal that reads back as it: the text the
    driver wrote, for amounts of at most 15 digits. More than two fraction digits is refused.
    """
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise DeviceAnswerError(f"ATOL answer: {where} is not a number: {value!r}")
    if isinstance(value, int):
        return value * 100
    if not math.isfinite(value):
        raise DeviceAnswerError(f"ATOL answer: {where} is not a finite number: {value!r}")
    scaled = Decimal(repr(value)).scaleb(2)
    if scaled != scaled.to_integral_value():
        raise DeviceAnswerError(f"ATOL answer: {where} is not whole kopecks: {value!r}")
    return int(scaled)


def _quantity(text: object, where: str) -> float:
    """Tag 1023's "1.500" as the JSON number 1.5 (exact by the argument of :func:`rubles`:
    at most 11 significant digits)."""
    if not isinstance(text, str) or not _QUANTITY_RE.fullmatch(text):
        raise _refuse(where, f"quantity must be a decimal with 3 fraction digits: {text!r}")
    return float(text)


# -- the receipt task -----------------------------------------------------------------------


def task_uuid(receipt_id: str, attempt: int = 0) -> str:
    """The uuid of the task printing ``receipt_id``: the same for every call.

    The web server keeps tasks by uuid: after a lost answer or a crash, posting the same uuid
    again is refused (409) and the original task's result can be read, while a fresh uuid
    would be a second task and so a second receipt (I2). ``attempt`` > 0 gives a new task
    for the same receipt, for use only when the first task is known to have failed (its
    result read back as an error): the web server would otherwise answer with that error.
    """
    if attempt < 0:
        raise ValueError(f"attempt must not be negative: {attempt}")
    name = receipt_id if attempt == 0 else f"{receipt_id}#{attempt}"
    return str(uuid.uuid5(_TASK_NAMESPACE, name))


def receipt_task(
    receipt_id: str,
    document: FfdDocument,
    *,
    taxation_type: str | None,
    operator: Operator | None = None,
) -> dict[str, Any]:
    """The task fiscalizing ``document`` (built by ``kkt_adapter.domain.ffd.to_ffd``).

    ``taxation_type`` is the register's ``taxationType`` setting (None: the register's
    default); ``operator`` is the cashier used when the document names none (tag 1021).
    Raises ``DeviceError(reason="invalid_document")`` naming the tag it cannot map.
    """
    doc = _Document(document, "document")
    if doc.opt_text("1192") != receipt_id:
        raise _refuse("document.1192", f"must equal the receipt id {receipt_id!r}")
    type_code = doc.integer("1054")
    correction = "1173" in document or "1174" in document
    kind = RECEIPT_TASK_TYPES.get((type_code, correction))
    if kind is None:
        raise _refuse("document.1054", f"not a receipt type: {type_code!r}")
    task: dict[str, Any] = {"type": kind}
    if correction:
        task.update(_correction(doc))
    if taxation_type is not None:
        task["taxationType"] = _taxation_type(taxation_type)
    cashier = _operator(doc, operator)
    if cashier is not None:
        task["operator"] = cashier.as_json()
    contact = doc.opt_text("1008")
    if contact is not None:
        task["clientInfo"] = {"emailOrPhone": contact}
    total = doc.money("1020")
    task["items"] = _positions(doc, type_code, total) + _attributes(doc, receipt_id)
    task["payments"] = _payments(doc, total)
    task["total"] = rubles(total)
    return task


def _taxation_type(value: str) -> str:
    if value not in TAXATION_TYPES:
        known = ", ".join(sorted(TAXATION_TYPES))
        raise ConfigError(f"ATOL taxation type {value!r} is not one of {known}")
    return value


def _operator(doc: _Document, fallback: Operator | None) -> Operator | None:
    name = doc.opt_text("1021")
    if name is None:
        return fallback
    return Operator(name, doc.opt_text("1203"))


def _correction(doc: _Document) -> dict[str, Any]:
    kind = CORRECTION_TYPES.get(doc.integer("1173"))
    if kind is None:
        raise _refuse("document.1173", "must be 0 (self) or 1 (by order)")
    basis = doc.child("1174")
    day = basis.text("1178")
    if not re.fullmatch(r"[0-9]{4}-[0-9]{2}-[0-9]{2}", day):
        raise _refuse("document.1174.1178", f"not a date YYYY-MM-DD: {day!r}")
    fields: dict[str, Any] = {"correctionType": kind, "correctionBaseDate": day.replace("-", ".")}
    number = basis.opt_text("1179")
    if number is not None:
        fields["correctionBaseNumber"] = number
    return fields


def _positions(doc: _Document, type_code: int, total: int) -> list[dict[str, Any]]:
    items = doc.children("1059")
    if not items:
        raise _refuse("document.1059", "a receipt needs at least one item")
    positions = [_position(item, type_code) for item in items]
    amounts = sum(item.money("1043") for item in items)
    if amounts != total:
        raise _refuse("document.1020", f"items add up to {amounts} kopecks, not {total}")
    return positions


def _position(item: _Document, type_code: int) -> dict[str, Any]:
    position: dict[str, Any] = {
        "type": "position",
        "name": item.text("1030"),
        "price": rubles(item.money("1079")),
        "quantity": _quantity(item.get("1023"), item.path("1023")),
        "amount": rubles(item.money("1043")),
        "tax": {"type": item.code("1199", TAX_TYPES)},
        "paymentMethod": item.code("1214", PAYMENT_METHODS),
        "paymentObject": item.code("1212", PAYMENT_OBJECTS),
        "measurementUnit": item.code("2108", MEASUREMENT_UNITS),
    }
    extra = item.opt_text("1191")
    if extra is not None:
        position["additionalAttribute"] = extra
    mark = item.opt_text("2000")
    if mark is not None:
        status = MARK_STATUSES.get(type_code)
        if status is None:
            raise _refuse(item.path("2000"), "marking codes are mapped for sales and refunds only")
        position["imcParams"] = {
            "imcType": "auto",
            "imc": base64.b64encode(mark.encode()).decode("ascii"),
            "itemEstimatedStatus": status,
            "imcModeProcessing": 0,
        }
    return position


def _attributes(doc: _Document, receipt_id: str) -> list[dict[str, Any]]:
    """Tag 1192 (our receipt id) and tag 1084 (our mark), as the task's attribute items."""
    attributes: list[dict[str, Any]] = [{"type": "additionalAttribute", "value": receipt_id}]
    if doc.get("1084") is not None:
        mark = doc.child("1084")
        attributes.append(
            {"type": "userAttribute", "name": mark.text("1085"), "value": mark.text("1086")}
        )
    return attributes


def _payments(doc: _Document, total: int) -> list[dict[str, Any]]:
    payments = []
    paid = 0
    for tag, kind in PAYMENT_TYPES.items():
        amount = doc.money(tag) if doc.get(tag) is not None else 0
        if amount > 0:
            payments.append({"type": kind, "sum": rubles(amount)})
            paid += amount
    if paid != total:
        raise _refuse("document.1031", f"payments add up to {paid} kopecks, not {total}")
    return payments


# -- the receipt's answer -------------------------------------------------------------------


@dataclass(frozen=True)
class TaskWarnings:
    """The ``warnings`` of a fiscal task's answer."""

    not_printed: bool
    """Closed in the FN but not printed (out of paper, cover open): ``continuePrint``."""
    non_fiscal: bool
    """Made on a register that is not fiscalized (a demo mode): not a fiscal document."""
    recovered: bool
    """The web server rebuilt this answer after losing the register mid-task."""


def fiscal_result(
    receipt_id: str, answer: dict[str, Any], *, document: FfdDocument
) -> FiscalResult:
    """The answer of ``receipt_task(receipt_id, document)`` as our fiscal result.

    The result's document is ``document`` with the fiscal tags the register added (1040 FD,
    1041 FN, 1077 FP, 1012 date-time, 1038 shift, 1042 number in shift, 1037 registration
    number when given). Raises ``DeviceAnswerError`` when a field is missing or malformed,
    or when the register's total differs from the document's (outcome unknown: settle it).
    """
    params = _Answer(answer, "result").child("fiscalParams")
    fn = params.digits("fnNumber")
    fd = params.integer("fiscalDocumentNumber")
    fp = params.digits("fiscalDocumentSign")
    shift = params.integer("shiftNumber")
    number = params.integer("fiscalReceiptNumber")
    when = params.moment("fiscalDocumentDateTime")
    doc = _Document(document, "document")
    total = doc.money("1020")
    type_code = doc.integer("1054")
    if params.get("total") is not None and params.money("total") != total:
        raise DeviceAnswerError(
            f"ATOL answer: result.fiscalParams.total {params.get('total')!r} differs from the"
            f" receipt's total of {total} kopecks (receipt {receipt_id}, FD {fd})"
        )
    fiscal: FfdDocument = {
        "1040": fd,
        "1041": fn,
        "1077": fp,
        "1012": when.isoformat(),
        "1038": shift,
        "1042": number,
    }
    registration = params.opt_text("registrationNumber")
    if registration is not None:
        fiscal["1037"] = registration.strip()
    return FiscalResult(
        receipt_id=receipt_id,
        fn=fn,
        fd=fd,
        fp=fp,
        shift=shift,
        number_in_shift=number,
        datetime=when,
        qr=qr_string(when, total, fn, fd, fp, type_code),
        document={**document, **fiscal},
    )


def task_warnings(answer: dict[str, Any]) -> TaskWarnings:
    """The warnings of a fiscal task's answer (all false when it has none)."""
    warnings = _Answer(answer, "result").opt_child("warnings")
    if warnings is None:
        return TaskWarnings(False, False, False)
    return TaskWarnings(
        not_printed=warnings.flag("notPrinted"),
        non_fiscal=warnings.flag("nonFiscal"),
        recovered=warnings.flag("recovered"),
    )


# -- the other tasks ------------------------------------------------------------------------


def open_shift_task(operator: Operator | None = None) -> dict[str, Any]:
    return _with_operator({"type": "openShift"}, operator)


def close_shift_task(operator: Operator | None = None) -> dict[str, Any]:
    """Close the shift (the Z report)."""
    return _with_operator({"type": "closeShift"}, operator)


def report_x_task(operator: Operator | None = None) -> dict[str, Any]:
    """Print an X report; its answer is empty."""
    return _with_operator({"type": "reportX"}, operator)


def device_status_task() -> dict[str, Any]:
    return {"type": "getDeviceStatus"}


CASH_TASKS: dict[CashKind, str] = {CashKind.CASH_IN: "cashIn", CashKind.CASH_OUT: "cashOut"}
"""Our cash operation -> the driver's task type ([J] ``json_cashIn.js``, ``json_cashOut.js``)."""


def cash_task(kind: CashKind, amount: int, operator: Operator | None = None) -> dict[str, Any]:
    """Cash in or out of ``amount`` kopecks: ``{type, cashSum, operator?}``. A non-fiscal
    document (its answer has no ``fiscalParams``); the register opens a closed shift for it
    (``warnings.shiftAutoOpened``) as for a receipt."""
    if amount <= 0:
        raise ValueError("a cash operation's amount must be positive")
    return _with_operator({"type": CASH_TASKS[kind], "cashSum": rubles(amount)}, operator)


def cash_sum(answer: dict[str, Any]) -> int:
    """The cash in the drawer after a ``cashIn``/``cashOut`` task (``counters.cashSum``)."""
    return _Answer(answer, "result").child("counters").money("cashSum")


def shift_totals_task() -> dict[str, Any]:
    """The register's counters of the open shift ([J] ``json_getShiftTotals.js``)."""
    return {"type": "getShiftTotals"}


SHIFT_TOTALS_TYPES: dict[str, str] = {
    "sell": "sale",
    "sellReturn": "refund",
    "buy": "expense",
    "buyReturn": "expense_refund",
}
"""``shiftTotals.receipts`` keys -> our receipt types ([J] ``RECEIPT_TYPES``)."""
SHIFT_TOTALS_PAYMENTS: dict[str, str] = {
    "cash": "cash",
    "electronically": "card",
    "prepaid": "prepaid",
    "credit": "credit",
    "other": "other",
}
"""``receipts.<type>.payments`` keys -> our payment methods ([J] ``PAYMENT_TYPES``)."""


def shift_totals(answer: dict[str, Any]) -> tuple[int, ShiftTotals]:
    """The ``getShiftTotals`` answer: the shift number and its figures as the register counts
    them. A counter the register does not support is left out of its answer ([J]): read as 0.
    The register counts no VAT per rate, so ``vat`` is empty (the adapter fills it from its
    records: ``Shifts._with_vat``)."""
    totals = _Answer(answer, "result").child("shiftTotals")
    receipts = totals.child("receipts")
    sums: dict[str, Kopecks] = {}
    counts: dict[str, int] = {}
    payments: dict[str, dict[str, Kopecks]] = {}
    for theirs, ours in SHIFT_TOTALS_TYPES.items():
        kind = receipts.opt_child(theirs) or _Answer({}, receipts.path(theirs))
        sums[ours] = Kopecks(_opt_money(kind, "sum"))
        counts[ours] = _opt_int(kind, "count")
        paid = kind.opt_child("payments") or _Answer({}, kind.path("payments"))
        payments[ours] = {
            method: Kopecks(_opt_money(paid, key)) for key, method in SHIFT_TOTALS_PAYMENTS.items()
        }
    income = totals.opt_child("income") or _Answer({}, totals.path("income"))
    outcome = totals.opt_child("outcome") or _Answer({}, totals.path("outcome"))
    drawer = totals.child("cashDrawer").money("sum")
    figures = ShiftTotals(
        receipts=sum(counts.values()),
        totals=sums,
        counts=counts,
        payments=payments,
        vat={},
        cash_in=CashMovement(Kopecks(_opt_money(income, "sum")), _opt_int(income, "count")),
        cash_out=CashMovement(Kopecks(_opt_money(outcome, "sum")), _opt_int(outcome, "count")),
        drawer_cash=Kopecks(drawer),
    )
    return _opt_int(totals, "shiftNumber"), figures


def _opt_money(answer: _Answer, key: str) -> int:
    return 0 if answer.get(key) is None else answer.money(key)


def _opt_int(answer: _Answer, key: str) -> int:
    return 0 if answer.get(key) is None else answer.integer(key)


def shift_status_task() -> dict[str, Any]:
    return {"type": "getShiftStatus"}


def fn_info_task() -> dict[str, Any]:
    return {"type": "getFnInfo"}


def fn_status_task() -> dict[str, Any]:
    """The FN's status, with the number of its last fiscal document."""
    return {"type": "getFnStatus"}


def exchange_status_task() -> dict[str, Any]:
    return {"type": "ofdExchangeStatus"}


def continue_print_task() -> dict[str, Any]:
    """Finish printing a document the FN closed but the printer did not print."""
    return {"type": "continuePrint"}


def fn_document_task(fd: int) -> dict[str, Any]:
    """Read document ``fd`` from the FN's archive (its tags, as :func:`fn_document` reads)."""
    if type(fd) is not int or fd < 1:
        raise ValueError(f"not a fiscal document number: {fd!r}")
    return {"type": "getFnDocument", "fiscalDocumentNumber": fd}


def check_document_closed_task() -> dict[str, Any]:
    """Is the last document closed in the FN, and printed?

    Not a JSON task of the driver: the library's ``checkDocumentClosed()`` method, which the
    ``atol-lib`` transport calls for this task, answering ``{"documentClosed": bool,
    "documentPrinted": bool}`` (our convention, from ``LIBFPTR_PARAM_DOCUMENT_CLOSED`` and
    ``..._PRINTED``). The web server has no equivalent: it settles an interrupted task itself
    (status ``blocked``, then ``ready`` or ``error``).
    """
    return {"type": "checkDocumentClosed"}


def cancel_receipt_task() -> dict[str, Any]:
    """Cancel an open (not closed) receipt.

    Not a JSON task either: the library's ``cancelReceipt()`` method, for ``atol-lib``
    (answer ``{}``). Every receipt task cancels an open receipt first by itself.
    """
    return {"type": "cancelReceipt"}


def _with_operator(task: dict[str, Any], operator: Operator | None) -> dict[str, Any]:
    return task if operator is None else {**task, "operator": operator.as_json()}


# -- their answers --------------------------------------------------------------------------


@dataclass(frozen=True)
class DeviceState:
    """``getDeviceStatus``'s ``deviceStatus``."""

    shift: str
    """"closed", "opened" or "expired" (open for more than 24 hours)."""
    blocked: bool
    cover_open: bool
    paper: bool
    fn_present: bool
    fiscal: bool
    clock: datetime | None


@dataclass(frozen=True)
class ShiftState:
    """``getShiftStatus``'s ``shiftStatus``."""

    state: str
    """"closed", "opened" or "expired"."""
    number: int
    """The open shift's number, or the last closed one's."""
    expires_at: datetime | None


@dataclass(frozen=True)
class FnInfo:
    """``getFnInfo``'s ``fnInfo``: the FN's serial, life phase and warnings."""

    serial: str
    live_phase: str
    """"fiscalMode" while it signs; "postFiscalMode", "accessArchive" after it is closed."""
    need_replacement: bool
    resource_exhausted: bool
    memory_overflow: bool
    ofd_timeout: bool
    critical_error: bool
    valid_until: datetime | None = None
    """``validityDate``: when the FN stops signing."""
    ffd_version: str | None = None


@dataclass(frozen=True)
class FnStatus:
    """``getFnStatus``'s ``fnStatus``."""

    last_fd: int


@dataclass(frozen=True)
class ExchangeStatus:
    """The FN's exchange with the OFD (``ofdExchangeStatus``)."""

    unsent_count: int
    first_unsent_fd: int | None
    """None when nothing is unsent."""
    first_unsent_at: datetime | None
    last_success_at: datetime | None
    """The last successful connection to the OFD, as the register reports it."""
    error: str | None
    """The last exchange error ("network 13617: ..."), None when all three codes are 0."""


@dataclass(frozen=True)
class DocumentState:
    """The last document's state, from :func:`check_document_closed_task`."""

    closed: bool
    printed: bool


@dataclass(frozen=True)
class FnDocument:
    """A document read from the FN's archive (``getFnDocument``)."""

    fd: int
    kind: str
    """"receipt", "receiptCorrection", "openShift", "closeShift", ... (``fiscalDocumentType``)."""
    receipt_id: str | None
    """Tag 1192: the adapter's receipt id, when the adapter printed it."""
    total: int | None
    """Tag 1020 in kopecks, for receipts."""
    tags: dict[str, Any]
    """Every tag as the driver gave it (money in rubles, as JSON numbers)."""


def shift_report(kind: str, answer: dict[str, Any]) -> ShiftReport:
    """The answer of ``openShift`` (``kind`` "open") or ``closeShift`` ("z") as a report."""
    if kind not in ("open", "z"):
        raise ValueError(f"only open and close shift tasks answer with a report, not {kind!r}")
    params = _Answer(answer, "result").child("fiscalParams")
    when = params.moment("fiscalDocumentDateTime")
    return ShiftReport(
        kind=kind,
        shift=params.integer("shiftNumber"),
        fd=params.integer("fiscalDocumentNumber"),
        opened_at=when if kind == "open" else None,
        closed_at=when if kind == "z" else None,
        receipts=params.integer("receiptsCount") if kind == "z" else 0,
        fn=params.opt_text("fnNumber"),
    )


def device_state(answer: dict[str, Any]) -> DeviceState:
    status = _Answer(answer, "result").child("deviceStatus")
    return DeviceState(
        shift=status.choice("shift", ("closed", "opened", "expired")),
        blocked=status.flag("blocked"),
        cover_open=status.flag("coverOpened"),
        paper=status.boolean("paperPresent"),
        fn_present=status.boolean("fnPresent"),
        fiscal=status.boolean("fiscal"),
        clock=status.opt_moment("currentDateTime"),
    )


def shift_state(answer: dict[str, Any]) -> ShiftState:
    status = _Answer(answer, "result").child("shiftStatus")
    # The task answers expiredTime; the web server's queryShiftStatus names it expiredAt.
    key = "expiredTime" if status.get("expiredTime") is not None else "expiredAt"
    return ShiftState(
        state=status.choice("state", ("closed", "opened", "expired")),
        number=status.integer("number"),
        expires_at=status.opt_moment(key),
    )


def fn_info(answer: dict[str, Any]) -> FnInfo:
    info = _Answer(answer, "result").child("fnInfo")
    warnings = info.opt_child("warnings") or _Answer({}, info.path("warnings"))
    return FnInfo(
        serial=info.digits("serial"),
        live_phase=info.text("livePhase"),
        need_replacement=warnings.flag("needReplacement"),
        resource_exhausted=warnings.flag("resourceExhausted"),
        memory_overflow=warnings.flag("memoryOverflow"),
        ofd_timeout=warnings.flag("ofdTimeout"),
        critical_error=warnings.flag("criticalError"),
        valid_until=info.opt_moment("validityDate"),
        ffd_version=info.opt_text("ffdVersion"),
    )


def fn_status(answer: dict[str, Any]) -> FnStatus:
    status = _Answer(answer, "result").child("fnStatus")
    return FnStatus(last_fd=status.integer("fiscalDocumentNumber"))


def exchange_status(answer: dict[str, Any]) -> ExchangeStatus:
    """The ``ofdExchangeStatus`` task's answer (``status``, ``errors``), or the web server's
    ``queryOfdExchangeStatus`` one (``ofdExchangeStatus``, ``ofdExchangeErrors``)."""
    result = _Answer(answer, "result")
    task_shape = result.get("status") is not None
    status = result.child("status" if task_shape else "ofdExchangeStatus")
    errors = result.opt_child("errors" if task_shape else "ofdExchangeErrors")
    count = status.integer("notSentCount")
    # With nothing unsent the FN still reports a number and a date: both meaningless.
    first_fd = status.integer("notSentFirstDocNumber") if count else None
    first_at = status.moment("notSentFirstDocDateTime") if count else None
    last_success = None if errors is None else errors.opt_moment("lastSuccessConnectionDateTime")
    return ExchangeStatus(count, first_fd, first_at, last_success, _exchange_error(errors))


def _exchange_error(errors: _Answer | None) -> str | None:
    if errors is None:
        return None
    for side in ("fn", "network", "ofd"):
        error = errors.opt_child(side)
        if error is not None and error.integer("code") != 0:
            return f"{side} {error.integer('code')}: {error.opt_text('description') or ''}".strip()
    return None


def document_state(answer: dict[str, Any]) -> DocumentState:
    result = _Answer(answer, "result")
    return DocumentState(result.boolean("documentClosed"), result.boolean("documentPrinted"))


def fn_document(answer: dict[str, Any]) -> FnDocument:
    """A ``getFnDocument`` answer: ``documentTLV`` holds the tags by number (nested STLV as
    objects, repeated tags as arrays, money as rubles) and ``fiscalDocumentType``."""
    tlv = _Answer(answer, "result").child("documentTLV")
    total = tlv.money("1020") if tlv.get("1020") is not None else None
    return FnDocument(
        fd=tlv.integer("1040"),
        kind=tlv.text("fiscalDocumentType"),
        receipt_id=tlv.opt_text("1192"),
        total=total,
        tags=dict(tlv.data),
    )


def device_status(
    device: DeviceState,
    shift: ShiftState,
    fn: FnInfo,
    fn_state: FnStatus,
    exchange: ExchangeStatus,
    *,
    model: str,
    registration_number: str,
) -> DeviceStatus:
    """Our ``DeviceStatus`` from the answers of the status tasks, read one after another.

    The register reports when the shift expires, not when it opened: the opening is taken
    as 24 hours before. ``fn_blocked`` is the register's ``blocked`` flag.
    """
    shift_open = device.shift in ("opened", "expired")
    opened_at = None
    if shift_open and shift.expires_at is not None:
        opened_at = shift.expires_at - SHIFT_LENGTH
    return DeviceStatus(
        emulator=False,
        model=model,
        fn=fn.serial,
        registration_number=registration_number,
        online=True,
        paper=device.paper,
        shift_open=shift_open,
        shift=shift.number,
        shift_opened_at=opened_at,
        shift_expired=device.shift == "expired",
        last_fd=fn_state.last_fd,
        unconfirmed_count=exchange.unsent_count,
        oldest_unconfirmed_at=exchange.first_unsent_at,
        fn_blocked=device.blocked,
        cover_open=device.cover_open,
        fn_valid_until=fn.valid_until,
        ffd_version=fn.ffd_version,
        fn_memory_warning=fn.memory_overflow or fn.resource_exhausted,
        first_unconfirmed_fd=exchange.first_unsent_fd,
    )


# -- errors ---------------------------------------------------------------------------------

ERROR_REASONS: dict[int, str] = {
    1: "offline",  # connection disabled
    2: "offline",  # no connection
    3: "offline",  # port busy
    4: "offline",  # port not available
    44: "out_of_paper",
    45: "cover_open",
    46: "printer_fault",
    47: "printer_fault",  # mechanical fault
    114: "printer_fault",  # printer overheat
    150: "printer_fault",  # cutter fault
    55: "busy",
    68: "shift_expired",
    141: "shift_expired",  # the FN's shift is over 24 hours
    73: "shift_closed",  # denied in a closed shift
    83: "shift_open",  # denied in an open shift
    80: "insufficient_cash",  # NO_CASH: a cash out beyond the drawer's cash
    82: "document_open",  # denied in an open receipt
    200: "document_open",  # denied in an open document
    177: "interrupted",  # receipt close interrupted: closed or not, ask the FN
    502: "interrupted",  # not run: an earlier task of the request failed
    120: "fn_expired",
    136: "fn_expired",  # the FN's keys expired
    137: "fn_expired",  # the FN's resource is exhausted
    121: "fn_full",
    140: "fn_blocked",  # the FN's wait for the OFD's receipt ran out
    117: "fn_fault",  # invalid FN state
    118: "fn_fault",
    119: "fn_fault",  # FN crypto fault
    166: "fn_fault",  # FN not found
    241: "offline",  # connection lost
    5: "invalid_document",  # incorrect data
    8: "invalid_document",  # a required parameter is missing
    13: "invalid_document",  # invalid parameter
    16: "invalid_document",  # invalid sum
    17: "invalid_document",  # invalid quantity
    48: "invalid_document",  # invalid receipt type
    60: "invalid_document",  # invalid payment type
    66: "invalid_document",  # not fully paid
    143: "invalid_document",  # invalid taxation type
    144: "invalid_document",  # invalid tax type
    215: "invalid_document",  # 1212 and 1030 do not match
    216: "invalid_document",  # invalid 1214
    217: "invalid_document",  # invalid 1212
    219: "invalid_document",  # VAT 18 and 20 in one receipt
    227: "invalid_document",  # invalid total
    243: "invalid_document",  # invalid tax sum
    409: "invalid_document",  # invalid marking code
    412: "invalid_document",  # invalid measurement unit
    501: "invalid_document",  # the task's JSON is invalid (the text names the field)
}
"""The driver's error codes (``libfptr_error`` in ``libfptr10.h``) -> our ``reason``."""

_FINAL_REASONS = frozenset({"invalid_document", "fn_expired", "fn_full", "fn_fault"})
"""Reasons a retry in 5 seconds cannot cure: no ``Retry-After``."""


def device_error(error: dict[str, Any]) -> DeviceError:
    """The ``{code, description}`` of a failed task (or the older ``{errorCode,
    errorDescription}``) as our ``DeviceError``; the message keeps the driver's code and text.
    Codes without a mapping are ``device_error``; a malformed error is a ``DeviceAnswerError``."""
    code = error.get("code", error.get("errorCode"))
    text = error.get("description", error.get("errorDescription"))
    if type(code) is not int or code == 0:
        return DeviceAnswerError(f"ATOL answer: not an error code: {error!r}")
    reason = ERROR_REASONS.get(code, "device_error")
    message = f"ATOL error {code}: {text if isinstance(text, str) else 'no description'}"
    if reason in _FINAL_REASONS:
        return DeviceError(message, reason=reason, retry_after=None)
    return DeviceError(message, reason=reason)


# -- reading JSON ---------------------------------------------------------------------------


class _Json:
    """One JSON object, read by key with its path for messages; ``_fail`` says whose fault."""

    def __init__(self, data: object, path: str) -> None:
        if not isinstance(data, dict):
            raise self._fail(path, f"not an object: {data!r}")
        self.data: dict[str, Any] = data
        self._path = path

    def _fail(self, where: str, why: str) -> DeviceError:
        raise NotImplementedError

    def path(self, key: str) -> str:
        return f"{self._path}.{key}"

    def get(self, key: str) -> Any:
        return self.data.get(key)

    def _required(self, key: str) -> Any:
        value = self.data.get(key)
        if value is None:
            raise self._fail(self.path(key), "missing")
        return value

    def integer(self, key: str) -> int:
        value = self._required(key)
        if type(value) is not int or value < 0:
            raise self._fail(self.path(key), f"not a non-negative integer: {value!r}")
        return value

    def text(self, key: str) -> str:
        value = self._required(key)
        if not isinstance(value, str) or not value:
            raise self._fail(self.path(key), f"not a non-empty string: {value!r}")
        return value

    def opt_text(self, key: str) -> str | None:
        return None if self.data.get(key) is None else self.text(key)

    def digits(self, key: str) -> str:
        value = self.text(key)
        if not _DIGITS_RE.fullmatch(value):
            raise self._fail(self.path(key), f"not a string of digits: {value!r}")
        return value

    def boolean(self, key: str) -> bool:
        value = self._required(key)
        if not isinstance(value, bool):
            raise self._fail(self.path(key), f"not a boolean: {value!r}")
        return value

    def flag(self, key: str) -> bool:
        """An optional boolean, false when absent."""
        return False if self.data.get(key) is None else self.boolean(key)

    def choice(self, key: str, values: tuple[str, ...]) -> str:
        value = self.text(key)
        if value not in values:
            raise self._fail(self.path(key), f"not one of {', '.join(values)}: {value!r}")
        return value


class _Document(_Json):
    """Our FFD document: a fault in it is ours, found before the register sees it."""

    def _fail(self, where: str, why: str) -> DeviceError:
        return _refuse(where, why)

    def money(self, tag: str) -> int:
        value = self.integer(tag)
        if value >= 10**_EXACT_DIGITS:
            raise self._fail(self.path(tag), f"more kopecks than JSON carries exactly: {value}")
        return value

    def code(self, tag: str, table: dict[int, str]) -> str:
        value = self.integer(tag)
        if value not in table:
            raise self._fail(self.path(tag), f"no ATOL value for code {value}")
        return table[value]

    def child(self, tag: str) -> _Document:
        return _Document(self._required(tag), self.path(tag))

    def children(self, tag: str) -> list[_Document]:
        value = self._required(tag)
        if not isinstance(value, list):
            raise self._fail(self.path(tag), "not a list")
        return [_Document(item, f"{self.path(tag)}[{i}]") for i, item in enumerate(value)]


class _Answer(_Json):
    """The driver's answer: a fault in it leaves the task's outcome unknown."""

    def _fail(self, where: str, why: str) -> DeviceError:
        return DeviceAnswerError(f"ATOL answer: {where} is {why}")

    def money(self, key: str) -> int:
        return kopecks_from_json(self._required(key), self.path(key))

    def child(self, key: str) -> _Answer:
        return _Answer(self._required(key), self.path(key))

    def opt_child(self, key: str) -> _Answer | None:
        return None if self.data.get(key) is None else self.child(key)

    def moment(self, key: str) -> datetime:
        """An ISO 8601 date-time with its UTC offset, as the driver writes them."""
        value = self.text(key)
        try:
            moment = datetime.fromisoformat(value)
        except ValueError:
            raise self._fail(self.path(key), f"not an ISO date-time: {value!r}") from None
        if moment.tzinfo is None:
            raise self._fail(self.path(key), f"a date-time without its UTC offset: {value!r}")
        return moment

    def opt_moment(self, key: str) -> datetime | None:
        return None if self.data.get(key) is None else self.moment(key)


def _refuse(where: str, why: str) -> DeviceError:
    return DeviceError(
        f"document refused before the KKT: {where}: {why}",
        reason="invalid_document",
        retry_after=None,
    )
