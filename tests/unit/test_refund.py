"""Refunds of a named sale: the rules binding a refund to its sale, and what is left of it."""

from __future__ import annotations

from datetime import date
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kkt_adapter.domain.lifecycle import ReceiptStatus
from kkt_adapter.domain.money import Kopecks
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
    check_rules,
    receipt_fingerprint,
    receipt_to_json,
)
from kkt_adapter.domain.refund import (
    EarlierRefund,
    Original,
    SoldLine,
    cash_part,
    check_refund,
    refund_state,
    stored_cash,
    stored_lines,
)
from kkt_adapter.errors import (
    KktAdapterError,
    RefundCashExceedsPaid,
    RefundExceedsSale,
    RefundHeldUntilSynced,
    RefundOfLinesUnknown,
    RefundOfNotFiscalized,
    ValidationError,
)

CASH, CARD = PaymentMethod.CASH, PaymentMethod.CARD
S = ReceiptStatus


def item(price: int, quantity_milli: int = 1000, **changes: Any) -> Item:
    fields: dict[str, Any] = {
        "name": "Frame",
        "price": Kopecks(price),
        "quantity_milli": quantity_milli,
        "vat": Vat.VAT22,
        "subject": Subject.GOODS,
        "payment_method": ItemPaymentMethod.FULL_PAYMENT,
        "sku": None,
        "mark_code": None,
    }
    fields.update(changes)
    return Item(**fields)


def refund(
    *items: Item, payments: tuple[tuple[PaymentMethod, int], ...] = (), **kw: Any
) -> Receipt:
    total = sum(i.total for i in items)
    fields: dict[str, Any] = {
        "pos_id": "POS-001",
        "type": ReceiptType.REFUND,
        "items": items,
        "payments": tuple(Payment(m, Kopecks(a)) for m, a in payments or ((CARD, total),)),
        "customer_email": None,
        "customer_phone": None,
        "cashier_name": None,
        "cashier_inn": None,
        "correction": None,
        "dated": date(2026, 3, 2),
        "refund_of": "SALE000000000001",
    }
    fields.update(kw)
    return Receipt(**fields)


LINES = (
    SoldLine(1, "A", Kopecks(10000), Vat.VAT22, 2000),
    SoldLine(2, "B", Kopecks(500), Vat.VAT10, 3000),
    SoldLine(3, "A", Kopecks(10000), Vat.VAT22, 1000),
)


def sale(status: ReceiptStatus = S.PENDING, cash: int = 0, **kw: Any) -> Original:
    fields: dict[str, Any] = {
        "receipt_id": "SALE000000000001",
        "type": ReceiptType.SALE,
        "status": status,
        "lines": LINES,
        "cash": Kopecks(cash),
    }
    fields.update(kw)
    return Original(**fields)


def earlier(
    lines: dict[int, int], cash: int = 0, status: ReceiptStatus = S.PENDING
) -> EarlierRefund:
    return EarlierRefund("REF", Kopecks(0), status, lines, Kopecks(cash))


def code_of(call: Any) -> str:
    with pytest.raises(KktAdapterError) as caught:
        call()
    return caught.value.code


# -- rules without the sale (check_rules) ----------------------------------------------------


def test_refund_of_only_on_refund_types_and_not_on_a_correction() -> None:
    for kind in (ReceiptType.SALE, ReceiptType.EXPENSE):
        assert code_of(lambda kind=kind: check_rules(refund(item(100, sku="A"), type=kind))) == (
            "refund_of_not_allowed"
        )
    corr = Correction("self", date(2026, 3, 1), None)
    assert code_of(lambda: check_rules(refund(item(100, sku="A"), correction=corr))) == (
        "refund_of_not_allowed"
    )
    check_rules(refund(item(100, sku="A")))
    check_rules(refund(item(100, line=1), type=ReceiptType.EXPENSE_REFUND))


def test_a_line_needs_refund_of_and_an_item_of_a_named_refund_needs_a_line_or_sku() -> None:
    with pytest.raises(ValidationError) as caught:
        check_rules(refund(item(100, line=1), refund_of=None))
    assert caught.value.code == "refund_of_required"
    assert caught.value.details["field"] == "items[0].line"
    with pytest.raises(ValidationError) as caught:
        check_rules(refund(item(100, line=1), item(100)))
    assert caught.value.code == "refund_line_unknown"
    assert caught.value.details["field"] == "items[1]"


def test_refund_of_and_line_stay_out_of_the_stored_json_when_absent() -> None:
    plain = refund(item(100), refund_of=None)
    data = receipt_to_json(plain)
    assert "refund_of" not in data and "line" not in data["items"][0]
    named = refund(item(100, line=2))
    data = receipt_to_json(named)
    assert data["refund_of"] == "SALE000000000001" and data["items"][0]["line"] == 2
    assert receipt_fingerprint(plain) != receipt_fingerprint(named)


def test_a_refund_is_paid_exactly_also_when_it_names_its_sale() -> None:
    over = refund(item(100, line=1), payments=((CASH, 200),))
    assert code_of(lambda: check_rules(over)) == "change_not_allowed"


