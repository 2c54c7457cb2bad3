"""The receipt domain: money, the validated receipt, its FFD 1.2 document, the fiscal result
and sign. No I/O and no request models here."""

from kkt_adapter.domain.ffd import REQUIRED_TAGS, ffd_type_code, missing_tags, to_ffd
from kkt_adapter.domain.money import (
    MAX_MONEY,
    MAX_QUANTITY_MILLI,
    Kopecks,
    format_money,
    format_quantity,
    item_total,
    parse_money,
    parse_quantity,
)
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

__all__ = [
    "MAX_MONEY",
    "MAX_QUANTITY_MILLI",
    "REQUIRED_TAGS",
    "Correction",
    "Item",
    "ItemPaymentMethod",
    "Kopecks",
    "Payment",
    "PaymentMethod",
    "Receipt",
    "ReceiptType",
    "Subject",
    "Vat",
    "check_rules",
    "ffd_type_code",
    "format_money",
    "format_quantity",
    "item_total",
    "missing_tags",
    "parse_money",
    "parse_quantity",
    "receipt_fingerprint",
    "receipt_to_json",
    "to_ffd",
]
