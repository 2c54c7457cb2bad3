"""The FFD 1.2 fiscal document of a receipt, keyed by tag numbers as strings.

:func:`to_ffd` builds the document *without* the fiscal attributes; the device adds them
(1040 FD number, 1041 FN number, 1038 shift, 1042 number in shift, 1012 date-time,
1077 fiscal sign, 1037 registration number).

========  ==========================================  =========================================
tag       meaning (FFD 1.2)                           value here
========  ==========================================  =========================================
1054      признак расчета                             sale 1, refund 2, expense 3, exp.refund 4
1059      предмет расчета (list of objects)           one object per item, tags below
  1030    наименование предмета расчета               item name
  1079    цена за единицу                             kopecks (int)
  1023    количество                                  decimal string, 3 fraction digits "1.000"
  1043    стоимость предмета расчета                  kopecks (int), price x qty half-up
  1199    ставка НДС                                  see ``VAT_CODES``
  1200    сумма НДС за предмет расчета                kopecks, rates with VAT only (``vat.py``)
  1212    признак предмета расчета                    see ``SUBJECT_CODES``
  1214    признак способа расчета                     1..7, see ``ITEM_PAYMENT_CODES``
  2108    мера количества предмета расчета            0 (штуки / единицы)
  1191    доп. реквизит предмета расчета              sku, when given
  2000    код маркировки                              mark_code, when given
1020      сумма расчета по чеку                       kopecks
1102      сумма НДС чека по ставке 20% (and 22%)      kopecks, when such lines (``vat.py``)
1103      сумма НДС чека по ставке 10%                kopecks, when such lines
1104      сумма расчета по чеку с НДС 0%              kopecks (amounts), when such lines
1105      сумма расчета по чеку без НДС               kopecks (amounts), when such lines
1106      сумма НДС чека по ставке 20/120 (22/122)    kopecks, when such lines
1107      сумма НДС чека по ставке 10/110             kopecks, when such lines
1031      сумма наличными                             kopecks, 0 when unused; the cash part of
                                                      the total: received minus change
1081      сумма безналичными                          kopecks (card), 0 when unused
1215      сумма предоплатой (зачет аванса)            kopecks, 0 when unused
1216      сумма постоплатой (в кредит)                kopecks, 0 when unused
1217      сумма встречным предоставлением             kopecks (other), 0 when unused
1008      телефон или e-mail покупателя               email, else phone, when given
1021      кассир                                      cashier name, when given
1203      ИНН кассира                                 when given
1192      доп. реквизит чека                          the adapter's receipt_id
1209      номер версии ФФД                            4 (= FFD 1.2)
1173      тип коррекции                               0 self, 1 by order (corrections only)
1174      основание для коррекции                     {"1178": "YYYY-MM-DD", "1179": number}
========  ==========================================  =========================================

The payment tags always add up to 1020: change is not a fiscal amount (FFD 1.2 has no tag
for it), so cash received over the total is left out of 1031; the POS's answer states it.

Receipt-level VAT sums (``kkt_adapter.domain.vat``): each line with VAT carries 1200, and the
receipt carries the tag of each rate present, the sum of its lines. 22 % and 22/122 share 1102
and 1106 with 20 % and 20/120 (unconfirmed); 5 %, 7 %, 5/105 and 7/107 have no receipt-level
tag (none found): their VAT is in the lines' 1200 only. Sources: ``docs/decisions.md``.
"""

from __future__ import annotations

from typing import Any

from kkt_adapter.domain.money import format_quantity
from kkt_adapter.domain.receipt import (
    Item,
    ItemPaymentMethod,
    PaymentMethod,
    Receipt,
    ReceiptType,
    Subject,
    Vat,
)
from kkt_adapter.domain.vat import RECEIPT_SUM_TAGS, line_vat, receipt_vat_sums

TAG_TYPE = "1054"
TAG_ITEMS = "1059"
TAG_ITEM_NAME = "1030"
TAG_ITEM_PRICE = "1079"
TAG_ITEM_QUANTITY = "1023"
TAG_ITEM_TOTAL = "1043"
TAG_ITEM_VAT = "1199"
TAG_ITEM_VAT_SUM = "1200"
TAG_ITEM_SUBJECT = "1212"
TAG_ITEM_PAYMENT_METHOD = "1214"
TAG_ITEM_MEASURE = "2108"
TAG_ITEM_EXTRA = "1191"
TAG_ITEM_MARK_CODE = "2000"
TAG_TOTAL = "1020"
TAG_CASH = "1031"
TAG_ELECTRONIC = "1081"
TAG_PREPAID = "1215"
TAG_CREDIT = "1216"
TAG_OTHER = "1217"
TAG_CUSTOMER_CONTACT = "1008"
TAG_CASHIER = "1021"
TAG_CASHIER_INN = "1203"
TAG_RECEIPT_EXTRA = "1192"
TAG_FFD_VERSION = "1209"
TAG_CORRECTION_TYPE = "1173"
TAG_CORRECTION_BASIS = "1174"
TAG_CORRECTED_DATE = "1178"
TAG_ORDER_NUMBER = "1179"

