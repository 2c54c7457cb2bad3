"""The ATOL JSON task mapping: our documents as tasks, the driver's answers as our results."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kkt_adapter.device.atol import mapping as atol
from kkt_adapter.device.atol.mapping import (
    DeviceState,
    DocumentState,
    ExchangeStatus,
    FnInfo,
    FnStatus,
    Operator,
    ShiftState,
    TaskWarnings,
    fiscal_result,
    receipt_task,
    rubles,
    task_uuid,
)
from kkt_adapter.device.base import DeviceStatus, ShiftReport
from kkt_adapter.domain.ffd import SUBJECT_CODES, VAT_CODES, to_ffd
from kkt_adapter.domain.journal import mark, stamped
from kkt_adapter.domain.money import MAX_MONEY, Kopecks, format_money
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
)
from kkt_adapter.domain.shift_totals import CashKind, CashMovement
from kkt_adapter.errors import ConfigError, DeviceAnswerError, DeviceError

RID = "01JQ7XKV8M2N3P4Q"
MSK = timezone(timedelta(hours=3))


def item(**changes: Any) -> Item:
    fields: dict[str, Any] = {
        "name": "Frame",
        "price": Kopecks(799000),
        "quantity_milli": 1000,
        "vat": Vat.VAT22,
        "subject": Subject.GOODS,
        "payment_method": ItemPaymentMethod.FULL_PAYMENT,
        "sku": None,
        "mark_code": None,
    }
    fields.update(changes)
    return Item(**fields)


def receipt(*items: Item, **changes: Any) -> Receipt:
    lines = items or (item(),)
    total = sum(line.total for line in lines)
    fields: dict[str, Any] = {
        "pos_id": "POS-001",
        "type": ReceiptType.SALE,
        "items": lines,
        "payments": (Payment(PaymentMethod.CARD, Kopecks(total)),),
        "customer_email": None,
        "customer_phone": None,
        "cashier_name": None,
        "cashier_inn": None,
        "correction": None,
        "dated": date(2026, 3, 2),
    }
    fields.update(changes)
    return Receipt(**fields)


def task_of(r: Receipt, **options: Any) -> dict[str, Any]:
    options.setdefault("taxation_type", "osn")
    return receipt_task(RID, to_ffd(r, RID), **options)


def first_position(task: dict[str, Any]) -> dict[str, Any]:
    position = task["items"][0]
    assert position["type"] == "position"
    return position


# -- the receipt task ----------------------------------------------------------------------


def test_full_sale_is_one_exact_task() -> None:
    r = receipt(
        item(sku="RB5154-2000"),
        item(
            name="Lens",
            price=Kopecks(1050),
            quantity_milli=2250,
            vat=Vat.VAT10,
            subject=Subject.SERVICE,
            payment_method=ItemPaymentMethod.FULL_PREPAYMENT,
        ),
        payments=(
            Payment(PaymentMethod.CARD, Kopecks(700000)),
            Payment(PaymentMethod.CASH, Kopecks(101363)),
        ),
        customer_email="buyer@example.com",
        customer_phone="+79001234567",
        cashier_name="Ivanova A.",
        cashier_inn="7707083893",
    )
    document = to_ffd(r, RID)
    document["1084"] = mark("key-1", "f" * 64)
    task = receipt_task(RID, document, taxation_type="usnIncome")
    assert json.loads(json.dumps(task)) == task
    assert task == {
        "type": "sell",
        "taxationType": "usnIncome",
        "operator": {"name": "Ivanova A.", "vatin": "7707083893"},
        "clientInfo": {"emailOrPhone": "buyer@example.com"},
        "items": [
            {
                "type": "position",
                "name": "Frame",
                "price": 7990.0,
                "quantity": 1.0,
                "amount": 7990.0,
                "tax": {"type": "vat22"},
                "paymentMethod": "fullPayment",
                "paymentObject": "commodity",
                "measurementUnit": "piece",
                "additionalAttribute": "RB5154-2000",
            },
            {
                "type": "position",
                "name": "Lens",
                "price": 10.5,
                "quantity": 2.25,
                "amount": 23.63,
                "tax": {"type": "vat10"},
                "paymentMethod": "fullPrepayment",
                "paymentObject": "service",
                "measurementUnit": "piece",
            },
            {"type": "additionalAttribute", "value": RID},
            {
                "type": "userAttribute",
                "name": "kkt-adapter",
                "value": document["1084"]["1086"],
            },
        ],
        "payments": [{"type": "cash", "sum": 1013.63}, {"type": "electronically", "sum": 7000.0}],
        "total": 8013.63,
    }


@pytest.mark.parametrize(
    ("receipt_type", "corrected", "task_type"),
    [
        (ReceiptType.SALE, False, "sell"),
        (ReceiptType.REFUND, False, "sellReturn"),
        (ReceiptType.EXPENSE, False, "buy"),
        (ReceiptType.EXPENSE_REFUND, False, "buyReturn"),
        (ReceiptType.SALE, True, "sellCorrection"),
        (ReceiptType.REFUND, True, "sellReturnCorrection"),
        (ReceiptType.EXPENSE, True, "buyCorrection"),
        (ReceiptType.EXPENSE_REFUND, True, "buyReturnCorrection"),
    ],
)
def test_every_receipt_type_has_its_task(
    receipt_type: ReceiptType, corrected: bool, task_type: str
) -> None:
    correction = Correction("self", date(2026, 2, 27), None) if corrected else None
    task = task_of(receipt(type=receipt_type, correction=correction))
    assert task["type"] == task_type
    assert ("correctionType" in task) is corrected


@pytest.mark.parametrize(
    ("correction", "fields"),
    [
        (
            Correction("self", date(2026, 2, 27), None),
            {"correctionType": "self", "correctionBaseDate": "2026.02.27"},
        ),
        (
            Correction("order", date(2025, 12, 31), "ЕД-7-20/1050"),
            {
                "correctionType": "instruction",
                "correctionBaseDate": "2025.12.31",
                "correctionBaseNumber": "ЕД-7-20/1050",
            },
        ),
    ],
)
def test_correction_basis(correction: Correction, fields: dict[str, str]) -> None:
    task = task_of(receipt(correction=correction))
    assert {key: task[key] for key in fields} == fields
    assert ("correctionBaseNumber" in task) == ("correctionBaseNumber" in fields)


@pytest.mark.parametrize(
    ("vat", "tax_type"),
    [
        (Vat.VAT22, "vat22"),
        (Vat.VAT10, "vat10"),
        (Vat.VAT5, "vat5"),
        (Vat.VAT7, "vat7"),
        (Vat.VAT0, "vat0"),
        (Vat.NONE, "none"),
        (Vat.VAT22_122, "vat122"),
        (Vat.VAT10_110, "vat110"),
        (Vat.VAT5_105, "vat105"),
        (Vat.VAT7_107, "vat107"),
        (Vat.VAT20, "vat20"),
        (Vat.VAT20_120, "vat120"),
    ],
)
def test_every_vat_rate(vat: Vat, tax_type: str) -> None:
    assert first_position(task_of(receipt(item(vat=vat))))["tax"] == {"type": tax_type}


def test_every_vat_rate_we_emit_has_an_atol_name() -> None:
    assert set(atol.TAX_TYPES) == set(VAT_CODES.values())


@pytest.mark.parametrize(
    ("subject", "payment_object"),
    [
        (Subject.GOODS, "commodity"),
        (Subject.EXCISE, "excise"),
        (Subject.WORK, "job"),
        (Subject.SERVICE, "service"),
        (Subject.INTELLECTUAL_PROPERTY, "intellectualActivity"),
        (Subject.PAYMENT, "payment"),
        (Subject.AGENT_COMMISSION, "agentCommission"),
        (Subject.OTHER, "another"),
        (Subject.PROPERTY_RIGHT, "proprietaryLaw"),
        (Subject.PLEDGE, "deposit"),
        (Subject.EXCISE_MARKED_NO_CODE, "exciseWithoutMarking"),
        (Subject.EXCISE_MARKED, "exciseWithMarking"),
        (Subject.GOODS_MARKED_NO_CODE, "commodityWithoutMarking"),
        (Subject.GOODS_MARKED, "commodityWithMarking"),
    ],
)
def test_every_subject(subject: Subject, payment_object: str) -> None:
    position = first_position(task_of(receipt(item(subject=subject))))
    assert position["paymentObject"] == payment_object


def test_every_subject_we_emit_has_an_atol_name() -> None:
    assert set(atol.PAYMENT_OBJECTS) == set(SUBJECT_CODES.values())


@pytest.mark.parametrize(
    ("method", "payment_method"),
    [
        (ItemPaymentMethod.FULL_PREPAYMENT, "fullPrepayment"),
        (ItemPaymentMethod.PARTIAL_PREPAYMENT, "prepayment"),
        (ItemPaymentMethod.ADVANCE, "advance"),
        (ItemPaymentMethod.FULL_PAYMENT, "fullPayment"),
        (ItemPaymentMethod.PARTIAL_PAYMENT, "partialPayment"),
        (ItemPaymentMethod.CREDIT, "credit"),
        (ItemPaymentMethod.CREDIT_PAYMENT, "creditPayment"),
    ],
)
def test_every_item_payment_method(method: ItemPaymentMethod, payment_method: str) -> None:
    position = first_position(task_of(receipt(item(payment_method=method))))
    assert position["paymentMethod"] == payment_method


@pytest.mark.parametrize(
    ("method", "payment_type"),
    [
        (PaymentMethod.CASH, "cash"),
        (PaymentMethod.CARD, "electronically"),
        (PaymentMethod.PREPAID, "prepaid"),
        (PaymentMethod.CREDIT, "credit"),
        (PaymentMethod.OTHER, "other"),
    ],
)
def test_every_payment_method(method: PaymentMethod, payment_type: str) -> None:
    task = task_of(receipt(payments=(Payment(method, Kopecks(799000)),)))
    assert task["payments"] == [{"type": payment_type, "sum": 7990.0}]


def test_payments_of_one_kind_add_up_and_unused_kinds_are_left_out() -> None:
    r = receipt(
        payments=(
            Payment(PaymentMethod.CASH, Kopecks(1)),
            Payment(PaymentMethod.OTHER, Kopecks(98999)),
            Payment(PaymentMethod.CASH, Kopecks(700000)),
        )
    )
    assert task_of(r)["payments"] == [
        {"type": "cash", "sum": 7000.01},
        {"type": "other", "sum": 989.99},
    ]


@pytest.mark.parametrize(
    ("price", "quantity_milli", "text"),
    [
        (1, 1000, '"price": 0.01, "quantity": 1.0, "amount": 0.01'),
        (10, 1000, '"price": 0.1, "quantity": 1.0, "amount": 0.1'),
        (9999999999, 1000, '"price": 99999999.99, "quantity": 1.0, "amount": 99999999.99'),
        (MAX_MONEY, 1000, '"price": 10000000000.0, "quantity": 1.0, "amount": 10000000000.0'),
        (799000, 1500, '"price": 7990.0, "quantity": 1.5, "amount": 11985.0'),
        (333, 1, '"price": 3.33, "quantity": 0.001, "amount": 0.0'),
        (100, 333, '"price": 1.0, "quantity": 0.333, "amount": 0.33'),
        (1999, 99999999, '"price": 19.99, "quantity": 99999.999, "amount": 1998999.98'),
        (1001, 2500, '"price": 10.01, "quantity": 2.5, "amount": 25.03'),
    ],
)
def test_money_and_quantities_reach_the_json_exactly(
    price: int, quantity_milli: int, text: str
) -> None:
    line = item(price=Kopecks(price), quantity_milli=quantity_milli)
    if line.total == 0:  # 0.001 x 3.33 rounds to no money: not a valid receipt, map the item
        document = to_ffd(receipt(item()), RID)
        document["1059"].append({**document["1059"][0], "1079": price, "1023": "0.001", "1043": 0})
        task = receipt_task(RID, document, taxation_type=None)
        position = task["items"][1]
    else:
        position = first_position(task_of(receipt(line)))
    assert text in json.dumps(position)


@given(st.integers(min_value=0, max_value=MAX_MONEY))
def test_rubles_are_written_as_the_exact_decimal(kopecks: int) -> None:
    written = json.dumps(rubles(kopecks))  # the text on the wire
    assert Decimal(written) == Decimal(format_money(kopecks))
    assert atol.kopecks_from_json(json.loads(written), "x") == kopecks


@pytest.mark.parametrize("bad", [-1, 10**15, 1.5, True, "100"])
def test_rubles_refuses_what_json_cannot_carry_exactly(bad: Any) -> None:
    with pytest.raises(ValueError):
        rubles(bad)


def test_cashier_in_the_document_wins_over_the_configured_operator() -> None:
    fallback = Operator("Kassir 1", "500100732259")
    with_cashier = receipt(cashier_name="Petrov", cashier_inn=None)
    assert task_of(with_cashier, operator=fallback)["operator"] == {"name": "Petrov"}
    assert task_of(receipt(), operator=fallback)["operator"] == {
        "name": "Kassir 1",
        "vatin": "500100732259",
    }
    assert "operator" not in task_of(receipt())


@pytest.mark.parametrize(
    ("email", "phone", "expected"),
    [
        ("a@b.ru", "+79001234567", {"emailOrPhone": "a@b.ru"}),
        (None, "+79001234567", {"emailOrPhone": "+79001234567"}),
        (None, None, None),
    ],
)
def test_client_contact(email: str | None, phone: str | None, expected: Any) -> None:
    task = task_of(receipt(customer_email=email, customer_phone=phone))
    assert task.get("clientInfo") == expected


@pytest.mark.parametrize("taxation", ["osn", "usnIncome", "usnIncomeOutcome", "esn", "patent"])
def test_every_taxation_type(taxation: str) -> None:
    assert task_of(receipt(), taxation_type=taxation)["taxationType"] == taxation


def test_no_taxation_type_leaves_it_to_the_register() -> None:
    assert "taxationType" not in task_of(receipt(), taxation_type=None)


@pytest.mark.parametrize("taxation", ["envd", "OSN", "usn_income", ""])
def test_unknown_taxation_type_is_a_config_error(taxation: str) -> None:
    with pytest.raises(ConfigError, match="taxation type"):
        task_of(receipt(), taxation_type=taxation)


@pytest.mark.parametrize(
    ("receipt_type", "status"),
    [(ReceiptType.SALE, "itemPieceSold"), (ReceiptType.REFUND, "itemPieceReturn")],
)
def test_marking_code_becomes_imc_params(receipt_type: ReceiptType, status: str) -> None:
    code = "0104600439931256215Ab\x1d93dGVz"
    line = item(subject=Subject.GOODS_MARKED, mark_code=code)
    position = first_position(task_of(receipt(line, type=receipt_type)))
    assert position["imcParams"] == {
        "imcType": "auto",
        "imc": "MDEwNDYwMDQzOTkzMTI1NjIxNUFiHTkzZEdWeg==",
        "itemEstimatedStatus": status,
        "imcModeProcessing": 0,
    }


@pytest.mark.parametrize("receipt_type", [ReceiptType.EXPENSE, ReceiptType.EXPENSE_REFUND])
def test_marking_code_on_an_expense_is_refused(receipt_type: ReceiptType) -> None:
    line = item(subject=Subject.GOODS_MARKED, mark_code="010460043993125621")
    with pytest.raises(DeviceError, match=r"1059\[0\]\.2000") as refused:
        task_of(receipt(line, type=receipt_type))
    assert refused.value.reason == "invalid_document"


def test_stamped_mark_travels_as_the_user_attribute() -> None:
    document = stamped(to_ffd(receipt(), RID), "0000018f2a3b4c5d-0001")
    task = receipt_task(RID, document, taxation_type=None)
    assert task["items"][-1] == {
        "type": "userAttribute",
        "name": "kkt-adapter",
        "value": "..0000018f2a3b4c5d-0001",
    }


def broken(change: dict[str, Any], item_change: dict[str, Any] | None = None) -> dict[str, Any]:
    document = to_ffd(receipt(), RID)
    document.update(change)
    if item_change is not None:
        document["1059"][0].update(item_change)
    return {key: value for key, value in document.items() if value is not ...}


@pytest.mark.parametrize(
    ("document", "where"),
    [
        (broken({"1192": "another"}), "1192"),
        (broken({"1192": ...}), "1192"),
        (broken({"1054": 5}), "1054"),
        (broken({"1054": "1"}), "1054"),
        (broken({"1059": []}), "1059"),
        (broken({"1059": "items"}), "1059"),
        (broken({"1059": ["item"]}), r"1059\[0\]"),
        (broken({"1020": 1}), "1020"),
        (broken({"1020": -799000}), "1020"),
        (broken({"1081": 1}), "1031"),
        (broken({"1173": 2, "1174": {"1178": "2026-01-01"}}), "1173"),
        (broken({"1173": 0, "1174": {"1178": "01.01.2026"}}), "1178"),
        (broken({"1173": 0}), "1174"),
        (broken({"1084": {"1085": "kkt-adapter"}}), "1086"),
        (broken({}, {"1199": 13}), "1199"),
        (broken({}, {"1212": 5}), "1212"),
        (broken({}, {"1214": 8}), "1214"),
        (broken({}, {"2108": 1}), "2108"),
        (broken({}, {"1023": "1.5"}), "1023"),
        (broken({}, {"1023": 1}), "1023"),
        (broken({}, {"1079": 7990.0}), "1079"),
        (broken({}, {"1030": ""}), "1030"),
        (broken({}, {"1043": 10**15, "1020": 10**15}), "1043"),
    ],
)
def test_a_document_that_cannot_be_mapped_is_refused(document: dict[str, Any], where: str) -> None:
    with pytest.raises(DeviceError, match=where) as refused:
        receipt_task(RID, document, taxation_type="osn")
    assert refused.value.reason == "invalid_document"
    assert refused.value.retry_after is None
    assert not isinstance(refused.value, DeviceAnswerError)


# -- the receipt's answer --------------------------------------------------------------------


def receipt_answer(**changes: Any) -> dict[str, Any]:
    params: dict[str, Any] = {
        "fiscalDocumentDateTime": "2026-03-02T13:52:00+03:00",
        "fiscalDocumentNumber": 71,
        "fiscalDocumentSign": "1494325660",
        "fiscalReceiptNumber": 4,
        "fnNumber": "9999078900000961",
        "registrationNumber": "0000000001002292 ",
        "shiftNumber": 12,
        "total": 7990,
        "fnsUrl": "www.nalog.ru",
    }
    params.update(changes)
    return {
        "fiscalParams": {k: v for k, v in params.items() if v is not ...},
        "warnings": {"notPrinted": False},
    }


def test_fiscal_params_become_our_result() -> None:
    document = to_ffd(receipt(), RID)
    result = fiscal_result(RID, receipt_answer(), document=document)
    when = datetime(2026, 3, 2, 13, 52, tzinfo=MSK)
    assert result.receipt_id == RID
    assert (result.fn, result.fd, result.fp) == ("9999078900000961", 71, "1494325660")
    assert (result.shift, result.number_in_shift, result.datetime) == (12, 4, when)
    assert result.qr == "t=20260302T1352&s=7990.00&fn=9999078900000961&i=71&fp=1494325660&n=1"
    assert result.document == {
        **document,
        "1040": 71,
        "1041": "9999078900000961",
        "1077": "1494325660",
        "1012": "2026-03-02T13:52:00+03:00",
        "1038": 12,
        "1042": 4,
        "1037": "0000000001002292",
    }
    assert "1040" not in document  # the caller's document is not changed


@pytest.mark.parametrize(
    ("receipt_type", "n"),
    [
        (ReceiptType.SALE, 1),
        (ReceiptType.REFUND, 2),
        (ReceiptType.EXPENSE, 3),
        (ReceiptType.EXPENSE_REFUND, 4),
    ],
)
def test_qr_carries_the_receipt_type(receipt_type: ReceiptType, n: int) -> None:
    document = to_ffd(receipt(type=receipt_type), RID)
    assert fiscal_result(RID, receipt_answer(), document=document).qr.endswith(f"&n={n}")


def test_total_and_registration_number_are_optional() -> None:
    answer = receipt_answer(total=..., registrationNumber=..., fnsUrl=...)
    result = fiscal_result(RID, answer, document=to_ffd(receipt(), RID))
    assert "1037" not in result.document


def test_total_in_rubles_with_kopecks_is_compared_exactly() -> None:
    r = receipt(item(price=Kopecks(39075)))
    result = fiscal_result(RID, receipt_answer(total=390.75), document=to_ffd(r, RID))
    assert result.qr.startswith("t=20260302T1352&s=390.75&")


@pytest.mark.parametrize(
    ("answer", "where"),
    [
        ({}, "fiscalParams"),
        ({"fiscalParams": []}, "fiscalParams"),
        ([], "result"),
        (receipt_answer(fnNumber=...), "fnNumber"),
        (receipt_answer(fnNumber=9999078900000961), "fnNumber"),
        (receipt_answer(fnNumber=""), "fnNumber"),
        (receipt_answer(fiscalDocumentNumber=...), "fiscalDocumentNumber"),
        (receipt_answer(fiscalDocumentNumber="71"), "fiscalDocumentNumber"),
        (receipt_answer(fiscalDocumentNumber=-1), "fiscalDocumentNumber"),
        (receipt_answer(fiscalDocumentNumber=True), "fiscalDocumentNumber"),
        (receipt_answer(fiscalDocumentSign=...), "fiscalDocumentSign"),
        (receipt_answer(fiscalDocumentSign="14943-25660"), "fiscalDocumentSign"),
        (receipt_answer(fiscalReceiptNumber=...), "fiscalReceiptNumber"),
        (receipt_answer(shiftNumber=...), "shiftNumber"),
        (receipt_answer(shiftNumber=12.0), "shiftNumber"),
        (receipt_answer(fiscalDocumentDateTime=...), "fiscalDocumentDateTime"),
        (receipt_answer(fiscalDocumentDateTime="2026-03-02T13:52:00"), "UTC offset"),
        (receipt_answer(fiscalDocumentDateTime="02.03.2026 13:52"), "ISO date-time"),
        (receipt_answer(total=7990.01), "differs"),
        (receipt_answer(total=79.9), "differs"),
        (receipt_answer(total=7990.001), "whole kopecks"),
        (receipt_answer(total="7990"), "not a number"),
        (receipt_answer(total=float("nan")), "finite"),
        (receipt_answer(registrationNumber=12), "registrationNumber"),
    ],
)
def test_malformed_answer_is_a_clear_error(answer: Any, where: str) -> None:
    with pytest.raises(DeviceAnswerError, match=where) as failed:
        fiscal_result(RID, answer, document=to_ffd(receipt(), RID))
    assert failed.value.reason == "malformed_answer"
    assert failed.value.retry_after is None


@pytest.mark.parametrize(
    ("warnings", "expected"),
    [
        (None, TaskWarnings(False, False, False)),
        ({}, TaskWarnings(False, False, False)),
        ({"notPrinted": True}, TaskWarnings(True, False, False)),
        ({"notPrinted": False, "nonFiscal": True}, TaskWarnings(False, True, False)),
        ({"recovered": True}, TaskWarnings(False, False, True)),
    ],
)
def test_task_warnings(warnings: Any, expected: TaskWarnings) -> None:
    answer = receipt_answer()
    answer["warnings"] = warnings
    assert atol.task_warnings(answer) == expected


def test_task_warnings_malformed() -> None:
    with pytest.raises(DeviceAnswerError, match="notPrinted"):
        atol.task_warnings({"warnings": {"notPrinted": "yes"}})


# -- task uuid ---------------------------------------------------------------------------------


def test_task_uuid_is_derived_from_the_receipt_id() -> None:
    first = task_uuid(RID)
    assert first == task_uuid(RID)
    assert isinstance(first, str)
    assert uuid.UUID(first).version == 5
    # Fixed for ever: a receipt in flight across an upgrade must ask for the same task.
    assert task_uuid("01JQ7XKV8M2N3P4Q") == str(
        uuid.uuid5(uuid.UUID("e56b9b0d-036c-52cb-a848-6159baa15fe4"), "01JQ7XKV8M2N3P4Q")
    )
    assert task_uuid("01JQ7XKV8M2N3P4R") != first


def test_a_new_attempt_is_a_new_task() -> None:
    attempts = {task_uuid(RID, attempt) for attempt in range(3)}
    assert len(attempts) == 3
    assert task_uuid(RID, 0) == task_uuid(RID)
    with pytest.raises(ValueError):
        task_uuid(RID, -1)


# -- the other tasks ---------------------------------------------------------------------------


CASHIER = Operator("Ivanova A.", "7707083893")


@pytest.mark.parametrize(
    ("task", "expected"),
    [
        (atol.open_shift_task(), {"type": "openShift"}),
        (
            atol.open_shift_task(CASHIER),
            {"type": "openShift", "operator": {"name": "Ivanova A.", "vatin": "7707083893"}},
        ),
        (atol.close_shift_task(), {"type": "closeShift"}),
        (
            atol.close_shift_task(Operator("Petrov")),
            {"type": "closeShift", "operator": {"name": "Petrov"}},
        ),
        (atol.report_x_task(), {"type": "reportX"}),
        (atol.device_status_task(), {"type": "getDeviceStatus"}),
        (atol.shift_status_task(), {"type": "getShiftStatus"}),
        (atol.fn_info_task(), {"type": "getFnInfo"}),
        (atol.fn_status_task(), {"type": "getFnStatus"}),
        (atol.exchange_status_task(), {"type": "ofdExchangeStatus"}),
        (atol.continue_print_task(), {"type": "continuePrint"}),
        (atol.check_document_closed_task(), {"type": "checkDocumentClosed"}),
        (atol.cancel_receipt_task(), {"type": "cancelReceipt"}),
        (atol.fn_document_task(71), {"type": "getFnDocument", "fiscalDocumentNumber": 71}),
    ],
)
def test_service_tasks(task: dict[str, Any], expected: dict[str, Any]) -> None:
    assert task == expected


@pytest.mark.parametrize("fd", [0, -1, True, "71"])
def test_fn_document_task_needs_a_document_number(fd: Any) -> None:
    with pytest.raises(ValueError):
        atol.fn_document_task(fd)


# -- their answers ---------------------------------------------------------------------------


def shift_answer(**changes: Any) -> dict[str, Any]:
    params = {
        "fiscalDocumentDateTime": "2026-03-02T09:00:00+03:00",
        "fiscalDocumentNumber": 70,
        "fiscalDocumentSign": "0024109209",
        "fnNumber": "9999078900000961",
        "shiftNumber": 12,
        **changes,
    }
    return {"fiscalParams": params, "warnings": {"notPrinted": False}}


def test_open_and_close_shift_reports() -> None:
    at = datetime(2026, 3, 2, 9, 0, tzinfo=MSK)
    fn = shift_answer()["fiscalParams"]["fnNumber"]
    opened = atol.shift_report("open", shift_answer())
    assert opened == ShiftReport("open", 12, 70, at, None, 0, fn=fn)
    closed = atol.shift_report("z", shift_answer(receiptsCount=3))
    assert closed == ShiftReport("z", 12, 70, None, at, 3, fn=fn)


# -- cash in and out, shift totals ------------------------------------------------------------


def test_cash_tasks_carry_the_sum_in_rubles_and_the_operator() -> None:
    assert atol.cash_task(CashKind.CASH_IN, 50_000) == {"type": "cashIn", "cashSum": 500.0}
    task = atol.cash_task(CashKind.CASH_OUT, 1, atol.Operator("Ivanova A."))
    assert task == {"type": "cashOut", "cashSum": 0.01, "operator": {"name": "Ivanova A."}}
    with pytest.raises(ValueError):
        atol.cash_task(CashKind.CASH_IN, 0)
    assert atol.cash_sum({"counters": {"cashSum": 1234.5}}) == 123_450
    with pytest.raises(DeviceAnswerError):
        atol.cash_sum({"counters": {}})


def test_error_80_is_insufficient_cash() -> None:
    refused = atol.device_error({"code": 80, "description": "Не хватает наличности"})
    assert refused.reason == "insufficient_cash"


def test_shift_totals_read_the_registers_counters() -> None:
    answer = {
        "shiftTotals": {
            "receipts": {
                "sell": {"count": 2, "sum": 150.5,
                         "payments": {"cash": 100.5, "electronically": 50, "prepaid": 0}},
                "sellReturn": {"count": 1, "sum": 10, "payments": {"cash": 10}},
                "buy": {"count": 0, "sum": 0, "payments": {}},
            },
            "income": {"sum": 500, "count": 1},
            "outcome": {"sum": 20, "count": 1},
            "cashDrawer": {"sum": 570.5},
            "shiftNumber": 7,
        }
    }  # fmt: skip
    shift, totals = atol.shift_totals(answer)
    assert shift == 7 and totals.receipts == 3
    assert totals.totals == {"sale": 15_050, "refund": 1_000, "expense": 0, "expense_refund": 0}
    assert totals.payments["sale"] == {
        "cash": 10_050, "card": 5_000, "prepaid": 0, "credit": 0, "other": 0
    }  # fmt: skip
    assert totals.counts["expense_refund"] == 0  # a counter left out reads as 0
    assert totals.cash_in == CashMovement(50_000, 1) and totals.cash_out == CashMovement(2_000, 1)
    assert totals.drawer_cash == 57_050 and totals.vat == {}
    with pytest.raises(DeviceAnswerError):
        atol.shift_totals({"shiftTotals": {"receipts": {}}})  # no cashDrawer


@pytest.mark.parametrize(
    ("kind", "answer", "error"),
    [
        ("z", shift_answer(), DeviceAnswerError),  # no receiptsCount
        ("open", shift_answer(shiftNumber=None), DeviceAnswerError),
        ("open", {"fiscalParams": None}, DeviceAnswerError),
        ("x", shift_answer(), ValueError),
    ],
)
def test_shift_report_malformed(kind: str, answer: dict[str, Any], error: type) -> None:
    with pytest.raises(error):
        atol.shift_report(kind, answer)


DEVICE_STATUS = {
    "deviceStatus": {
        "blocked": False,
        "coverOpened": False,
        "currentDateTime": "2026-03-02T13:52:10+03:00",
        "fiscal": True,
        "fnFiscal": True,
        "fnPresent": True,
        "paperPresent": True,
        "cashDrawerOpened": False,
        "shift": "opened",
    }
}


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        (
            {},
            DeviceState(
                "opened",
                False,
                False,
                True,
                True,
                True,
                datetime(2026, 3, 2, 13, 52, 10, tzinfo=MSK),
            ),
        ),
        (
            {"shift": "expired", "blocked": True, "coverOpened": True, "paperPresent": False},
            DeviceState(
                "expired",
                True,
                True,
                False,
                True,
                True,
                datetime(2026, 3, 2, 13, 52, 10, tzinfo=MSK),
            ),
        ),
        (
            {"shift": "closed", "currentDateTime": None, "blocked": None},
            DeviceState("closed", False, False, True, True, True, None),
        ),
    ],
)
def test_device_state(changes: dict[str, Any], expected: DeviceState) -> None:
    status = {**DEVICE_STATUS["deviceStatus"], **changes}
    assert atol.device_state({"deviceStatus": status}) == expected


@pytest.mark.parametrize(
    "changes",
    [{"shift": "open"}, {"shift": None}, {"paperPresent": None}, {"paperPresent": 1}],
)
def test_device_state_malformed(changes: dict[str, Any]) -> None:
    status = {**DEVICE_STATUS["deviceStatus"], **changes}
    with pytest.raises(DeviceAnswerError):
        atol.device_state({"deviceStatus": status})


@pytest.mark.parametrize("key", ["expiredTime", "expiredAt"])
def test_shift_state(key: str) -> None:
    answer = {"shiftStatus": {"state": "opened", "number": 12, key: "2026-03-03T09:00:00+03:00"}}
    assert atol.shift_state(answer) == ShiftState(
        "opened", 12, datetime(2026, 3, 3, 9, 0, tzinfo=MSK)
    )


def test_shift_state_closed_without_expiry() -> None:
    answer = {"shiftStatus": {"state": "closed", "number": 11}}
    assert atol.shift_state(answer) == ShiftState("closed", 11, None)


FN_INFO = {
    "fnInfo": {
        "serial": "9999078900000961",
        "livePhase": "fiscalMode",
        "ffdVersion": "1.2",
        "fnFfdVersion": "1.2",
        "validityDate": "2027-06-01T00:00:00+03:00",
        "warnings": {
            "needReplacement": False,
            "resourceExhausted": False,
            "memoryOverflow": True,
            "ofdTimeout": True,
            "criticalError": False,
        },
    }
}


def test_fn_info() -> None:
    assert atol.fn_info(FN_INFO) == FnInfo(
        "9999078900000961", "fiscalMode", False, False, True, True, False,
        valid_until=datetime(2027, 6, 1, tzinfo=MSK), ffd_version="1.2",
    )  # fmt: skip
    no_warnings = {"fnInfo": {"serial": "9999078900000961", "livePhase": "accessArchive"}}
    assert atol.fn_info(no_warnings) == FnInfo(
        "9999078900000961", "accessArchive", False, False, False, False, False
    )


def test_fn_status() -> None:
    answer = {"fnStatus": {"fiscalDocumentNumber": 1245, "fiscalReceiptNumber": 10}}
    assert atol.fn_status(answer) == FnStatus(1245)


EXCHANGE_TASK_ANSWER = {
    "status": {
        "notSentCount": 3,
        "notSentFirstDocNumber": 69,
        "notSentFirstDocDateTime": "2026-03-01T10:00:00+03:00",
        "lastSuccessKeysUpdate": "2026-01-10T10:00:00+03:00",
    },
    "errors": {
        "fnCommandCode": 0,
        "documentNumber": 69,
        "fn": {"code": 0, "description": "Ошибок нет"},
        "network": {"code": 13617, "description": "Отсутствует физический канал связи"},
        "ofd": {"code": 0, "description": "Ошибок нет"},
        "lastSuccessConnectionDateTime": "2026-03-01T09:59:00+03:00",
    },
    "warnings": {},
}


def test_exchange_status_of_the_task() -> None:
    assert atol.exchange_status(EXCHANGE_TASK_ANSWER) == ExchangeStatus(
        unsent_count=3,
        first_unsent_fd=69,
        first_unsent_at=datetime(2026, 3, 1, 10, 0, tzinfo=MSK),
        last_success_at=datetime(2026, 3, 1, 9, 59, tzinfo=MSK),
        error="network 13617: Отсутствует физический канал связи",
    )


def test_exchange_status_of_the_web_servers_query() -> None:
    answer = {
        "ofdExchangeStatus": EXCHANGE_TASK_ANSWER["status"],
        "ofdExchangeErrors": EXCHANGE_TASK_ANSWER["errors"],
    }
    assert atol.exchange_status(answer) == atol.exchange_status(EXCHANGE_TASK_ANSWER)


def test_nothing_unsent_has_no_first_document() -> None:
    answer = {
        "status": {
            "notSentCount": 0,
            "notSentFirstDocNumber": 0,
            "notSentFirstDocDateTime": "1970-01-01T03:00:00+03:00",
        },
        "errors": {"fn": {"code": 0}, "network": {"code": 0}, "ofd": {"code": 0}},
    }
    assert atol.exchange_status(answer) == ExchangeStatus(0, None, None, None, None)


@pytest.mark.parametrize(
    "answer",
    [
        {},
        {"status": {"notSentCount": "3"}},
        {"status": {"notSentCount": 3, "notSentFirstDocNumber": 69}},
        {"status": {"notSentCount": 0}, "errors": {"network": {"description": "?"}}},
    ],
)
def test_exchange_status_malformed(answer: dict[str, Any]) -> None:
    with pytest.raises(DeviceAnswerError):
        atol.exchange_status(answer)


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        ({"documentClosed": True, "documentPrinted": False}, DocumentState(True, False)),
        ({"documentClosed": False, "documentPrinted": False}, DocumentState(False, False)),
    ],
)
def test_document_state(answer: dict[str, Any], expected: DocumentState) -> None:
    assert atol.document_state(answer) == expected


def test_document_state_malformed() -> None:
    with pytest.raises(DeviceAnswerError, match="documentPrinted"):
        atol.document_state({"documentClosed": True})


def fn_document_answer(**changes: Any) -> dict[str, Any]:
    tlv = {
        "1012": "2026-03-02T13:52:00+03:00",
        "1020": 390.75,
        "1040": 71,
        "1041": "9999078900000961",
        "1054": 1,
        "1077": "31049AFF1C5C",
        "1192": RID,
        "1084": {"1085": "kkt-adapter", "1086": "abc.def.ghi"},
        "1059": [{"1030": "Frame", "1079": 390.75, "1023": 1, "1043": 390.75, "1199": 11}],
        "fiscalDocumentType": "receipt",
        "short": False,
        "qr": "t=20260302T1352&s=390.75&fn=9999078900000961&i=71&fp=2600410204&n=1",
        **changes,
    }
    return {"documentTLV": {k: v for k, v in tlv.items() if v is not ...}}


def test_fn_document() -> None:
    answer = fn_document_answer()
    document = atol.fn_document(answer)
    assert (document.fd, document.kind, document.receipt_id, document.total) == (
        71,
        "receipt",
        RID,
        39075,
    )
    assert document.tags == answer["documentTLV"]


def test_fn_document_of_a_shift_or_another_program() -> None:
    document = atol.fn_document(
        fn_document_answer(**{"1020": ..., "1192": ..., "fiscalDocumentType": "openShift"})
    )
    assert (document.kind, document.receipt_id, document.total) == ("openShift", None, None)


@pytest.mark.parametrize(
    "changes",
    [{"1040": ...}, {"1040": "71"}, {"1020": "390.75"}, {"fiscalDocumentType": ...}],
)
def test_fn_document_malformed(changes: dict[str, Any]) -> None:
    with pytest.raises(DeviceAnswerError):
        atol.fn_document(fn_document_answer(**changes))


def test_device_status_from_the_status_tasks() -> None:
    status = atol.device_status(
        atol.device_state(DEVICE_STATUS),
        ShiftState("opened", 12, datetime(2026, 3, 3, 9, 0, tzinfo=MSK)),
        atol.fn_info(FN_INFO),
        FnStatus(71),
        atol.exchange_status(EXCHANGE_TASK_ANSWER),
        model="ATOL 30F",
        registration_number="0000000001002292",
    )
    assert status == DeviceStatus(
        emulator=False,
        model="ATOL 30F",
        fn="9999078900000961",
        registration_number="0000000001002292",
        online=True,
        paper=True,
        shift_open=True,
        shift=12,
        shift_opened_at=datetime(2026, 3, 2, 9, 0, tzinfo=MSK),
        shift_expired=False,
        last_fd=71,
        unconfirmed_count=3,
        oldest_unconfirmed_at=datetime(2026, 3, 1, 10, 0, tzinfo=MSK),
        fn_blocked=False,
        first_unconfirmed_fd=69,
        fn_valid_until=datetime(2027, 6, 1, tzinfo=MSK),
        ffd_version="1.2",
        fn_memory_warning=True,
    )


@pytest.mark.parametrize(
    ("shift", "open_", "expired"),
    [("closed", False, False), ("opened", True, False), ("expired", True, True)],
)
def test_device_status_shift_states(shift: str, open_: bool, expired: bool) -> None:
    device = DeviceState(shift, True, False, False, True, True, None)
    expires = datetime(2026, 3, 3, 9, 0, tzinfo=UTC)
    status = atol.device_status(
        device,
        ShiftState(shift, 12, expires if open_ else None),
        atol.fn_info(FN_INFO),
        FnStatus(71),
        ExchangeStatus(0, None, None, None, None),
        model="ATOL 30F",
        registration_number="1",
    )
    assert (status.shift_open, status.shift_expired) == (open_, expired)
    assert status.shift_opened_at == (expires - timedelta(hours=24) if open_ else None)
    assert (status.fn_blocked, status.paper) == (True, False)
    assert (status.unconfirmed_count, status.first_unconfirmed_fd) == (0, None)


def test_an_open_cover_is_a_problem_of_the_kkt_in_health() -> None:
    from dataclasses import replace

    from kkt_adapter.status import Facts, kkt_component

    device = DeviceState("opened", False, True, True, True, True, None)  # the cover is open
    status = atol.device_status(
        device,
        ShiftState("opened", 12, None),
        atol.fn_info(FN_INFO),
        FnStatus(71),
        ExchangeStatus(0, None, None, None, None),
        model="ATOL 30F",
        registration_number="1",
    )
    assert status.cover_open is True
    counts = {s: 0 for s in ("accepted", "print_failed", "pending", "syncing", "synced", "failed")}
    facts = Facts({**counts, "total": 0, "dlq": 0}, 10, None, status, None, 0)
    component = kkt_component(facts)
    assert (component["status"], component["problems"]) == (
        "error",
        ["cover_open", "fn_memory_nearly_full"],  # FN_INFO says its memory overflows
    )
    calm = replace(status, cover_open=False, fn_memory_warning=False)
    assert kkt_component(replace(facts, device=calm))["status"] == "ok"


# -- errors ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "reason", "retry"),
    [
        (2, "offline", 5),
        (3, "offline", 5),
        (241, "offline", 5),
        (44, "out_of_paper", 5),
        (45, "cover_open", 5),
        (46, "printer_fault", 5),
        (55, "busy", 5),
        (68, "shift_expired", 5),
        (141, "shift_expired", 5),
        (73, "shift_closed", 5),
        (83, "shift_open", 5),
        (82, "document_open", 5),
        (200, "document_open", 5),
        (177, "interrupted", 5),
        (502, "interrupted", 5),
        (120, "fn_expired", None),
        (137, "fn_expired", None),
        (121, "fn_full", None),
        (140, "fn_blocked", 5),
        (118, "fn_fault", None),
        (501, "invalid_document", None),
        (144, "invalid_document", None),
        (66, "invalid_document", None),
        (999, "device_error", 5),
    ],
)
def test_device_errors_map_to_our_reasons(code: int, reason: str, retry: int | None) -> None:
    error = atol.device_error({"code": code, "description": "Текст драйвера"})
    assert type(error) is DeviceError
    assert (error.reason, error.retry_after) == (reason, retry)
    assert error.message == f"ATOL error {code}: Текст драйвера"
    assert error.details == {"reason": reason}


def test_older_error_fields_are_read_too() -> None:
    error = atol.device_error({"errorCode": 44, "errorDescription": "Нет бумаги"})
    assert (error.reason, error.message) == ("out_of_paper", "ATOL error 44: Нет бумаги")


def test_error_without_description() -> None:
    assert atol.device_error({"code": 45}).message == "ATOL error 45: no description"


@pytest.mark.parametrize("error", [{}, {"code": 0}, {"code": "44"}, {"code": True}])
def test_malformed_error_is_a_malformed_answer(error: dict[str, Any]) -> None:
    assert isinstance(atol.device_error(error), DeviceAnswerError)


def test_every_mapped_reason_is_known() -> None:
    known = {
        "offline",
        "out_of_paper",
        "cover_open",
        "printer_fault",
        "busy",
        "shift_expired",
        "shift_closed",
        "shift_open",
        "document_open",
        "interrupted",
        "fn_expired",
        "fn_full",
        "fn_blocked",
        "fn_fault",
        "invalid_document",
        "insufficient_cash",
    }
    assert set(atol.ERROR_REASONS.values()) == known
