"""The receipt request: API-edge pydantic models, the validated domain receipt, and the one
entry point :func:`parse_receipt` that turns request bytes into a domain :class:`Receipt`.

Money and quantities: the JSON may carry a decimal *string* ("7990.00", "1.5") or a JSON
*integer* (whole rubles / whole units). JSON numbers with a fraction (``7990.5``) are refused
with ``invalid_money`` / ``invalid_quantity`` and a hint to send a string, because the JSON
parser would already have turned them into a float. Nothing is ever computed from a float.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import date
from enum import StrEnum
from typing import Annotated, Any, Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field, PlainValidator
from pydantic import ValidationError as PydanticValidationError
from pydantic_core import PydanticCustomError

from kkt_adapter.domain.money import (
    MAX_MONEY,
    Kopecks,
    format_money,
    item_total,
    parse_money,
    parse_quantity,
)
from kkt_adapter.errors import ValidationError

VAT_22_SINCE = date(2026, 1, 1)
"""From this day the general VAT rate is 22%; 20% and 20/120 are refused."""


class ReceiptType(StrEnum):
    """Settlement sign (FFD tag 1054)."""

    SALE = "sale"
    REFUND = "refund"
    EXPENSE = "expense"
    EXPENSE_REFUND = "expense_refund"


class Vat(StrEnum):
    """VAT rate of an item (FFD tag 1199). ``VAT20``/``VAT20_120`` only before 2026-01-01."""

    VAT22 = "vat22"
    VAT10 = "vat10"
    VAT5 = "vat5"
    VAT7 = "vat7"
    VAT0 = "vat0"
    NONE = "none"
    VAT22_122 = "vat22_122"
    VAT10_110 = "vat10_110"
    VAT5_105 = "vat5_105"
    VAT7_107 = "vat7_107"
    VAT20 = "vat20"
    VAT20_120 = "vat20_120"


RETIRED_VAT: dict[Vat, Vat] = {Vat.VAT20: Vat.VAT22, Vat.VAT20_120: Vat.VAT22_122}
"""Retired rate -> the rate that replaced it on :data:`VAT_22_SINCE`."""


class PaymentMethod(StrEnum):
    """How the buyer paid (FFD tags 1031/1081/1215/1216/1217)."""

    CASH = "cash"
    CARD = "card"
    PREPAID = "prepaid"
    CREDIT = "credit"
    OTHER = "other"


class Subject(StrEnum):
    """What is sold (a subset of FFD tag 1212)."""

    GOODS = "goods"
    EXCISE = "excise"
    WORK = "work"
    SERVICE = "service"
    INTELLECTUAL_PROPERTY = "intellectual_property"
    PAYMENT = "payment"
    AGENT_COMMISSION = "agent_commission"
    OTHER = "other"
    PROPERTY_RIGHT = "property_right"
    PLEDGE = "pledge"
    EXCISE_MARKED_NO_CODE = "excise_marked_no_code"
    EXCISE_MARKED = "excise_marked"
    GOODS_MARKED_NO_CODE = "goods_marked_no_code"
    GOODS_MARKED = "goods_marked"


class ItemPaymentMethod(StrEnum):
    """Settlement method of an item (FFD tag 1214, values 1..7 in this order)."""

    FULL_PREPAYMENT = "full_prepayment"
    PARTIAL_PREPAYMENT = "partial_prepayment"
    ADVANCE = "advance"
    FULL_PAYMENT = "full_payment"
    PARTIAL_PAYMENT = "partial_payment"
    CREDIT = "credit"
    CREDIT_PAYMENT = "credit_payment"


def _edge(parse: Any, code: str) -> PlainValidator:
    """A validator that parses the raw JSON value to an int, reporting ``code`` on failure."""

    def validate(value: object) -> int:
        try:
            return int(parse(value, ""))
        except ValidationError as exc:
            reason = exc.details["reason"]
            raise PydanticCustomError(code, "{reason}", {"reason": reason}) from None

    return PlainValidator(validate, json_schema_input_type=str | int)


MoneyIn = Annotated[int, _edge(parse_money, "invalid_money")]
QuantityIn = Annotated[int, _edge(parse_quantity, "invalid_quantity")]
_EDGE = ConfigDict(extra="forbid", strict=True)


class ItemIn(BaseModel):
    """One item line of the request; ``price`` in rubles, ``quantity`` in units."""

    model_config = _EDGE
    name: str = Field(min_length=1, max_length=128, pattern=r"\S")
    price: MoneyIn
    quantity: QuantityIn
    vat: Vat
    subject: Subject = Subject.GOODS
    payment_method: ItemPaymentMethod = ItemPaymentMethod.FULL_PAYMENT
    sku: str | None = Field(default=None, min_length=1, max_length=64)
    mark_code: str | None = Field(default=None, min_length=1, max_length=256)


class PaymentIn(BaseModel):
    """One payment of the request."""

    model_config = _EDGE
    method: PaymentMethod
    amount: MoneyIn


class CustomerIn(BaseModel):
    """Where to send the electronic receipt (FFD tag 1008); both fields optional."""

    model_config = _EDGE
    email: str | None = Field(default=None, max_length=64, pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
    phone: str | None = Field(default=None, pattern=r"^\+?[0-9]{10,15}$")


class CashierIn(BaseModel):
    """The cashier (FFD tags 1021, 1203)."""

    model_config = _EDGE
    name: str = Field(min_length=1, max_length=64, pattern=r"\S")
    inn: str | None = Field(default=None, pattern=r"^(?:[0-9]{10}|[0-9]{12})$")


class CorrectionIn(BaseModel):
    """Correction basis (FFD tags 1173, 1174); ``number`` is required when kind is "order"."""

    model_config = _EDGE
    kind: Literal["self", "order"]
    date: date
    number: str | None = Field(default=None, min_length=1, max_length=32)


_EXAMPLE: dict[str, Any] = {
    "pos_id": "POS-001",
    "type": "sale",
    "items": [
        {
            "name": "Frame Ray-Ban RB5154",
            "price": "7990.00",
            "quantity": "1",
            "vat": "vat22",
            "subject": "goods",
            "payment_method": "full_payment",
            "sku": "RB5154-2000",
            "mark_code": None,
        }
    ],
    "payments": [{"method": "card", "amount": "7990.00"}],
    "customer": {"email": "buyer@example.com"},
    "cashier": {"name": "Ivanova A.", "inn": None},
}


class ReceiptIn(BaseModel):
    """The body of ``POST /v1/kkt/receipt``."""

    model_config = ConfigDict(extra="forbid", strict=True, json_schema_extra={"example": _EXAMPLE})
    pos_id: str = Field(min_length=1, max_length=64)
    type: ReceiptType
    items: list[ItemIn] = Field(min_length=1, max_length=100)
    payments: list[PaymentIn] = Field(min_length=1, max_length=10)
    customer: CustomerIn | None = None
    cashier: CashierIn | None = None
    correction: CorrectionIn | None = None


@dataclass(frozen=True, slots=True)
class Item:
    """A validated item line."""

    name: str
    price: Kopecks
    quantity_milli: int
    vat: Vat
    subject: Subject
    payment_method: ItemPaymentMethod
    sku: str | None
    mark_code: str | None

    @property
    def total(self) -> Kopecks:
        """Price x quantity rounded half-up to kopecks (FFD tag 1043)."""
        return item_total(self.price, self.quantity_milli)


@dataclass(frozen=True, slots=True)
class Payment:
    """A validated payment."""

    method: PaymentMethod
    amount: Kopecks


@dataclass(frozen=True, slots=True)
class Correction:
    """A validated correction basis; ``kind`` is "self" or "order"."""

    kind: str
    date: date
    number: str | None


@dataclass(frozen=True, slots=True)
class Receipt:
    """A validated receipt; ``dated`` is the day it was accepted (drives the VAT rule)."""

    pos_id: str
    type: ReceiptType
    items: tuple[Item, ...]
    payments: tuple[Payment, ...]
    customer_email: str | None
    customer_phone: str | None
    cashier_name: str | None
    cashier_inn: str | None
    correction: Correction | None
    dated: date

    @property
    def total(self) -> Kopecks:
        """Sum of item totals (FFD tag 1020)."""
        return Kopecks(sum(item.total for item in self.items))


def invalid(code: str, field: str, reason: str, message: str = "", **extra: Any) -> ValidationError:
    """Our ``ValidationError`` with the standard ``details`` shape."""
    details: dict[str, Any] = {"field": field, "reason": reason, **extra}
    return ValidationError(message or f"{field}: {reason}", code=code, details=details)


# pydantic error type -> our code; anything unlisted ending in "_type" is invalid_type.
_CODES = {
    "json_invalid": "malformed_json",
    "json_type": "malformed_json",
    "extra_forbidden": "unknown_field",
    "missing": "missing_field",
    "invalid_money": "invalid_money",
    "invalid_quantity": "invalid_quantity",
}
_ENUM_CODES = {"type": "invalid_receipt_type", "vat": "invalid_vat"}
_EMPTY_CODES = {"items": "empty_items", "payments": "empty_payments"}
_MAX_LISTED_ERRORS = 5


def _field_path(loc: tuple[int | str, ...]) -> str:
    path = ""
    for part in loc:
        path += f"[{part}]" if isinstance(part, int) else f".{part}" if path else part
    return path or "body"


def _code(error: Any) -> str:
    kind, loc = error["type"], error["loc"]
    last = loc[-1] if loc else None
    if kind in _CODES:
        return _CODES[kind]
    if not loc and kind.endswith("_type"):
        return "malformed_json"  # the body is JSON but not an object
    if kind == "enum" and last in _ENUM_CODES:
        return _ENUM_CODES[str(last)]
    if kind == "too_short" and len(loc) == 1 and last in _EMPTY_CODES:
        return _EMPTY_CODES[str(last)]
    return "invalid_type" if kind.endswith("_type") else "invalid_value"


def from_pydantic(exc: PydanticValidationError) -> ValidationError:
    """Map pydantic's errors to one ``ValidationError``; the first error sets the code."""
    errors = [
        {"field": _field_path(e["loc"]), "code": _code(e), "reason": e["msg"]}
        for e in exc.errors(include_url=False, include_input=False)
    ]
    first = errors[0]
    message = "malformed JSON body" if first["code"] == "malformed_json" else ""
    return invalid(
        first["code"],
        first["field"],
        first["reason"],
        message,
        errors=errors[:_MAX_LISTED_ERRORS],
    )


