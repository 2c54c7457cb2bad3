"""Receipt request validation: codes, field paths, business rules, never a stray exception."""

import copy
import json
from datetime import date
from typing import Any

import pytest
from fakes import receipt_from_json
from hypothesis import given, settings
from hypothesis import strategies as st

from kkt_adapter.api.schemas import ReceiptIn, parse_receipt
from kkt_adapter.domain.receipt import (
    Correction,
    Receipt,
    ReceiptType,
    Vat,
    receipt_fingerprint,
    receipt_to_json,
)
from kkt_adapter.errors import ValidationError

TODAY = date(2026, 3, 2)


def example() -> dict[str, Any]:
    return copy.deepcopy(ReceiptIn.model_json_schema()["example"])


def parse(body: dict[str, Any] | bytes, today: date = TODAY) -> Receipt:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return parse_receipt(raw, today)


def error_of(body: dict[str, Any] | bytes, today: date = TODAY) -> ValidationError:
    with pytest.raises(ValidationError) as info:
        parse(body, today)
    return info.value


def test_design_example_parses() -> None:
    receipt = parse(example())
    assert receipt.type is ReceiptType.SALE
    assert receipt.total == 799000
    assert receipt.items[0].vat is Vat.VAT22
    assert receipt.items[0].quantity_milli == 1000
    assert receipt.payments[0].amount == 799000
    assert receipt.customer_email == "buyer@example.com"
    assert receipt.cashier_name == "Ivanova A."
    assert receipt.cashier_inn is None
    assert receipt.dated == TODAY


def test_defaults_for_subject_and_payment_method() -> None:
    body = example()
    del body["items"][0]["subject"], body["items"][0]["payment_method"], body["customer"]
    receipt = parse(body)
    assert (receipt.items[0].subject, receipt.items[0].payment_method) == (
        "goods",
        "full_payment",
    )
    assert receipt.customer_email is None


def test_json_integer_money_means_rubles() -> None:
    body = example()
    body["items"][0]["price"] = 7990
    body["items"][0]["quantity"] = 1
    body["payments"][0]["amount"] = 7990
    assert parse(body).total == 799000


def test_json_numbers_with_a_fraction_are_decimals() -> None:
    """What Python's json module writes for a price: 100.0. Read from its text, never a float."""
    body = example()
    body["items"][0].update(price=7990.0, quantity=1.0)
    body["payments"][0]["amount"] = 7990.00
    assert json.dumps(body).count("7990.0") == 2
    assert parse(body).total == 799000
    body["items"][0].update(price=0.99, quantity=1.5)  # 1.485 -> 1.49
    body["payments"][0]["amount"] = 1.49
    receipt = parse(body)
    assert (receipt.total, receipt.items[0].quantity_milli) == (149, 1500)


@pytest.mark.parametrize(
    ("text", "kopecks"),
    [("1e2", 10000), ("1E+2", 10000), ("12.5e1", 12500), ("1.5e-1", 15), ("100.000", 10000)],
)
def test_json_number_exponents_are_exact_decimals(text: str, kopecks: int) -> None:
    """An exponent is taken when the number it writes is exact within the digits rule."""
    body = example()
    body["payments"][0]["amount"] = f"{kopecks // 100}.{kopecks % 100:02d}"
    raw = json.dumps(body).replace('"7990.00"', text, 1).encode()
    assert parse_receipt(raw, TODAY).items[0].price == kopecks


def test_a_number_beyond_float_precision_is_not_rounded_into_range() -> None:
    """As a float, 100.0000000000000001 is 100.0; as a decimal it has 16 fraction digits."""
    raw = json.dumps(example()).replace('"7990.00"', "7990.0000000000000001").encode()
    error = error_of(raw)
    assert (error.code, error.details["field"]) == ("invalid_money", "items[0].price")


def test_a_json_number_in_a_string_does_not_change_the_parse() -> None:
    """A name holding ': 1.5' sends the body the decimal way; the receipt is the same."""
    body = example()
    body["items"][0]["name"] = "Lens: 1.5, 2e3"
    assert parse(body).items[0].name == "Lens: 1.5, 2e3"


def test_quantity_times_price_rounds_and_must_match_payments() -> None:
    body = example()
    body["items"][0].update(price="0.99", quantity="1.5")  # 1.485 -> 1.49
    body["payments"][0]["amount"] = "1.49"
    assert parse(body).total == 149


def _mutated(path: list[Any], value: Any) -> dict[str, Any]:
    body = example()
    target = body
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    return body


