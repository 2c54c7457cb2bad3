"""What the tests share: fakes at the package's edges and test-only helpers."""

from __future__ import annotations

from datetime import date
from typing import Any

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
