"""A receipt as the customer sees it, read from its fiscal document (what the KKT signed).

The copy is built from the FFD document, not from the POS's request: a receipt recovered from
the KKT's journal has only the document, and the document is what the FN holds.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from kkt_adapter.domain.ffd import (
    PAYMENT_TAGS,
    RECEIPT_TYPE_CODES,
    TAG_CASHIER,
    TAG_ITEM_NAME,
    TAG_ITEM_PRICE,
    TAG_ITEM_QUANTITY,
    TAG_ITEM_TOTAL,
    TAG_ITEM_VAT,
    TAG_ITEMS,
    TAG_TOTAL,
    TAG_TYPE,
    VAT_CODES,
)
from kkt_adapter.domain.fiscal import FfdDocument
from kkt_adapter.domain.money import Kopecks
from kkt_adapter.domain.receipt import PaymentMethod, ReceiptType, Vat

TAG_FD = "1040"
TAG_FN = "1041"
TAG_FP = "1077"
TAG_SHIFT = "1038"
TAG_NUMBER_IN_SHIFT = "1042"
TAG_DATETIME = "1012"
TAG_REGISTRATION = "1037"

TYPE_TITLES: dict[int, str] = {
    RECEIPT_TYPE_CODES[ReceiptType.SALE]: "Приход",
    RECEIPT_TYPE_CODES[ReceiptType.REFUND]: "Возврат прихода",
    RECEIPT_TYPE_CODES[ReceiptType.EXPENSE]: "Расход",
    RECEIPT_TYPE_CODES[ReceiptType.EXPENSE_REFUND]: "Возврат расхода",
}
VAT_TITLES: dict[int, str] = {
    VAT_CODES[Vat.VAT22]: "НДС 22%",
    VAT_CODES[Vat.VAT20]: "НДС 20%",
    VAT_CODES[Vat.VAT10]: "НДС 10%",
    VAT_CODES[Vat.VAT7]: "НДС 7%",
    VAT_CODES[Vat.VAT5]: "НДС 5%",
    VAT_CODES[Vat.VAT0]: "НДС 0%",
    VAT_CODES[Vat.NONE]: "Без НДС",
    VAT_CODES[Vat.VAT22_122]: "НДС 22/122",
    VAT_CODES[Vat.VAT20_120]: "НДС 20/120",
    VAT_CODES[Vat.VAT10_110]: "НДС 10/110",
    VAT_CODES[Vat.VAT7_107]: "НДС 7/107",
    VAT_CODES[Vat.VAT5_105]: "НДС 5/105",
}
PAYMENT_TITLES: dict[PaymentMethod, str] = {
    PaymentMethod.CASH: "Наличными",
    PaymentMethod.CARD: "Безналичными",
    PaymentMethod.PREPAID: "Предоплата (аванс)",
    PaymentMethod.CREDIT: "Постоплата (кредит)",
    PaymentMethod.OTHER: "Встречное предоставление",
}


@dataclass(frozen=True)
class CopyLine:
    name: str
    quantity: str
    price: Kopecks
    amount: Kopecks
    vat: str


@dataclass(frozen=True)
class ReceiptCopy:
    """What the customer's copy shows: lines, totals, payments and the fiscal attributes."""

    title: str
    lines: tuple[CopyLine, ...]
    total: Kopecks
    payments: tuple[tuple[str, Kopecks], ...]
    """(title, amount) of each payment method used."""
    fn: str
    fd: int
    fp: str
    shift: int
    number_in_shift: int
    datetime: str
    registration_number: str | None
    cashier: str | None


def receipt_copy(document: FfdDocument) -> ReceiptCopy:
    """The copy of a fiscalized receipt; ``KeyError`` if ``document`` lacks fiscal tags."""
    code = document[TAG_TYPE]
    return ReceiptCopy(
        title=TYPE_TITLES.get(code, f"Признак расчёта {code}"),
        lines=tuple(_line(item) for item in document.get(TAG_ITEMS, [])),
        total=Kopecks(int(document[TAG_TOTAL])),
        payments=tuple(
            (PAYMENT_TITLES[method], Kopecks(int(document[tag])))
            for method, tag in PAYMENT_TAGS.items()
            if document.get(tag)
        ),
        fn=str(document[TAG_FN]),
        fd=int(document[TAG_FD]),
        fp=str(document[TAG_FP]),
        shift=int(document[TAG_SHIFT]),
        number_in_shift=int(document[TAG_NUMBER_IN_SHIFT]),
        datetime=str(document[TAG_DATETIME]),
        registration_number=_text(document.get(TAG_REGISTRATION)),
        cashier=_text(document.get(TAG_CASHIER)),
    )


def _line(item: dict[str, Any]) -> CopyLine:
    vat = item.get(TAG_ITEM_VAT)
    return CopyLine(
        name=str(item.get(TAG_ITEM_NAME, "")),
        quantity=str(item.get(TAG_ITEM_QUANTITY, "")),
        price=Kopecks(int(item.get(TAG_ITEM_PRICE, 0))),
        amount=Kopecks(int(item.get(TAG_ITEM_TOTAL, 0))),
        vat=VAT_TITLES.get(vat, f"НДС код {vat}") if isinstance(vat, int) else "",
    )


def _text(value: object) -> str | None:
    return None if value is None or value == "" else str(value)