# -- the sale itself --------------------------------------------------------------------------


def test_the_sale_must_have_the_type_the_refund_returns() -> None:
    with pytest.raises(ValidationError) as caught:
        check_refund(refund(item(10000, line=1)), sale(type=ReceiptType.EXPENSE), [],
                     require_synced=False)  # fmt: skip
    assert caught.value.code == "refund_of_type_mismatch"
    assert caught.value.details["field"] == "refund_of"
    expense_refund = refund(item(10000, line=1), type=ReceiptType.EXPENSE_REFUND)
    assert code_of(lambda: check_refund(expense_refund, sale(), [], require_synced=False)) == (
        "refund_of_type_mismatch"
    )
    check_refund(expense_refund, sale(type=ReceiptType.EXPENSE), [], require_synced=False)


@pytest.mark.parametrize("status", [S.ACCEPTED, S.PRINT_FAILED])
def test_the_sale_must_be_fiscalized(status: ReceiptStatus) -> None:
    with pytest.raises(RefundOfNotFiscalized) as caught:
        check_refund(refund(item(10000, line=1)), sale(status), [], require_synced=False)
    assert caught.value.http_status == 409
    assert caught.value.details["original_status"] == status


def test_a_sale_recovered_without_lines_cannot_be_refunded_by_line() -> None:
    with pytest.raises(RefundOfLinesUnknown):
        check_refund(refund(item(10000, sku="A")), sale(lines=None), [], require_synced=False)


@pytest.mark.parametrize("status", [S.PENDING, S.SYNCING, S.FAILED])
def test_held_until_synced_only_when_required(status: ReceiptStatus) -> None:
    wanted = refund(item(10000, line=1))
    check_refund(wanted, sale(status), [], require_synced=False)
    with pytest.raises(RefundHeldUntilSynced) as caught:
        check_refund(wanted, sale(status), [], require_synced=True)
    assert caught.value.retry_after is not None and caught.value.retry_after > 0
    assert caught.value.details["original_status"] == status
    check_refund(wanted, sale(S.SYNCED), [], require_synced=True)


def test_a_permanent_refusal_comes_before_the_hold() -> None:
    too_much = refund(item(10000, 3000, line=1))
    assert code_of(lambda: check_refund(too_much, sale(), [], require_synced=True)) == (
        "refund_exceeds_sale"
    )


# -- lines ------------------------------------------------------------------------------------


def test_lines_by_position_or_sku() -> None:
    taken = check_refund(
        refund(item(10000, 1000, line=1), item(500, 2000, sku="B", vat=Vat.VAT10)),
        sale(),
        [],
        require_synced=False,
    )
    assert taken == {1: 1000, 2: 2000}


def test_a_shared_sku_takes_the_first_line_with_quantity_left() -> None:
    assert check_refund(refund(item(10000, 2000, sku="A")), sale(), [], require_synced=False) == {
        1: 2000
    }
    after = [earlier({1: 2000})]
    assert check_refund(refund(item(10000, 1000, sku="A")), sale(), after,
                        require_synced=False) == {3: 1000}  # fmt: skip
    # Items of one refund count against each other too.
    two = refund(item(10000, 2000, sku="A"), item(10000, 1000, sku="A"))
    assert check_refund(two, sale(), [], require_synced=False) == {1: 2000, 3: 1000}


@pytest.mark.parametrize(
    ("wanted", "field"),
    [
        (item(10000, line=0), "items[0].line"),
        (item(10000, line=4), "items[0].line"),
        (item(10000, sku="Z"), "items[0].sku"),
    ],
)
def test_unknown_lines_are_refused(wanted: Item, field: str) -> None:
    with pytest.raises(ValidationError) as caught:
        check_refund(refund(wanted), sale(), [], require_synced=False)
    assert caught.value.code == "refund_line_unknown"
    assert caught.value.details["field"] == field


@pytest.mark.parametrize(
    ("wanted", "field"),
    [
        (item(9000, line=1), "items[0].price"),
        (item(10000, line=1, vat=Vat.VAT10), "items[0].vat"),
        (item(10000, line=1, sku="B"), "items[0].sku"),
        (item(600, sku="B", vat=Vat.VAT10), "items[0].price"),
    ],
)
def test_lines_that_differ_from_the_sale_are_refused(wanted: Item, field: str) -> None:
    with pytest.raises(ValidationError) as caught:
        check_refund(refund(wanted), sale(), [], require_synced=False)
    assert caught.value.code == "refund_line_mismatch"
    assert caught.value.details["field"] == field


def test_over_refund_names_the_line_and_the_quantities() -> None:
    with pytest.raises(RefundExceedsSale) as caught:
        check_refund(refund(item(500, 1500, line=2, vat=Vat.VAT10)), sale(),
                     [earlier({2: 2000})], require_synced=False)  # fmt: skip
    assert caught.value.details == {
        "line": 2, "sold": "3.000", "refunded": "2.000", "requested": "1.500"
    }  # fmt: skip