FFD_VERSION_1_2 = 4
MEASURE_PIECE = 0

RECEIPT_TYPE_CODES: dict[ReceiptType, int] = {
    ReceiptType.SALE: 1,
    ReceiptType.REFUND: 2,
    ReceiptType.EXPENSE: 3,
    ReceiptType.EXPENSE_REFUND: 4,
}
VAT_CODES: dict[Vat, int] = {
    Vat.VAT20: 1,
    Vat.VAT10: 2,
    Vat.VAT20_120: 3,
    Vat.VAT10_110: 4,
    Vat.VAT0: 5,
    Vat.NONE: 6,
    Vat.VAT5: 7,
    Vat.VAT7: 8,
    Vat.VAT5_105: 9,
    Vat.VAT7_107: 10,
    Vat.VAT22: 11,
    Vat.VAT22_122: 12,
}
VATS_BY_CODE: dict[int, Vat] = {code: vat for vat, code in VAT_CODES.items()}
SUBJECT_CODES: dict[Subject, int] = {
    Subject.GOODS: 1,
    Subject.EXCISE: 2,
    Subject.WORK: 3,
    Subject.SERVICE: 4,
    Subject.INTELLECTUAL_PROPERTY: 9,
    Subject.PAYMENT: 10,
    Subject.AGENT_COMMISSION: 11,
    Subject.OTHER: 13,
    Subject.PROPERTY_RIGHT: 14,
    Subject.PLEDGE: 19,
    Subject.EXCISE_MARKED_NO_CODE: 30,
    Subject.EXCISE_MARKED: 31,
    Subject.GOODS_MARKED_NO_CODE: 32,
    Subject.GOODS_MARKED: 33,
}
ITEM_PAYMENT_CODES: dict[ItemPaymentMethod, int] = {
    method: code for code, method in enumerate(ItemPaymentMethod, start=1)
}
PAYMENT_TAGS: dict[PaymentMethod, str] = {
    PaymentMethod.CASH: TAG_CASH,
    PaymentMethod.CARD: TAG_ELECTRONIC,
    PaymentMethod.PREPAID: TAG_PREPAID,
    PaymentMethod.CREDIT: TAG_CREDIT,
    PaymentMethod.OTHER: TAG_OTHER,
}
CORRECTION_KIND_CODES = {"self": 0, "order": 1}

REQUIRED_TAGS: frozenset[str] = frozenset(
    {TAG_TYPE, TAG_ITEMS, TAG_TOTAL, TAG_FFD_VERSION, TAG_RECEIPT_EXTRA, *PAYMENT_TAGS.values()}
)
"""Tags every receipt document from :func:`to_ffd` carries (before the device adds its own)."""

REQUIRED_ITEM_TAGS: frozenset[str] = frozenset(
    {
        TAG_ITEM_NAME,
        TAG_ITEM_PRICE,
        TAG_ITEM_QUANTITY,
        TAG_ITEM_TOTAL,
        TAG_ITEM_VAT,
        TAG_ITEM_SUBJECT,
        TAG_ITEM_PAYMENT_METHOD,
        TAG_ITEM_MEASURE,
    }
)
"""Tags every object in the ``1059`` list carries."""

REQUIRED_CORRECTION_TAGS: frozenset[str] = frozenset({TAG_CORRECTION_TYPE, TAG_CORRECTION_BASIS})
"""Tags a correction receipt carries in addition to :data:`REQUIRED_TAGS`."""


def ffd_type_code(receipt_type: ReceiptType) -> int:
    """The tag 1054 value of a receipt type."""
    return RECEIPT_TYPE_CODES[receipt_type]


