"""FFD 1.2 document mapping of a receipt."""

from datetime import date

import pytest

from kkt_adapter.domain.ffd import (
    REQUIRED_ITEM_TAGS,
    REQUIRED_TAGS,
    VAT_CODES,
    ffd_type_code,
    missing_tags,
    to_ffd,
)
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
)


def make_receipt(**changes: object) -> Receipt:
    fields: dict[str, object] = {
        "pos_id": "POS-001",
        "type": ReceiptType.SALE,
        "items": (
            Item(
                "Frame",
                Kopecks(799000),
                1000,
                Vat.VAT22,
                Subject.GOODS,
                ItemPaymentMethod.FULL_PAYMENT,
                "RB5154-2000",
                None,
            ),
            Item(
                "Shoes",
                Kopecks(1050),
                2250,
                Vat.VAT10,
                Subject.GOODS_MARKED,
                ItemPaymentMethod.FULL_PREPAYMENT,
                None,
                "0104600439931256",
            ),
        ),
        "payments": (
            Payment(PaymentMethod.CARD, Kopecks(700000)),
            Payment(PaymentMethod.CASH, Kopecks(100000)),
            Payment(PaymentMethod.CASH, Kopecks(1363)),
        ),
        "customer_email": "buyer@example.com",
        "customer_phone": "+79001234567",
        "cashier_name": "Ivanova A.",
        "cashier_inn": "7707083893",
        "correction": None,
        "dated": date(2026, 3, 2),
    }
    fields.update(changes)
    return Receipt(**fields)  # type: ignore[arg-type]


def test_full_document_has_every_tag() -> None:
    document = to_ffd(make_receipt(), "0193-abc")
    assert document == {
        "1054": 1,
        "1059": [
            {
                "1030": "Frame",
                "1079": 799000,
                "1023": "1.000",
                "1043": 799000,
                "1199": 11,
                "1212": 1,
                "1214": 4,
                "2108": 0,
                "1200": 144082,  # 7990.00 x 22 / 122 = 1440.8197
                "1191": "RB5154-2000",
            },
            {
                "1030": "Shoes",
                "1079": 1050,
                "1023": "2.250",
                "1043": 2363,
                "1199": 2,
                "1212": 33,
                "1214": 1,
                "2108": 0,
                "1200": 215,  # 23.63 x 10 / 110 = 2.148
                "2000": "0104600439931256",
            },
        ],
        "1020": 801363,
        "1102": 144082,
        "1103": 215,
        "1031": 101363,
        "1081": 700000,
        "1215": 0,
        "1216": 0,
        "1217": 0,
        "1008": "buyer@example.com",
        "1021": "Ivanova A.",
        "1203": "7707083893",
        "1192": "0193-abc",
        "1209": 4,
    }
    assert missing_tags(document) == []


@pytest.mark.parametrize(
    ("receipt_type", "code"),
    [
        (ReceiptType.SALE, 1),
        (ReceiptType.REFUND, 2),
        (ReceiptType.EXPENSE, 3),
        (ReceiptType.EXPENSE_REFUND, 4),
    ],
)
def test_receipt_types(receipt_type: ReceiptType, code: int) -> None:
    assert ffd_type_code(receipt_type) == code
    assert to_ffd(make_receipt(type=receipt_type), "r")["1054"] == code


@pytest.mark.parametrize(
    ("method", "tag"),
    [
        (PaymentMethod.CASH, "1031"),
        (PaymentMethod.CARD, "1081"),
        (PaymentMethod.PREPAID, "1215"),
        (PaymentMethod.CREDIT, "1216"),
        (PaymentMethod.OTHER, "1217"),
    ],
)
def test_each_payment_method_goes_to_its_tag(method: PaymentMethod, tag: str) -> None:
    receipt = make_receipt(payments=(Payment(method, Kopecks(801363)),))
    document = to_ffd(receipt, "r")
    sums = {t: document[t] for t in ("1031", "1081", "1215", "1216", "1217")}
    assert sums == {t: (801363 if t == tag else 0) for t in sums}