@pytest.mark.parametrize(
    ("body", "code", "field"),
    [
        (b"{not json", "malformed_json", "body"),
        (b"", "malformed_json", "body"),
        (b"[1, 2]", "malformed_json", "body"),
        (b'"a string"', "malformed_json", "body"),
        (b"\xff\xfe\x00", "malformed_json", "body"),
        (_mutated(["extra"], 1), "unknown_field", "extra"),
        (_mutated(["items", 0, "colour"], "red"), "unknown_field", "items[0].colour"),
        (_mutated(["customer", "fax"], "1"), "unknown_field", "customer.fax"),
        (_mutated(["pos_id"], 5), "invalid_type", "pos_id"),
        (_mutated(["items"], {}), "invalid_type", "items"),
        (_mutated(["items", 0], "x"), "invalid_type", "items[0]"),
        (_mutated(["items", 0, "name"], None), "invalid_type", "items[0].name"),
        (_mutated(["pos_id"], ""), "invalid_value", "pos_id"),
        (_mutated(["pos_id"], "p" * 65), "invalid_value", "pos_id"),
        (_mutated(["items", 0, "name"], "n" * 129), "invalid_value", "items[0].name"),
        (_mutated(["items", 0, "name"], "   "), "invalid_value", "items[0].name"),
        (_mutated(["items", 0, "sku"], "s" * 65), "invalid_value", "items[0].sku"),
        (_mutated(["items", 0, "mark_code"], "m" * 257), "invalid_value", "items[0].mark_code"),
        (_mutated(["items", 0, "subject"], "gold"), "invalid_value", "items[0].subject"),
        (_mutated(["payments", 0, "method"], "cheque"), "invalid_value", "payments[0].method"),
        (_mutated(["customer", "email"], "not-an-email"), "invalid_value", "customer.email"),
        (_mutated(["customer", "phone"], "12"), "invalid_value", "customer.phone"),
        (_mutated(["cashier", "inn"], "12345"), "invalid_value", "cashier.inn"),
        (_mutated(["type"], "sell"), "invalid_receipt_type", "type"),
        (_mutated(["items", 0, "vat"], "vat18"), "invalid_vat", "items[0].vat"),
        (_mutated(["items", 0, "price"], "7990.001"), "invalid_money", "items[0].price"),
        (_mutated(["items", 0, "price"], "-1"), "invalid_money", "items[0].price"),
        (
            b'{"pos_id": "P", "type": "sale", "items": [{"name": "n", "price": 100.005,'
            b' "quantity": 1, "vat": "vat22"}], "payments": [{"method": "cash", "amount": 100}]}',
            "invalid_money",
            "items[0].price",
        ),
        (
            b'{"pos_id": "P", "type": "sale", "items": [{"name": "n", "price": 100,'
            b' "quantity": 1.2345, "vat": "vat22"}],'
            b' "payments": [{"method": "cash", "amount": 100}]}',
            "invalid_quantity",
            "items[0].quantity",
        ),
        (_mutated(["items", 0, "price"], 1e-3), "invalid_money", "items[0].price"),
        (_mutated(["items", 0, "price"], -7990.5), "invalid_money", "items[0].price"),
        (_mutated(["pos_id"], 1.5), "invalid_type", "pos_id"),
        (_mutated(["items", 0, "line"], 1.5), "invalid_type", "items[0].line"),
        (_mutated(["items", 0, "vat"], 1.5), "invalid_vat", "items[0].vat"),
        (_mutated(["payments", 0, "amount"], "0"), "invalid_money", "payments[0].amount"),
        (_mutated(["items", 0, "quantity"], "0"), "invalid_quantity", "items[0].quantity"),
        (_mutated(["items", 0, "quantity"], "1000000"), "invalid_quantity", "items[0].quantity"),
        (_mutated(["items"], []), "empty_items", "items"),
        (_mutated(["payments"], []), "empty_payments", "payments"),
        (_mutated(["payments", 0, "amount"], "7989.99"), "payment_mismatch", "payments"),
        (_mutated(["payments", 0, "amount"], "7990.01"), "non_cash_overpayment", "payments"),
    ],
)
def test_error_codes_and_field_paths(body: dict[str, Any] | bytes, code: str, field: str) -> None:
    error = error_of(body)
    assert (error.code, error.details["field"]) == (code, field)
    assert error.details["reason"]


def test_missing_field() -> None:
    body = example()
    del body["items"][0]["price"]
    error = error_of(body)
    assert (error.code, error.details["field"]) == ("missing_field", "items[0].price")


def test_all_errors_are_listed_in_details() -> None:
    error = error_of(b"{}")
    assert error.code == "missing_field"
    fields = [e["field"] for e in error.details["errors"]]
    assert fields == ["pos_id", "type", "items", "payments"]
    assert all(e["code"] == "missing_field" for e in error.details["errors"])