def to_ffd(receipt: Receipt, receipt_id: str) -> dict[str, Any]:
    """The FFD 1.2 document of ``receipt`` (no fiscal attributes), keyed by tag strings."""
    document: dict[str, Any] = {
        TAG_TYPE: ffd_type_code(receipt.type),
        TAG_ITEMS: [_item(item) for item in receipt.items],
        TAG_TOTAL: receipt.total,
        **receipt_vat_sums((item.vat, item.total) for item in receipt.items),
        **{tag: 0 for tag in PAYMENT_TAGS.values()},
        TAG_RECEIPT_EXTRA: receipt_id,
        TAG_FFD_VERSION: FFD_VERSION_1_2,
    }
    for payment in receipt.payments:
        document[PAYMENT_TAGS[payment.method]] += payment.amount
    document[TAG_CASH] -= receipt.change  # only cash gives change (``check_payments``)
    contact = receipt.customer_email or receipt.customer_phone
    optional = {
        TAG_CUSTOMER_CONTACT: contact,
        TAG_CASHIER: receipt.cashier_name,
        TAG_CASHIER_INN: receipt.cashier_inn,
    }
    document.update({tag: value for tag, value in optional.items() if value is not None})
    if receipt.correction is not None:
        basis: dict[str, Any] = {TAG_CORRECTED_DATE: receipt.correction.date.isoformat()}
        if receipt.correction.number is not None:
            basis[TAG_ORDER_NUMBER] = receipt.correction.number
        document[TAG_CORRECTION_TYPE] = CORRECTION_KIND_CODES[receipt.correction.kind]
        document[TAG_CORRECTION_BASIS] = basis
    return document


def _item(item: Item) -> dict[str, Any]:
    entry: dict[str, Any] = {
        TAG_ITEM_NAME: item.name,
        TAG_ITEM_PRICE: item.price,
        TAG_ITEM_QUANTITY: format_quantity(item.quantity_milli),
        TAG_ITEM_TOTAL: item.total,
        TAG_ITEM_VAT: VAT_CODES[item.vat],
        TAG_ITEM_SUBJECT: SUBJECT_CODES[item.subject],
        TAG_ITEM_PAYMENT_METHOD: ITEM_PAYMENT_CODES[item.payment_method],
        TAG_ITEM_MEASURE: MEASURE_PIECE,
    }
    vat_sum = line_vat(item.total, item.vat)
    if vat_sum is not None:
        entry[TAG_ITEM_VAT_SUM] = vat_sum
    if item.sku is not None:
        entry[TAG_ITEM_EXTRA] = item.sku
    if item.mark_code is not None:
        entry[TAG_ITEM_MARK_CODE] = item.mark_code
    return entry


def missing_tags(document: dict[str, Any]) -> list[str]:
    """Required tags absent from ``document`` (item tags as ``"1059[i].tag"``), sorted."""
    missing = sorted(REQUIRED_TAGS - document.keys())
    if TAG_CORRECTION_TYPE in document or TAG_CORRECTION_BASIS in document:
        missing += sorted(REQUIRED_CORRECTION_TAGS - document.keys())
    items = document.get(TAG_ITEMS)
    for index, item in enumerate(items if isinstance(items, list) else []):
        keys = item.keys() if isinstance(item, dict) else set()
        missing += [f"{TAG_ITEMS}[{index}].{tag}" for tag in sorted(REQUIRED_ITEM_TAGS - keys)]
    return missing


def vat_mismatches(document: dict[str, Any]) -> list[dict[str, Any]]:
    """Where ``document``'s VAT sums differ from those its lines give: each line's 1200 and
    the receipt-level tags (``kkt_adapter.domain.vat``), as ``{"tag", "expected", "found"}``
    (``None`` for an absent tag). Lines without a known rate or an integer amount are left
    to :func:`missing_tags`; a document without lines has nothing to check."""
    items = document.get(TAG_ITEMS)
    lines: list[tuple[Vat, int]] = []
    mismatches: list[dict[str, Any]] = []
    for index, item in enumerate(items if isinstance(items, list) else []):
        if not isinstance(item, dict):
            continue
        vat, amount = _rate(item.get(TAG_ITEM_VAT)), item.get(TAG_ITEM_TOTAL)
        if vat is None or type(amount) is not int:
            continue
        lines.append((vat, amount))
        expected, found = line_vat(amount, vat), item.get(TAG_ITEM_VAT_SUM)
        if not _same(expected, found):
            where = f"{TAG_ITEMS}[{index}].{TAG_ITEM_VAT_SUM}"
            mismatches.append({"tag": where, "expected": expected, "found": found})
    if not lines:
        return mismatches
    sums = receipt_vat_sums(lines)
    for tag in RECEIPT_SUM_TAGS:
        if not _same(sums.get(tag), document.get(tag)):
            mismatches.append({"tag": tag, "expected": sums.get(tag), "found": document.get(tag)})
    return mismatches


def _rate(code: object) -> Vat | None:
    return VATS_BY_CODE.get(code) if type(code) is int else None


def _same(expected: int | None, found: object) -> bool:
    # type() too: JSON true would otherwise equal 1 kopeck.
    return found is None if expected is None else type(found) is int and found == expected