def parse_receipt(body: bytes, today: date) -> Receipt:
    """Validate raw request bytes into a :class:`Receipt` dated ``today``.

    Raises only :class:`~kkt_adapter.errors.ValidationError`, whose ``code`` says what is wrong
    and whose ``details["field"]`` names the field (``"items[0].price"``).
    """
    try:
        model = ReceiptIn.model_validate_json(body)
    except PydanticValidationError as exc:
        raise from_pydantic(exc) from None
    receipt = _to_domain(model, today)
    _check_rules(receipt)
    return receipt


def _to_domain(model: ReceiptIn, today: date) -> Receipt:
    customer = model.customer or CustomerIn()
    cashier = model.cashier
    return Receipt(
        pos_id=model.pos_id,
        type=model.type,
        items=tuple(
            Item(
                i.name,
                Kopecks(i.price),
                i.quantity,
                i.vat,
                i.subject,
                i.payment_method,
                i.sku,
                i.mark_code,
            )
            for i in model.items
        ),
        payments=tuple(Payment(p.method, Kopecks(p.amount)) for p in model.payments),
        customer_email=customer.email,
        customer_phone=customer.phone,
        cashier_name=cashier.name if cashier else None,
        cashier_inn=cashier.inn if cashier else None,
        correction=_correction(model.correction, today),
        dated=today,
    )