def test_too_many_items_and_payments() -> None:
    many = example()
    many["items"] = many["items"] * 101
    assert error_of(many).details["field"] == "items"
    assert error_of(many).code == "invalid_value"
    body = example()
    body["payments"] = [{"method": "cash", "amount": "1"}] * 11
    assert error_of(body).code == "invalid_value"


def test_payment_mismatch_details_carry_both_sums() -> None:
    error = error_of(_mutated(["payments", 0, "amount"], "7000"))
    assert error.code == "payment_mismatch"
    assert error.details["items_total"] == "7990.00"  # rubles, never kopecks
    assert error.details["payments_total"] == "7000.00"


def test_item_total_rounding_to_zero_is_refused() -> None:
    body = _mutated(["items", 0, "price"], "0.01")
    body["items"][0]["quantity"] = "0.001"
    assert error_of(body).code == "invalid_quantity"


def test_vat20_accepted_on_last_day_of_2025() -> None:
    body = _mutated(["items", 0, "vat"], "vat20")
    assert parse(body, date(2025, 12, 31)).items[0].vat is Vat.VAT20


@pytest.mark.parametrize(("old", "new"), [("vat20", "vat22"), ("vat20_120", "vat22_122")])
def test_retired_vat_refused_from_2026(old: str, new: str) -> None:
    error = error_of(_mutated(["items", 0, "vat"], old), date(2026, 1, 1))
    assert error.code == "vat_rate_retired"
    assert error.details["field"] == "items[0].vat"
    assert new in error.message
    assert new in error.details["reason"]


def test_correction_for_2025_may_use_vat20() -> None:
    body = _mutated(["items", 0, "vat"], "vat20")
    body["correction"] = {"kind": "self", "date": "2025-12-30"}
    receipt = parse(body, date(2026, 2, 1))
    assert receipt.correction == Correction("self", date(2025, 12, 30), None)


def test_correction_by_order_needs_number() -> None:
    body = _mutated(["correction"], {"kind": "order", "date": "2026-01-10"})
    error = error_of(body)
    assert (error.code, error.details["field"]) == ("missing_field", "correction.number")
    body["correction"]["number"] = "ORD-7"
    assert parse(body).correction == Correction("order", date(2026, 1, 10), "ORD-7")


@pytest.mark.parametrize(
    ("correction", "code", "field"),
    [
        ({"kind": "later", "date": "2026-01-10"}, "invalid_value", "correction.kind"),
        ({"kind": "self", "date": "10.01.2026"}, "invalid_value", "correction.date"),
        ({"kind": "self", "date": "2026-01-10T00:00:00"}, "invalid_value", "correction.date"),
        ({"kind": "self", "date": 20260110}, "invalid_type", "correction.date"),
        ({"kind": "self", "date": "2026-03-03"}, "invalid_value", "correction.date"),
        ({"kind": "self"}, "missing_field", "correction.date"),
    ],
)
def test_correction_errors(correction: dict[str, Any], code: str, field: str) -> None:
    error = error_of(_mutated(["correction"], correction))
    assert (error.code, error.details["field"]) == (code, field)


def test_fingerprint_ignores_formatting_key_order_and_money_spelling() -> None:
    body = example()
    compact = json.dumps(body, separators=(",", ":")).encode()
    spaced = json.dumps(body, indent=4, sort_keys=True).encode()
    body["items"][0]["price"] = "7990"
    body["payments"][0]["amount"] = 7990
    other = json.dumps(body).encode()
    body["items"][0]["price"] = 7990.0
    body["items"][0]["quantity"] = 1.000
    as_floats = json.dumps(body).encode()
    raws = (compact, spaced, other, as_floats)
    prints = {receipt_fingerprint(parse_receipt(raw, TODAY)) for raw in raws}
    assert len(prints) == 1
    assert len(prints.pop()) == 64


def test_fingerprint_changes_with_content_but_not_with_day() -> None:
    same = receipt_fingerprint(parse(example(), date(2026, 5, 1)))
    assert receipt_fingerprint(parse(example(), date(2026, 5, 2))) == same
    changed = _mutated(["cashier", "name"], "Petrov B.")
    assert receipt_fingerprint(parse(changed)) != same


def test_storage_round_trip() -> None:
    body = example()
    body["items"].append({"name": "Lens", "price": "10.5", "quantity": "2.250", "vat": "vat10"})
    body["payments"] = [{"method": "card", "amount": "7990"}, {"method": "cash", "amount": "23.63"}]
    body["correction"] = {"kind": "order", "date": "2026-01-10", "number": "N1"}
    receipt = parse(body)
    stored = json.loads(json.dumps(receipt_to_json(receipt)))
    assert receipt_from_json(stored) == receipt
    assert stored["items"][1]["price"] == 1050


