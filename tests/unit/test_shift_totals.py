"""The shift arithmetic (``domain/shift_totals.py``): per type, per payment method, VAT per
rate, cash in and out, and the drawer."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from kkt_adapter.domain.ffd import RECEIPT_TYPE_CODES, VAT_CODES
from kkt_adapter.domain.receipt import ReceiptType, Vat
from kkt_adapter.domain.shift_totals import CashKind, CashMovement, VatFigures, shift_totals
from kkt_adapter.domain.vat import RECEIPT_VAT_TAGS, line_vat, receipt_vat_sums


def document(
    kind: ReceiptType,
    lines: list[tuple[Vat, int]],
    *,
    cash: int = 0,
    card: int = 0,
    prepaid: int = 0,
) -> dict[str, Any]:
    """A fiscalized receipt's tags as the emulator keeps them."""
    items = []
    for vat, amount in lines:
        item: dict[str, Any] = {"1199": VAT_CODES[vat], "1043": amount}
        vat_sum = line_vat(amount, vat)
        if vat_sum is not None:
            item["1200"] = vat_sum
        items.append(item)
    total = sum(amount for _, amount in lines)
    return {
        "1054": RECEIPT_TYPE_CODES[kind],
        "1020": total,
        "1059": items,
        "1031": cash,
        "1081": card,
        "1215": prepaid,
        "1216": 0,
        "1217": 0,
        **receipt_vat_sums(lines),
    }


def test_an_empty_shift_has_every_type_and_method_at_zero() -> None:
    totals = shift_totals([])
    assert totals.receipts == 0 and totals.drawer_cash == 0
    assert totals.totals == dict.fromkeys(("sale", "refund", "expense", "expense_refund"), 0)
    assert totals.payments["sale"] == dict.fromkeys(
        ("cash", "card", "prepaid", "credit", "other"), 0
    )
    assert totals.vat["sale"] == {}
    assert totals.cash_in == CashMovement(0, 0) == totals.cash_out


def test_sums_per_type_method_and_rate_and_the_drawer() -> None:
    docs = [
        document(ReceiptType.SALE, [(Vat.VAT22, 12_200)], cash=12_200),
        document(ReceiptType.SALE, [(Vat.VAT10, 11_000), (Vat.NONE, 500)], cash=1_500, card=10_000),
        document(ReceiptType.REFUND, [(Vat.VAT22, 12_200)], cash=12_200),
        document(ReceiptType.EXPENSE, [(Vat.VAT0, 3_000)], cash=3_000),
        document(ReceiptType.EXPENSE_REFUND, [(Vat.VAT0, 1_000)], cash=1_000),
        document(ReceiptType.SALE, [(Vat.VAT22, 5_000)], prepaid=5_000),
    ]
    ops = [(CashKind.CASH_IN, 50_000), (CashKind.CASH_IN, 1_000), (CashKind.CASH_OUT, 20_000)]
    totals = shift_totals(docs, ops)
    assert totals.receipts == 6
    assert totals.counts == {"sale": 3, "refund": 1, "expense": 1, "expense_refund": 1}
    assert totals.totals["sale"] == 12_200 + 11_500 + 5_000
    assert totals.payments["sale"]["cash"] == 13_700
    assert totals.payments["sale"]["card"] == 10_000
    assert totals.payments["sale"]["prepaid"] == 5_000
    assert totals.vat["sale"]["vat22"] == VatFigures(17_200, 2_200 + 902)
    assert totals.vat["sale"]["vat10"] == VatFigures(11_000, 1_000)
    assert totals.vat["sale"]["none"] == VatFigures(500, 0)
    assert totals.vat["refund"] == {"vat22": VatFigures(12_200, 2_200)}
    assert totals.cash_in == CashMovement(51_000, 2) and totals.cash_out == CashMovement(20_000, 1)
    # 13 700 sales - 12 200 refund - 3 000 expense + 1 000 expense refund + 51 000 - 20 000
    assert totals.drawer_cash == 30_500


amounts = st.integers(min_value=1, max_value=10**9)
receipt_docs = st.builds(
    lambda kind, lines, cash_share: document(
        kind, lines, cash=sum(a for _, a in lines) * cash_share // 100,
        card=sum(a for _, a in lines) - sum(a for _, a in lines) * cash_share // 100,
    ),
    st.sampled_from(list(ReceiptType)),
    st.lists(st.tuples(st.sampled_from(list(Vat)), amounts), min_size=1, max_size=4),
    st.integers(min_value=0, max_value=100),
)  # fmt: skip


@settings(max_examples=200)
@given(st.lists(receipt_docs, max_size=12))
def test_vat_per_rate_adds_up_to_the_receipt_level_tags(docs: list[dict[str, Any]]) -> None:
    totals = shift_totals(docs)
    for kind in ReceiptType:
        mine = [d for d in docs if d["1054"] == RECEIPT_TYPE_CODES[kind]]
        for tag in set(RECEIPT_VAT_TAGS.values()):
            by_tag = sum(
                figures.vat
                for rate, figures in totals.vat[kind.value].items()
                if RECEIPT_VAT_TAGS.get(Vat(rate)) == tag
            )
            assert by_tag == sum(d.get(tag, 0) for d in mine)
        assert totals.totals[kind.value] == sum(f.amount for f in totals.vat[kind.value].values())


@settings(max_examples=200)
@given(
    st.lists(receipt_docs, max_size=12),
    st.lists(st.tuples(st.sampled_from(list(CashKind)), amounts), max_size=8),
)
def test_the_drawer_is_the_signed_sum_of_cash(
    docs: list[dict[str, Any]], ops: list[tuple[CashKind, int]]
) -> None:
    totals = shift_totals(docs, ops)
    signs = {1: 1, 2: -1, 3: -1, 4: 1}
    expected = sum(signs[d["1054"]] * d["1031"] for d in docs) + sum(
        amount if kind is CashKind.CASH_IN else -amount for kind, amount in ops
    )
    assert totals.drawer_cash == expected
    assert totals.receipts == len(docs) == sum(totals.counts.values())
