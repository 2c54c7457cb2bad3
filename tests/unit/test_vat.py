"""VAT sums of a receipt: tag 1200 per line, the receipt-level tags per rate, and the check."""

from __future__ import annotations

import copy
from datetime import date
from fractions import Fraction
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kkt_adapter.domain.ffd import to_ffd, vat_mismatches
from kkt_adapter.domain.money import MAX_MONEY, Kopecks
from kkt_adapter.domain.receipt import (
    Item,
    ItemPaymentMethod,
    Payment,
    PaymentMethod,
    Receipt,
    ReceiptType,
    Subject,
    Vat,
)
from kkt_adapter.domain.vat import (
    RATE_PERCENT,
    RECEIPT_AMOUNT_TAGS,
    RECEIPT_SUM_TAGS,
    RECEIPT_VAT_TAGS,
    line_vat,
    receipt_vat_sums,
)


def half_up(value: Fraction) -> int:
    return int((value + Fraction(1, 2)).__floor__())


@pytest.mark.parametrize(
    ("vat", "amount", "expected"),
    [
        (Vat.VAT22, 12200, 2200),
        (Vat.VAT22, 100, 18),  # 18.03
        (Vat.VAT22, 799000, 144082),  # 144081.97
        (Vat.VAT22_122, 12200, 2200),
        (Vat.VAT22_122, 1, 0),  # 0.18
        (Vat.VAT20, 12000, 2000),
        (Vat.VAT20, 3, 1),  # exactly 0.5: half-up
        (Vat.VAT20, 9, 2),  # exactly 1.5
        (Vat.VAT20_120, 15, 3),  # exactly 2.5
        (Vat.VAT10, 11000, 1000),
        (Vat.VAT10, 2363, 215),  # 214.82
        (Vat.VAT10_110, 6, 1),  # 0.545
        (Vat.VAT10_110, 5, 0),  # 0.4545
        (Vat.VAT7, 10700, 700),
        (Vat.VAT7, 100, 7),  # 6.54
        (Vat.VAT7_107, 8, 1),  # 0.523
        (Vat.VAT5, 10500, 500),
        (Vat.VAT5, 21, 1),  # exactly 1
        (Vat.VAT5_105, 10, 0),  # 0.476
        (Vat.VAT0, 10000, None),
        (Vat.NONE, 10000, None),
    ],
)
def test_line_vat_of_each_rate(vat: Vat, amount: int, expected: int | None) -> None:
    assert line_vat(amount, vat) == expected


@pytest.mark.parametrize(
    ("vat", "tag"),
    [
        (Vat.VAT22, "1102"),
        (Vat.VAT20, "1102"),
        (Vat.VAT10, "1103"),
        (Vat.VAT0, "1104"),
        (Vat.NONE, "1105"),
        (Vat.VAT22_122, "1106"),
        (Vat.VAT20_120, "1106"),
        (Vat.VAT10_110, "1107"),
        (Vat.VAT5, None),  # no receipt-level tag found: docs/decisions.md
        (Vat.VAT7, None),
        (Vat.VAT5_105, None),
        (Vat.VAT7_107, None),
    ],
)
def test_receipt_tag_of_each_rate(vat: Vat, tag: str | None) -> None:
    sums = receipt_vat_sums([(vat, 10000)])
    if tag is None:
        assert sums == {}
    elif vat in RECEIPT_AMOUNT_TAGS:
        assert sums == {tag: 10000}  # 1104 and 1105 sum the amounts
    else:
        assert sums == {tag: line_vat(10000, vat)}


def test_receipt_without_lines_has_no_sums() -> None:
    assert receipt_vat_sums([]) == {}


lines_strategy = st.lists(
    st.tuples(st.sampled_from(list(Vat)), st.integers(min_value=1, max_value=MAX_MONEY)),
    max_size=30,
)


@given(st.sampled_from(list(Vat)), st.integers(min_value=0, max_value=MAX_MONEY))
def test_line_vat_is_amount_times_r_over_100_plus_r_half_up(vat: Vat, amount: int) -> None:
    vat_sum = line_vat(amount, vat)
    percent = RATE_PERCENT.get(vat)
    if percent is None:
        assert vat_sum is None
    else:
        assert type(vat_sum) is int
        assert vat_sum == half_up(Fraction(amount * percent, 100 + percent))