def test_vat_codes_cover_every_rate_with_the_2026_values() -> None:
    assert set(VAT_CODES) == set(Vat)
    assert VAT_CODES[Vat.VAT22] == 11
    assert VAT_CODES[Vat.VAT22_122] == 12
    assert [VAT_CODES[v] for v in (Vat.VAT5, Vat.VAT7, Vat.VAT5_105, Vat.VAT7_107)] == [7, 8, 9, 10]
    assert [VAT_CODES[v] for v in (Vat.VAT10, Vat.VAT10_110, Vat.VAT0, Vat.NONE)] == [2, 4, 5, 6]
    assert [VAT_CODES[v] for v in (Vat.VAT20, Vat.VAT20_120)] == [1, 3]


def test_item_payment_methods_are_1_to_7() -> None:
    codes = []
    for method in ItemPaymentMethod:
        item = Item("x", Kopecks(100), 1000, Vat.NONE, Subject.SERVICE, method, None, None)
        codes.append(to_ffd(make_receipt(items=(item,)), "r")["1059"][0]["1214"])
    assert codes == [1, 2, 3, 4, 5, 6, 7]


# FFD 1.2 tag 1212 values, written out here rather than read from SUBJECT_CODES so a wrong
# code in the mapping fails the test (30..33: marked goods, excise or not, with or without a code).
SUBJECT_1212 = {
    "goods": 1,
    "excise": 2,
    "work": 3,
    "service": 4,
    "intellectual_property": 9,
    "payment": 10,
    "agent_commission": 11,
    "other": 13,
    "property_right": 14,
    "pledge": 19,
    "excise_marked_no_code": 30,
    "excise_marked": 31,
    "goods_marked_no_code": 32,
    "goods_marked": 33,
}


def test_every_subject_has_its_ffd_code() -> None:
    assert {subject.value for subject in Subject} == SUBJECT_1212.keys()
    codes = {}
    for subject in Subject:
        item = Item(
            "x", Kopecks(100), 1000, Vat.NONE, subject, ItemPaymentMethod.FULL_PAYMENT, None, None
        )
        codes[subject.value] = to_ffd(make_receipt(items=(item,)), "r")["1059"][0]["1212"]
    assert codes == SUBJECT_1212


def test_phone_is_used_when_no_email() -> None:
    document = to_ffd(make_receipt(customer_email=None), "r")
    assert document["1008"] == "+79001234567"


def test_optional_tags_absent_when_not_given() -> None:
    receipt = make_receipt(
        customer_email=None, customer_phone=None, cashier_name=None, cashier_inn=None
    )
    document = to_ffd(receipt, "r")
    assert not {"1008", "1021", "1203", "1173", "1174"} & document.keys()
    assert document.keys() >= REQUIRED_TAGS


@pytest.mark.parametrize(
    ("correction", "kind_code", "basis"),
    [
        (Correction("self", date(2026, 1, 5), None), 0, {"1178": "2026-01-05"}),
        (
            Correction("order", date(2026, 1, 5), "ORD-7"),
            1,
            {"1178": "2026-01-05", "1179": "ORD-7"},
        ),
    ],
)
def test_correction_receipt(correction: Correction, kind_code: int, basis: dict[str, str]) -> None:
    document = to_ffd(make_receipt(correction=correction), "r")
    assert document["1173"] == kind_code
    assert document["1174"] == basis
    assert missing_tags(document) == []


def test_missing_tags_reports_document_item_and_correction_gaps() -> None:
    document = to_ffd(make_receipt(), "r")
    del document["1020"]
    del document["1059"][1]["1199"]
    document["1173"] = 0
    assert missing_tags(document) == ["1020", "1174", "1059[1].1199"]
    assert len(missing_tags({})) == len(REQUIRED_TAGS)
    assert document["1059"][0].keys() >= REQUIRED_ITEM_TAGS
