"""Change: cash paid over the total, the rules that bound it, and the document it leaves."""

from __future__ import annotations

from datetime import date
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kkt_adapter.device.atol.mapping import receipt_task
from kkt_adapter.domain.ffd import PAYMENT_TAGS, TAG_CASH, TAG_ELECTRONIC, TAG_TOTAL, to_ffd
from kkt_adapter.domain.money import MAX_MONEY, Kopecks
from kkt_adapter.domain.receipt import (
    Correction,
    Item,
    ItemPaymentMethod,
    Payment,
    PaymentMethod,
    Receipt,
    ReceiptType,
    Subject,
    Vat,
    check_payments,
    payment_change,
    receipt_to_json,
)
from kkt_adapter.errors import ValidationError

RID = "01JQ7XKV8M2N3P4Q"
CASH, CARD = PaymentMethod.CASH, PaymentMethod.CARD


def sale(total: int, *payments: tuple[PaymentMethod, int], **changes: Any) -> Receipt:
    fields: dict[str, Any] = {
        "pos_id": "POS-001",
        "type": ReceiptType.SALE,
        "items": (
            Item(
                "Frame",
                Kopecks(total),
                1000,
                Vat.VAT22,
                Subject.GOODS,
                ItemPaymentMethod.FULL_PAYMENT,
                None,
                None,
            ),
        ),
        "payments": tuple(Payment(method, Kopecks(amount)) for method, amount in payments),
        "customer_email": None,
        "customer_phone": None,
        "cashier_name": None,
        "cashier_inn": None,
        "correction": None,
        "dated": date(2026, 3, 2),
    }
    fields.update(changes)
    return Receipt(**fields)


def refusal(receipt: Receipt) -> ValidationError:
    with pytest.raises(ValidationError) as info:
        check_payments(receipt)
    return info.value


def test_cash_over_the_total_is_change() -> None:
    r = sale(10000, (CASH, 15000))
    check_payments(r)
    assert r.change == 5000
    document = to_ffd(r, RID)
    assert document[TAG_CASH] == 10000 and document[TAG_TOTAL] == 10000
    assert receipt_to_json(r)["payments"] == [{"method": "cash", "amount": 15000}]  # as received
    assert payment_change(receipt_to_json(r), r.total) == 5000


def test_cash_and_card_with_change_from_the_cash() -> None:
    r = sale(10000, (CARD, 6000), (CASH, 5000))
    check_payments(r)
    assert r.change == 1000
    document = to_ffd(r, RID)
    assert (document[TAG_ELECTRONIC], document[TAG_CASH]) == (6000, 4000)


def test_exact_payment_has_no_change() -> None:
    r = sale(10000, (CASH, 10000))
    check_payments(r)
    assert r.change == 0 and to_ffd(r, RID)[TAG_CASH] == 10000


@pytest.mark.parametrize(
    ("payments", "code"),
    [
        (((CASH, 9999),), "payment_mismatch"),  # short
        (((CARD, 10001),), "non_cash_overpayment"),  # only cash overpays
        (((CARD, 10001), (CASH, 5000)), "non_cash_overpayment"),
        (((CARD, 10000), (CASH, 100)), "change_exceeds_cash"),  # all the cash handed back
        (((CASH, 10000), (CASH, 10000)), None),  # two cash parts: change 100.00 < 200.00
    ],
)
def test_payment_rules(payments: tuple[tuple[PaymentMethod, int], ...], code: str | None) -> None:
    r = sale(10000, *payments)
    if code is None:
        check_payments(r)
        return
    error = refusal(r)
    assert (error.code, error.details["field"]) == (code, "payments")
    assert error.details["items_total"] == "100.00"  # rubles, as the request wrote money


def test_change_exceeds_cash_names_the_amounts() -> None:
    error = refusal(sale(10000, (CARD, 10000), (CASH, 500)))
    assert (error.details["cash_total"], error.details["change"]) == ("5.00", "5.00")


def test_non_cash_overpayment_names_the_non_cash_total_in_rubles() -> None:
    error = refusal(sale(10000, (CARD, 10001), (CASH, 500)))
    assert error.code == "non_cash_overpayment"
    assert (error.details["non_cash_total"], error.details["payments_total"]) == (
        "100.01",
        "105.01",
    )


@pytest.mark.parametrize("kind", [ReceiptType.REFUND, ReceiptType.EXPENSE])
def test_no_change_where_the_shop_pays_out(kind: ReceiptType) -> None:
    assert refusal(sale(10000, (CASH, 15000), type=kind)).code == "change_not_allowed"
    check_payments(sale(10000, (CASH, 10000), type=kind))


def test_expense_refund_may_give_change() -> None:
    check_payments(sale(10000, (CASH, 15000), type=ReceiptType.EXPENSE_REFUND))


def test_no_change_on_a_correction() -> None:
    fix = Correction("self", date(2026, 3, 1), None)
    assert refusal(sale(10000, (CASH, 15000), correction=fix)).code == "change_not_allowed"


@given(
    total=st.integers(1, MAX_MONEY),
    card_share=st.integers(0, 100),
    extra=st.integers(0, MAX_MONEY),
)
def test_any_cash_received_over_the_cash_part_is_change(
    total: int, card_share: int, extra: int
) -> None:
    """For any cash received at least the cash part: change = received - cash part, and the
    document's payment tags add up to its total (1020)."""
    card = total * card_share // 100
    cash_part = total - card
    if cash_part == 0:
        extra = 0  # no cash, no change
    received = cash_part + extra
    payments = [(method, amount) for method, amount in ((CARD, card), (CASH, received)) if amount]
    r = sale(total, *payments)
    check_payments(r)
    assert r.change == received - cash_part
    document = to_ffd(r, RID)
    assert sum(document[tag] for tag in PAYMENT_TAGS.values()) == document[TAG_TOTAL] == total
    assert document[TAG_CASH] == cash_part


def test_atol_task_gets_the_cash_part() -> None:
    """The ATOL task pays the total exactly (the driver is not asked to compute change)."""
    task = receipt_task(RID, to_ffd(sale(10000, (CASH, 15000)), RID), taxation_type="osn")
    assert task["payments"] == [{"type": "cash", "sum": 100.0}]
    assert task["total"] == 100.0
