"""Money and quantity parsing, rounding and formatting."""

from decimal import ROUND_HALF_UP, Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kkt_adapter.domain.money import (
    MAX_MONEY,
    MAX_QUANTITY_MILLI,
    format_money,
    format_quantity,
    item_total,
    parse_money,
    parse_quantity,
)
from kkt_adapter.errors import ValidationError


@pytest.mark.parametrize(
    ("value", "kopecks"),
    [
        ("7990.00", 799000),
        ("7990", 799000),
        ("0.5", 50),
        ("0.01", 1),
        ("10.1", 1010),
        (10, 1000),
        (Decimal("12.34"), 1234),
        (Decimal("1E+2"), 10000),
        ("10000000000.00", MAX_MONEY),
    ],
)
def test_parse_money_accepts(value: object, kopecks: int) -> None:
    assert parse_money(value, "price") == kopecks


@pytest.mark.parametrize(
    "value",
    [
        "0",
        "0.00",
        "-1",
        0,
        -5,
        "1.001",
        "1e3",
        "1E3",
        "",
        " ",
        " 1.00",
        "1.00 ",
        "1.00\n",
        "1,00",
        ".5",
        "5.",
        "+5",
        "NaN",
        "Infinity",
        "١٢",
        "10000000000.01",
        10**11,
        True,
        False,
        1.5,
        7990.0,
        float("nan"),
        Decimal("NaN"),
        Decimal("Infinity"),
        Decimal("0.001"),
        Decimal("1E+999999"),
        Decimal("1.0000000000000000000000000000001"),  # past the decimal context's 28 digits
        Decimal("-0.0"),
        None,
        [],
        {},
    ],
)
def test_parse_money_rejects(value: object) -> None:
    with pytest.raises(ValidationError) as info:
        parse_money(value, "items[0].price")
    assert info.value.code == "invalid_money"
    assert info.value.details["field"] == "items[0].price"
    assert info.value.details["reason"]


def test_parse_money_float_error_says_to_send_a_string() -> None:
    with pytest.raises(ValidationError) as info:
        parse_money(7990.5, "amount")
    assert '"7990.00"' in info.value.details["reason"]


@pytest.mark.parametrize(
    ("value", "milli"),
    [("1", 1000), ("1.5", 1500), ("0.001", 1), (3, 3000), ("99999.999", MAX_QUANTITY_MILLI)],
)
def test_parse_quantity_accepts(value: object, milli: int) -> None:
    assert parse_quantity(value, "quantity") == milli


@pytest.mark.parametrize(
    "value", ["0", "0.0001", "100000", "100000.000", 100000, "-1", "1e2", 1.5, True, "", None]
)
def test_parse_quantity_rejects(value: object) -> None:
    with pytest.raises(ValidationError) as info:
        parse_quantity(value, "items[2].quantity")
    assert info.value.code == "invalid_quantity"
    assert info.value.details["field"] == "items[2].quantity"


@pytest.mark.parametrize(
    ("price", "milli", "total"),
    [
        (799000, 1000, 799000),
        (100, 1500, 150),
        (1, 500, 1),  # 0.5 kopeck rounds half up
        (1, 499, 0),
        (333, 333, 111),  # 110.889 -> 111
        (-1, 500, -1),  # half away from zero, like Decimal ROUND_HALF_UP
    ],
)
def test_item_total_rounds_half_up(price: int, milli: int, total: int) -> None:
    assert item_total(price, milli) == total  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("amount", "text"), [(799000, "7990.00"), (1, "0.01"), (0, "0.00"), (-250, "-2.50")]
)
def test_format_money(amount: int, text: str) -> None:
    assert format_money(amount) == text


def test_format_quantity() -> None:
    assert [format_quantity(q) for q in (1000, 1500, 1)] == ["1.000", "1.500", "0.001"]


@given(st.integers(min_value=1, max_value=MAX_MONEY))
def test_format_then_parse_round_trips(kopecks: int) -> None:
    assert parse_money(format_money(kopecks), "x") == kopecks


@given(st.integers(min_value=1, max_value=MAX_QUANTITY_MILLI))
def test_quantity_format_then_parse_round_trips(milli: int) -> None:
    assert parse_quantity(format_quantity(milli), "x") == milli


@given(
    st.integers(min_value=1, max_value=MAX_MONEY),
    st.integers(min_value=1, max_value=MAX_QUANTITY_MILLI),
)
def test_item_total_matches_decimal_half_up(price: int, milli: int) -> None:
    expected = (Decimal(price) * Decimal(milli) / 1000).quantize(Decimal(1), ROUND_HALF_UP)
    assert item_total(price, milli) == int(expected)  # type: ignore[arg-type]


@given(st.text(max_size=20))
def test_parse_money_on_any_text_returns_kopecks_or_invalid_money(text: str) -> None:
    try:
        result = parse_money(text, "x")
    except ValidationError as exc:
        assert exc.code == "invalid_money"
    else:
        assert 0 < result <= MAX_MONEY
        assert Decimal(text) * 100 == result


def test_a_long_decimal_is_judged_on_its_digits_not_rounded() -> None:
    """Scaling in the decimal context would round 33 digits to 28 and accept it as 1.000."""
    with pytest.raises(ValidationError):
        parse_quantity(Decimal("1.000000000000000000000000000000001"), "quantity")
    assert parse_quantity(Decimal("1.5000000000000000000000000000000"), "quantity") == 1500
    assert parse_money(Decimal("100.00000000000000000000000000000000"), "price") == 10000