def _correction(model: CorrectionIn | None, today: date) -> Correction | None:
    if model is None:
        return None
    if model.kind == "order" and model.number is None:
        raise invalid("missing_field", "correction.number", "required when kind is 'order'")
    if model.date > today:
        raise invalid("invalid_value", "correction.date", "must not be in the future")
    return Correction(model.kind, model.date, model.number)


def _check_rules(receipt: Receipt) -> None:
    # A correction fixes a past settlement, so the rate in force on that day applies.
    vat_day = receipt.correction.date if receipt.correction else receipt.dated
    for index, item in enumerate(receipt.items):
        field = f"items[{index}]"
        if item.vat in RETIRED_VAT and vat_day >= VAT_22_SINCE:
            new = RETIRED_VAT[item.vat]
            raise invalid(
                "vat_rate_retired",
                f"{field}.vat",
                f"{item.vat} is not valid since {VAT_22_SINCE}; use {new}",
                message=f"VAT rate {item.vat} was replaced by {new} on {VAT_22_SINCE}",
            )
        if item.total <= 0 or item.total > MAX_MONEY:
            raise invalid("invalid_quantity", f"{field}.quantity", "item total out of range")
    paid = sum(p.amount for p in receipt.payments)
    if paid != receipt.total:
        raise invalid(
            "payment_mismatch",
            "payments",
            f"payments sum {format_money(paid)} != items total {format_money(receipt.total)}",
            items_total=str(receipt.total),
            payments_total=str(paid),
        )


