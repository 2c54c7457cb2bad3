"""The fiscal sign and QR payload: pure functions."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from kkt_adapter.domain.sign import canonical_bytes, fiscal_sign, qr_string, verify_sign

KEY = b"emulator-test-key"
MSK = timezone(timedelta(hours=3))


def _document() -> dict[str, Any]:
    return {
        "1054": 1,
        "1020": 799000,
        "1192": "rcpt-1",
        "1059": [{"1030": "Оправа Ray-Ban RB5154", "1079": 799000, "1023": 1, "1199": 11}],
        "1040": 42,
        "1041": "9999078900001234",
    }


def test_canonical_bytes_ignore_key_order_and_the_sign_tag() -> None:
    doc = _document()
    shuffled = dict(reversed(list(doc.items())))
    shuffled["1077"] = "0000000000"
    assert canonical_bytes(doc) == canonical_bytes(shuffled)
    assert "Оправа".encode() in canonical_bytes(doc)  # UTF-8, not \u escapes
    assert b" " not in canonical_bytes({"a": [1, 2], "b": {"c": 3}})


def _json_canonical(document: dict[str, Any]) -> bytes:
    """The canonical form as first implemented; documents signed with it must keep verifying."""
    unsigned = {tag: value for tag, value in document.items() if tag != "1077"}
    text = json.dumps(
        unsigned, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    )
    return text.encode("utf-8")


@pytest.mark.parametrize(
    "extra",
    [
        {},
        {"1008": "покупатель@пример.рф", "1227": 'ООО «Ромашка»\t"кавычки"\\\x01\u2028'},
        {"1023": 0.5, "1043": 2.675, "1199": -0.0, "big": 2**63, "huge": 2**70},
        {"1023": 1e-05, "x": 1e-07, "y": 1.5e16, "z": 5e-324, "w": 1.7976931348623157e308},
        {"1021": None, "1084": [{"1085": "Имя", "1086": True}, [], {}]},
        {"Ключ": 1, "ключ": 2, "ä": 3, "z": 4, "\U0001f600": 5},
    ],
)
def test_canonical_bytes_equal_the_json_dumps_form_signed_before(extra: dict[str, Any]) -> None:
    doc = {**_document(), **extra, "1077": "0000000000"}
    assert canonical_bytes(doc) == _json_canonical(doc)


def test_canonical_bytes_refuse_nan_as_before() -> None:
    with pytest.raises(ValueError):
        canonical_bytes({**_document(), "1023": float("nan")})


def test_fiscal_sign_is_ten_digits_and_deterministic() -> None:
    sign = fiscal_sign(KEY, _document())
    assert len(sign) == 10 and sign.isdigit()
    assert fiscal_sign(KEY, _document()) == sign
    assert fiscal_sign(b"another-key", _document()) != sign


def test_fiscal_sign_does_not_cover_its_own_tag() -> None:
    doc = _document()
    doc["1077"] = fiscal_sign(KEY, doc)
    assert fiscal_sign(KEY, doc) == doc["1077"]


def test_verify_sign_accepts_the_signed_document() -> None:
    doc = _document()
    doc["1077"] = fiscal_sign(KEY, doc)
    assert verify_sign(KEY, doc)
    assert not verify_sign(b"wrong-key", doc)


@pytest.mark.parametrize(
    ("tag", "value"),
    [("1020", 799001), ("1040", 43), ("1192", "rcpt-2"), ("1054", 2), ("9999", "added")],
)
def test_verify_sign_detects_a_single_altered_tag(tag: str, value: Any) -> None:
    doc = _document()
    doc["1077"] = fiscal_sign(KEY, doc)
    doc[tag] = value
    assert not verify_sign(KEY, doc)


def test_verify_sign_rejects_missing_or_malformed_sign() -> None:
    doc = _document()
    assert not verify_sign(KEY, doc)
    doc["1077"] = 1234567890
    assert not verify_sign(KEY, doc)
    doc["1077"] = "подпись"
    assert not verify_sign(KEY, doc)


def test_qr_string_standard_form() -> None:
    dt = datetime(2026, 11, 24, 13, 38, 59, tzinfo=MSK)
    qr = qr_string(dt, 799000, "9999078900001234", 42, "2740183641", 1)
    assert qr == "t=20261124T1338&s=7990.00&fn=9999078900001234&i=42&fp=2740183641&n=1"


@pytest.mark.parametrize(
    ("kopecks", "rubles"),
    [
        (0, "0.00"),
        (1, "0.01"),
        (10, "0.10"),
        (99, "0.99"),
        (100, "1.00"),
        (1999999999, "19999999.99"),
    ],
)
def test_qr_string_sum_is_exact_integer_arithmetic(kopecks: int, rubles: str) -> None:
    dt = datetime(2026, 1, 2, 3, 4, tzinfo=MSK)
    qr = qr_string(dt, kopecks, "9999000000000001", 7, "0000000001", 2)
    assert f"&s={rubles}&" in qr
    assert qr.startswith("t=20260102T0304&") and qr.endswith("&n=2")


def test_qr_string_refuses_negative_total() -> None:
    with pytest.raises(ValueError):
        qr_string(datetime(2026, 1, 1, tzinfo=MSK), -1, "9999000000000001", 1, "1", 1)
