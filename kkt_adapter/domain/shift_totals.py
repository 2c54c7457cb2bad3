"""A shift's figures (X and Z reports) from its documents: the one place they are added up.

Input: the shift's receipts as FFD documents (as fiscalized: tags 1054, 1020, the payment
tags, the items' 1199/1043/1200) and its cash operations (cash in and out, which are no fiscal
documents). Output: ``ShiftTotals``, per receipt type (``sale``, ``refund``, ``expense``,
``expense_refund``): the sum (1020), the count, the sum per payment method (named as the
receipt API names them: ``cash`` 1031, ``card`` 1081, ``prepaid`` 1215, ``credit`` 1216,
``other`` 1217), the turnover and VAT per rate; the cash in and out; and the cash in the
drawer.

The drawer: the cash part of each receipt (tag 1031, change already left out) comes in on a
sale and an expense refund (the buyer or the supplier pays the shop) and goes out on a refund
and an expense (the shop pays); cash in adds, cash out takes away. So ``drawer_cash`` = cash of
sales - cash of refunds - cash of expenses + cash of expense refunds + cash in - cash out.
Correction receipts count under their type (1054), as the register's counters do.

VAT per rate is summed from the lines (1199, 1043, 1200), not from the receipt-level tags
1102-1107: those merge 20 % and 22 % (and have no tag at all for 5 %, 7 %, 5/105, 7/107, see
``domain/vat.py``), while the lines name each rate. Per receipt type, the lines' VAT of the
rates filed under one receipt-level tag adds up to that tag (the OFD emulator checks it per
receipt), so nothing is lost by reading the lines. Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from kkt_adapter.domain.ffd import RECEIPT_TYPE_CODES, VATS_BY_CODE
from kkt_adapter.domain.money import Kopecks
from kkt_adapter.domain.receipt import PaymentMethod, ReceiptType

NO_MONEY = Kopecks(0)

TYPES_BY_CODE: dict[int, ReceiptType] = {code: kind for kind, code in RECEIPT_TYPE_CODES.items()}
PAYMENT_TAGS: dict[PaymentMethod, str] = {
    PaymentMethod.CASH: "1031",
    PaymentMethod.CARD: "1081",
    PaymentMethod.PREPAID: "1215",
    PaymentMethod.CREDIT: "1216",
    PaymentMethod.OTHER: "1217",
}
"""Payment method -> its FFD sum tag."""
CASH_SIGN: dict[ReceiptType, int] = {
    ReceiptType.SALE: 1,
    ReceiptType.REFUND: -1,
    ReceiptType.EXPENSE: -1,
    ReceiptType.EXPENSE_REFUND: 1,
}
"""Which way a receipt's cash part (1031) moves the drawer."""


class CashKind(StrEnum):
    """A cash operation: cash put into the drawer (внесение) or taken out (выплата)."""

    CASH_IN = "cash_in"
    CASH_OUT = "cash_out"


@dataclass(frozen=True)
class CashMovement:
    """A sum of cash operations of one kind and how many there were."""

    amount: Kopecks = NO_MONEY
    count: int = 0


@dataclass(frozen=True)
class VatFigures:
    """One rate's turnover (sum of the lines' 1043) and VAT (sum of their 1200)."""

    amount: Kopecks
    vat: Kopecks


@dataclass(frozen=True)
class ShiftTotals:
    """A shift's figures; every mapping is keyed by receipt type first."""

    receipts: int
    totals: dict[str, Kopecks]
    counts: dict[str, int]
    payments: dict[str, dict[str, Kopecks]]
    vat: dict[str, dict[str, VatFigures]]
    cash_in: CashMovement = field(default_factory=CashMovement)
    cash_out: CashMovement = field(default_factory=CashMovement)
    drawer_cash: Kopecks = NO_MONEY


def shift_totals(
    documents: Iterable[Mapping[str, Any]],
    cash_operations: Iterable[tuple[CashKind, int]] = (),
) -> ShiftTotals:
    """The figures of a shift with these receipts (FFD documents) and cash operations
    (``(kind, amount in kopecks)``). Every receipt type and payment method is present, zero
    when unused; the VAT map lists only the rates that occur."""
    totals = dict.fromkeys(ReceiptType, 0)
    counts = dict.fromkeys(ReceiptType, 0)
    payments = {kind: dict.fromkeys(PaymentMethod, 0) for kind in ReceiptType}
    vat: dict[ReceiptType, dict[str, list[int]]] = {kind: {} for kind in ReceiptType}
    drawer = 0
    for document in documents:
        kind = TYPES_BY_CODE[int(document["1054"])]
        totals[kind] += int(document["1020"])
        counts[kind] += 1
        for method, tag in PAYMENT_TAGS.items():
            payments[kind][method] += int(document.get(tag) or 0)
        drawer += CASH_SIGN[kind] * int(document.get("1031") or 0)
        for line in document.get("1059") or ():
            rate = VATS_BY_CODE[int(line["1199"])]
            figures = vat[kind].setdefault(rate.value, [0, 0])
            figures[0] += int(line["1043"])
            figures[1] += int(line.get("1200") or 0)
    moved = {CashKind.CASH_IN: [0, 0], CashKind.CASH_OUT: [0, 0]}
    for cash_kind, amount in cash_operations:
        moved[cash_kind][0] += amount
        moved[cash_kind][1] += 1
    drawer += moved[CashKind.CASH_IN][0] - moved[CashKind.CASH_OUT][0]
    return ShiftTotals(
        receipts=sum(counts.values()),
        totals={kind.value: Kopecks(totals[kind]) for kind in ReceiptType},
        counts={kind.value: counts[kind] for kind in ReceiptType},
        payments={
            kind.value: {method.value: Kopecks(payments[kind][method]) for method in PaymentMethod}
            for kind in ReceiptType
        },
        vat={
            kind.value: {
                rate: VatFigures(Kopecks(amount), Kopecks(tax))
                for rate, (amount, tax) in sorted(vat[kind].items())
            }
            for kind in ReceiptType
        },
        cash_in=CashMovement(Kopecks(moved[CashKind.CASH_IN][0]), moved[CashKind.CASH_IN][1]),
        cash_out=CashMovement(Kopecks(moved[CashKind.CASH_OUT][0]), moved[CashKind.CASH_OUT][1]),
        drawer_cash=Kopecks(drawer),
    )