def receipt_to_json(receipt: Receipt) -> dict[str, Any]:
    """The receipt as plain JSON types for storage; money and quantities stay ints."""
    corr = receipt.correction
    return {
        "pos_id": receipt.pos_id,
        "type": receipt.type.value,
        "items": [
            {
                "name": i.name,
                "price": i.price,
                "quantity_milli": i.quantity_milli,
                "vat": i.vat.value,
                "subject": i.subject.value,
                "payment_method": i.payment_method.value,
                "sku": i.sku,
                "mark_code": i.mark_code,
            }
            for i in receipt.items
        ],
        "payments": [{"method": p.method.value, "amount": p.amount} for p in receipt.payments],
        "customer_email": receipt.customer_email,
        "customer_phone": receipt.customer_phone,
        "cashier_name": receipt.cashier_name,
        "cashier_inn": receipt.cashier_inn,
        "correction": None
        if corr is None
        else {"kind": corr.kind, "date": corr.date.isoformat(), "number": corr.number},
        "dated": receipt.dated.isoformat(),
    }


def receipt_from_json(data: dict[str, Any]) -> Receipt:
    """Inverse of :func:`receipt_to_json` (trusted input: our own storage)."""
    corr = data["correction"]
    return Receipt(
        pos_id=data["pos_id"],
        type=ReceiptType(data["type"]),
        items=tuple(
            Item(
                i["name"],
                Kopecks(i["price"]),
                i["quantity_milli"],
                Vat(i["vat"]),
                Subject(i["subject"]),
                ItemPaymentMethod(i["payment_method"]),
                i["sku"],
                i["mark_code"],
            )
            for i in data["items"]
        ),
        payments=tuple(
            Payment(PaymentMethod(p["method"]), Kopecks(p["amount"])) for p in data["payments"]
        ),
        customer_email=data["customer_email"],
        customer_phone=data["customer_phone"],
        cashier_name=data["cashier_name"],
        cashier_inn=data["cashier_inn"],
        correction=None
        if corr is None
        else Correction(corr["kind"], date.fromisoformat(corr["date"]), corr["number"]),
        dated=date.fromisoformat(data["dated"]),
    )


def receipt_fingerprint(receipt: Receipt, payload: dict[str, Any] | None = None) -> str:
    """SHA-256 hex of the canonical receipt, for "same Idempotency-Key, different body".

    Built from the parsed receipt, so whitespace, key order and "7990" vs "7990.00" do not
    matter. ``dated`` is left out: a retry of the same body on the next day is the same request.
    ``payload`` is ``receipt_to_json(receipt)`` when the caller has it already (intake does).
    """
    data = {k: v for k, v in (payload or receipt_to_json(receipt)).items() if k != "dated"}
    return hashlib.sha256(_canonical_json(data)).hexdigest()


def _canonical_json(data: dict[str, Any]) -> bytes:
    """``json.dumps(sort_keys, compact, ensure_ascii=False)`` as UTF-8: the fingerprint's form.

    orjson writes the same bytes for strings, 64-bit integers, null and booleans, the only
    types a payload holds, several times faster; anything it refuses takes the json path.
    """
    try:
        return orjson.dumps(data, option=orjson.OPT_SORT_KEYS)
    except orjson.JSONEncodeError:
        return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