# Every code the receipt parser reports (never the bare "validation_error" default).
ERROR_CODES = {
    "malformed_json",
    "unknown_field",
    "missing_field",
    "invalid_type",
    "invalid_value",
    "invalid_receipt_type",
    "invalid_vat",
    "invalid_money",
    "invalid_quantity",
    "empty_items",
    "empty_payments",
    "vat_rate_retired",
    "payment_mismatch",
    "non_cash_overpayment",
    "change_exceeds_cash",
    "change_not_allowed",
}


@settings(max_examples=300)
@given(st.binary(max_size=300))
def test_arbitrary_bytes_give_receipt_or_validation_error(raw: bytes) -> None:
    try:
        parse_receipt(raw, TODAY)
    except ValidationError as exc:
        assert exc.code in ERROR_CODES and exc.details["field"]


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=10),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=20,
)
_keys = st.sampled_from(
    [
        "pos_id",
        "type",
        "items",
        "payments",
        "name",
        "price",
        "quantity",
        "vat",
        "amount",
        "method",
        "customer",
        "cashier",
        "correction",
        "kind",
        "date",
        "number",
    ]
)


@settings(max_examples=300)
@given(st.dictionaries(_keys, _json, max_size=8))
def test_arbitrary_json_gives_receipt_or_validation_error(data: dict[str, Any]) -> None:
    raw = json.dumps(data).encode()
    try:
        parse_receipt(raw, TODAY)
    except ValidationError as exc:
        assert exc.code in ERROR_CODES and exc.details["field"]


# The codes a value put into a field of the example can be reported with; a key that is not a
# field of that object is always ``unknown_field``. A valid price, quantity or amount can still
# break the total, which is reported on "payments".
_PAYMENT_CODES = {"payment_mismatch", "non_cash_overpayment", "change_exceeds_cash"}
_CODES_FOR_A_VALUE = {
    ("items", "price"): {"invalid_money", *_PAYMENT_CODES},
    ("items", "quantity"): {"invalid_quantity", *_PAYMENT_CODES},
    ("items", "vat"): {"invalid_vat", "vat_rate_retired"},
    ("items", "name"): {"invalid_type", "invalid_value"},
    ("items", "sku"): {"invalid_type", "invalid_value"},
    ("payments", "amount"): {"invalid_money", *_PAYMENT_CODES},
    ("payments", "method"): {"invalid_value"},
}


@settings(max_examples=200)
@given(
    st.sampled_from(["items", "payments"]),
    st.sampled_from(["price", "quantity", "amount", "vat", "name", "method", "sku"]),
    _json,
)
def test_arbitrary_values_in_a_valid_receipt(where: str, key: str, value: Any) -> None:
    body = example()
    body[where][0][key] = value
    expected = _CODES_FOR_A_VALUE.get((where, key), {"unknown_field"})
    try:
        parse(body)
    except ValidationError as exc:
        assert exc.code in expected
        field = "payments" if exc.code in _PAYMENT_CODES else f"{where}[0].{key}"
        assert exc.details["field"] == field
    else:
        assert expected != {"unknown_field"}  # an unknown key is never accepted


def test_huge_json_integer_is_a_validation_error_not_a_crash() -> None:
    body = json.dumps(example())
    # past the JSON parser's number limit (about 4300 digits) the body itself is refused
    error = error_of(body.replace('"7990.00"', "9" * 5000, 1).encode())
    assert (error.code, error.details["field"]) == ("malformed_json", "body")
    # a huge number the parser reads is checked as money
    error = error_of(body.replace('"7990.00"', "9" * 20, 1).encode())
    assert (error.code, error.details["field"]) == ("invalid_money", "items[0].price")


def test_fingerprint_bytes_are_the_json_module_form() -> None:
    """The fast path writes exactly what ``json.dumps`` wrote, so stored fingerprints match."""
    import hashlib
    import json

    from kkt_adapter.domain.receipt import receipt_to_json

    receipt = parse_receipt(json.dumps(example()).encode(), TODAY)
    data = receipt_to_json(receipt)
    data["cashier_name"] = 'Иванова "A"\u2028\x7f\x1f\\/\t日本'
    del data["dated"]
    slow = json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    assert (
        receipt_fingerprint(receipt, {**data, "dated": "x"})
        == hashlib.sha256(slow.encode()).hexdigest()
    )
