"""The validated receipt: its vocabulary (types, VAT rates, payment methods, subjects), its
business rules, its stored JSON and its fingerprint. No I/O, no request models: the API turns
request bytes into a :class:`Receipt` (``kkt_adapter.api.schemas``).

Money is integer kopecks, quantities integer thousandths; nothing is computed from a float.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import date
from enum import StrEnum
from typing import Any

import orjson

from kkt_adapter.domain.money import MAX_MONEY, Kopecks, format_money, item_total
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
    line: int | None = None
    """On a refund of a named sale: the 1-based position of the sale's line it returns."""

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
    refund_of: str | None = None
    """The receipt id of the sale (or expense) this refund returns, when the POS names it."""

    @property
    def total(self) -> Kopecks:
        """Sum of item totals (FFD tag 1020)."""
        return Kopecks(sum(item.total for item in self.items))

    @property
    def paid(self) -> Kopecks:
        """Sum of the payments as given: cash as received, before change."""
        return Kopecks(sum(p.amount for p in self.payments))

    @property
    def change(self) -> Kopecks:
        """Cash handed back to the buyer: what was paid over the total (0 when exact)."""
        return Kopecks(max(0, self.paid - self.total))


REFUND_OF_TYPES: dict[ReceiptType, ReceiptType] = {
    ReceiptType.REFUND: ReceiptType.SALE,
    ReceiptType.EXPENSE_REFUND: ReceiptType.EXPENSE,
}
"""A receipt type that may name the receipt it returns -> the type that receipt must have."""

CHANGE_TYPES = frozenset({ReceiptType.SALE, ReceiptType.EXPENSE_REFUND})
"""Receipt types where the buyer hands money to the shop, so cash may be given with change.
A refund or an expense is money the shop pays out: it pays the exact sum, never "over"."""


def payment_change(payload: dict[str, Any], total: int) -> Kopecks:
    """The change of a stored receipt (``receipt_to_json``) whose items add up to ``total``."""
    paid = sum(int(p["amount"]) for p in payload.get("payments", ()))
    return Kopecks(max(0, paid - total))


def invalid(code: str, field: str, reason: str, message: str = "", **extra: Any) -> ValidationError:
    """Our ``ValidationError`` with the standard ``details`` shape."""
    details: dict[str, Any] = {"field": field, "reason": reason, **extra}
    return ValidationError(message or f"{field}: {reason}", code=code, details=details)


def correction(kind: str, day: date, number: str | None, today: date) -> Correction:
    """A correction basis, checked: an order needs its number; no correction of the future."""
    if kind == "order" and number is None:
        raise invalid("missing_field", "correction.number", "required when kind is 'order'")
    if day > today:
        raise invalid("invalid_value", "correction.date", "must not be in the future")
    return Correction(kind, day, number)


def check_rules(receipt: Receipt) -> None:
    """The receipt's business rules: the VAT rate in force, item totals in range, and the
    payments covering the total (:func:`check_payments`). Raises ``ValidationError`` naming
    the field."""
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
    check_refund_of(receipt)
    check_payments(receipt)


def check_refund_of(receipt: Receipt) -> None:
    """What can be told of a refund's link to its sale without the sale: ``refund_of`` only on
    a refund or an expense refund, not on a correction (``refund_of_not_allowed``: a
    correction restates a past settlement, it returns nothing); a ``line`` only on the items
    of a receipt that names its sale (``refund_of_required``); and with ``refund_of`` every
    item names its sale's line, by ``line`` or by ``sku`` (``refund_line_unknown``)."""
    if receipt.refund_of is None:
        for index, item in enumerate(receipt.items):
            if item.line is not None:
                raise invalid(
                    "refund_of_required",
                    f"items[{index}].line",
                    "a line of the original names nothing without refund_of",
                )
        return
    if receipt.type not in REFUND_OF_TYPES or receipt.correction is not None:
        kind = "a correction" if receipt.correction else f"a {receipt.type} receipt"
        raise invalid(
            "refund_of_not_allowed",
            "refund_of",
            f"{kind} returns no earlier receipt; refund_of is for refund and expense_refund",
        )
    for index, item in enumerate(receipt.items):
        if item.line is None and item.sku is None:
            raise invalid(
                "refund_line_unknown",
                f"items[{index}]",
                "an item of a refund of a named sale gives its line or its sku",
            )


def check_payments(receipt: Receipt) -> None:
    """The payments add up to the total, or exceed it by change given from cash.

    Only cash may overpay: the non-cash parts (card, prepaid, credit, other) together must not
    exceed the total (``non_cash_overpayment``), and the change must be less than the cash
    received (``change_exceeds_cash``: a buyer cannot get back more cash than they gave, and
    cash that is all handed back paid nothing). Change is given only where the buyer pays
    (:data:`CHANGE_TYPES`) and not on a correction, which restates a past settlement
    (``change_not_allowed``). Underpaying is ``payment_mismatch``. Amounts in ``details`` are
    rubles as decimal strings (``format_money``), like ``items_total`` and ``payments_total``:
    the unit the request wrote them in.
    """
    total, paid = receipt.total, receipt.paid
    amounts = {"items_total": format_money(total), "payments_total": format_money(paid)}
    if paid < total:
        raise invalid(
            "payment_mismatch",
            "payments",
            f"payments sum {format_money(paid)} != items total {format_money(total)}",
            **amounts,
        )
    if paid == total:
        return
    if not _may_give_change(receipt):
        kind = "a correction" if receipt.correction else f"a {receipt.type} receipt"
        raise invalid(
            "change_not_allowed",
            "payments",
            f"payments sum {format_money(paid)} exceeds items total {format_money(total)}; "
            f"{kind} is paid exactly, without change",
            **amounts,
        )
    cash = sum(p.amount for p in receipt.payments if p.method is PaymentMethod.CASH)
    non_cash = paid - cash
    if non_cash > total:
        raise invalid(
            "non_cash_overpayment",
            "payments",
            f"non-cash payments {format_money(non_cash)} exceed the items total "
            f"{format_money(total)}; only cash may be paid over the total",
            **amounts,
            non_cash_total=format_money(non_cash),
        )
    if receipt.change >= cash:
        raise invalid(
            "change_exceeds_cash",
            "payments",
            f"change {format_money(receipt.change)} is not less than the cash received "
            f"{format_money(cash)}",
            **amounts,
            cash_total=format_money(cash),
            change=format_money(receipt.change),
        )


def _may_give_change(receipt: Receipt) -> bool:
    return receipt.type in CHANGE_TYPES and receipt.correction is None


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
                **({} if i.line is None else {"line": i.line}),
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
        # Only when given: a receipt stored before refunds named their sale keeps its
        # fingerprint, so its replays still match.
        **({} if receipt.refund_of is None else {"refund_of": receipt.refund_of}),
    }


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