def test_failed_prints_do_not_count_as_refunded_but_refunds_being_printed_do() -> None:
    wanted = refund(item(10000, 2000, line=1))
    check_refund(wanted, sale(), [earlier({1: 2000}, status=S.PRINT_FAILED)], require_synced=False)
    with pytest.raises(RefundExceedsSale):
        check_refund(wanted, sale(), [earlier({1: 1}, status=S.ACCEPTED)], require_synced=False)


quantities = st.integers(min_value=1, max_value=5000)


@given(sold=quantities, before=st.lists(quantities, max_size=4), asked=quantities)
def test_never_more_than_sold_whatever_came_before(
    sold: int, before: list[int], asked: int
) -> None:
    lines = (SoldLine(1, "A", Kopecks(100), Vat.VAT22, sold),)
    taken: list[EarlierRefund] = []
    for quantity in [*before, asked]:
        try:
            got = check_refund(refund(item(100, quantity, sku="A")), sale(lines=lines), taken,
                               require_synced=False)  # fmt: skip
        except RefundExceedsSale:
            assert sum(sum(e.lines.values()) for e in taken) + quantity > sold
        else:
            taken.append(earlier(got))
    assert sum(sum(e.lines.values()) for e in taken) <= sold
    state = refund_state(sale(lines=lines), taken, require_synced=False)
    assert state.lines[0].refunded_milli == sum(sum(e.lines.values()) for e in taken)


# -- cash -------------------------------------------------------------------------------------


def test_cash_part_is_cash_received_minus_change() -> None:
    assert cash_part((Payment(CASH, Kopecks(500)), Payment(CARD, Kopecks(300))), 700) == 400
    assert cash_part((Payment(CARD, Kopecks(700)),), 700) == 0
    payload = {"payments": [{"method": "cash", "amount": 1000}]}
    assert stored_cash(payload, 990) == 990
    assert stored_cash({}, 100) == 0


def test_cash_beyond_what_the_sale_kept_in_cash_is_refused() -> None:
    wanted = refund(item(10000, line=1), payments=((CASH, 6000), (CARD, 4000)))
    check_refund(wanted, sale(cash=6000), [], require_synced=False)
    with pytest.raises(RefundCashExceedsPaid) as caught:
        check_refund(wanted, sale(cash=6000), [earlier({}, cash=1)], require_synced=False)
    assert caught.value.details == {
        "cash_paid": "60.00", "cash_refunded": "0.01", "requested": "60.00"
    }  # fmt: skip


@given(
    kept=st.integers(min_value=0, max_value=10**6),
    before=st.lists(st.integers(min_value=0, max_value=10**5), max_size=4),
    asked=st.integers(min_value=0, max_value=10**6),
)
def test_cash_returned_never_exceeds_cash_kept(kept: int, before: list[int], asked: int) -> None:
    lines = (SoldLine(1, "A", Kopecks(1), Vat.VAT22, 10**12),)
    taken: list[EarlierRefund] = []
    for cash in [*before, asked]:
        total = max(cash, 1)
        payments = ((CASH, cash), (CARD, total - cash)) if cash < total else ((CASH, cash),)
        wanted = refund(item(1, total * 1000, line=1), payments=payments)
        try:
            check_refund(wanted, sale(cash=kept, lines=lines), taken, require_synced=False)
        except RefundCashExceedsPaid:
            assert sum(e.cash for e in taken) + cash > kept
        else:
            taken.append(earlier({1: total * 1000}, cash=cash))
    assert sum(e.cash for e in taken) <= kept
    state = refund_state(sale(cash=kept, lines=lines), taken, require_synced=False)
    assert state.cash_refundable == kept - sum(e.cash for e in taken)


# -- the state GET shows ----------------------------------------------------------------------


def test_state_of_a_sale() -> None:
    state = refund_state(sale(cash=500), [earlier({1: 1000}, cash=200)], require_synced=False)
    assert state.allowed and state.reason is None
    assert [(x.line, x.sku, x.quantity_milli, x.refunded_milli) for x in state.lines] == [
        (1, "A", 2000, 1000), (2, "B", 3000, 0), (3, "A", 1000, 0)
    ]  # fmt: skip
    assert state.cash_refundable == 300


def test_state_says_why_not() -> None:
    everything = [earlier({1: 2000, 2: 3000, 3: 1000})]

    def reason(original: Original, before: list[EarlierRefund], synced: bool) -> str | None:
        state = refund_state(original, before, require_synced=synced)
        assert state.allowed is (state.reason is None)
        return state.reason

    assert reason(sale(S.ACCEPTED), [], True) == "refund_of_not_fiscalized"
    assert reason(sale(), everything, True) == "fully_refunded"
    assert reason(sale(), [], True) == "refund_held_until_synced"
    assert reason(sale(), [], False) is None
    assert reason(sale(S.SYNCED), [], True) is None
    assert reason(sale(lines=None), [], False) == "refund_of_lines_unknown"


def test_stored_lines() -> None:
    payload = {"items": [{"sku": None, "price": 100, "vat": "vat10", "quantity_milli": 1500}]}
    assert stored_lines(payload) == (SoldLine(1, None, Kopecks(100), Vat.VAT10, 1500),)
    assert stored_lines({}) is None