@given(lines_strategy)
def test_receipt_sums_are_the_sums_of_the_line_vats(lines: list[tuple[Vat, int]]) -> None:
    expected: dict[str, int] = {}
    for vat, amount in lines:
        if vat in RECEIPT_VAT_TAGS:
            vat_sum = line_vat(amount, vat)
            assert vat_sum is not None
            tag = RECEIPT_VAT_TAGS[vat]
            expected[tag] = expected.get(tag, 0) + vat_sum
        elif vat in RECEIPT_AMOUNT_TAGS:
            tag = RECEIPT_AMOUNT_TAGS[vat]
            expected[tag] = expected.get(tag, 0) + amount
    sums = receipt_vat_sums(lines)
    assert sums == expected
    assert all(type(value) is int for value in sums.values())
    assert list(sums) == [tag for tag in RECEIPT_SUM_TAGS if tag in sums]


def make_receipt(lines: list[tuple[Vat, int]]) -> Receipt:
    items = tuple(
        Item(
            f"item {i}",
            Kopecks(amount),
            1000,
            vat,
            Subject.GOODS,
            ItemPaymentMethod.FULL_PAYMENT,
            None,
            None,
        )
        for i, (vat, amount) in enumerate(lines)
    )
    total = Kopecks(sum(amount for _, amount in lines))
    return Receipt(
        pos_id="POS-001",
        type=ReceiptType.SALE,
        items=items,
        payments=(Payment(PaymentMethod.CARD, total),),
        customer_email=None,
        customer_phone=None,
        cashier_name=None,
        cashier_inn=None,
        correction=None,
        dated=date(2026, 3, 2),
    )


@given(lines_strategy.filter(bool))
def test_every_document_to_ffd_builds_has_matching_vat_sums(lines: list[tuple[Vat, int]]) -> None:
    document = to_ffd(make_receipt(lines), "r-1")
    assert vat_mismatches(document) == []
    for item, (vat, amount) in zip(document["1059"], lines, strict=True):
        assert item.get("1200") == line_vat(amount, vat)
    for tag, value in receipt_vat_sums(lines).items():
        assert document[tag] == value


MIXED = [(Vat.VAT22, 12200), (Vat.VAT22, 100), (Vat.VAT10, 2363), (Vat.NONE, 500), (Vat.VAT5, 99)]


def mixed_document() -> dict[str, Any]:
    return copy.deepcopy(to_ffd(make_receipt(MIXED), "r-1"))


def test_mixed_receipt_sums() -> None:
    document = mixed_document()
    assert {tag: document[tag] for tag in RECEIPT_SUM_TAGS if tag in document} == {
        "1102": 2200 + 18,
        "1103": 215,
        "1105": 500,
    }
    assert [item.get("1200") for item in document["1059"]] == [2200, 18, 215, None, 5]


@pytest.mark.parametrize(
    ("change", "where", "expected", "found"),
    [
        (lambda d: d.update({"1102": d["1102"] + 1}), "1102", 2218, 2219),
        (lambda d: d.pop("1103"), "1103", 215, None),
        (lambda d: d.update({"1104": 0}), "1104", None, 0),
        (lambda d: d.update({"1105": True}), "1105", 500, True),
        (lambda d: d["1059"][1].update({"1200": 19}), "1059[1].1200", 18, 19),
        (lambda d: d["1059"][0].pop("1200"), "1059[0].1200", 2200, None),
        (lambda d: d["1059"][3].update({"1200": 0}), "1059[3].1200", None, 0),
    ],
)
def test_a_wrong_vat_sum_is_named(change: Any, where: str, expected: Any, found: Any) -> None:
    document = mixed_document()
    change(document)
    assert vat_mismatches(document) == [{"tag": where, "expected": expected, "found": found}]


def test_a_line_whose_rate_changed_shows_in_its_1200_and_the_receipt_sums() -> None:
    document = mixed_document()
    document["1059"][2]["1199"] = 1  # 10 % -> 20 %, sums left as they were
    assert [m["tag"] for m in vat_mismatches(document)] == ["1059[2].1200", "1102", "1103"]


def test_lines_the_missing_tags_check_reports_are_skipped() -> None:
    document = mixed_document()
    document["1059"] = [{"1030": "no rate"}, "not an object"]
    # No line can be read, so there is nothing to sum: the missing tags check names them.
    assert vat_mismatches(document) == []
