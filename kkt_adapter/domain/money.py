"""Money and quantity as integers: kopecks and thousandths of a unit.

Floats never touch money. The API takes decimal strings ("7990.00", "10", "0.5"), JSON
integers (whole rubles / whole units) or ``Decimal`` objects (JSON numbers with a fraction or
an exponent, read from their text by ``kkt_adapter.api.schemas``); everything else, including
``float`` and ``bool``, is refused with a :class:`~kkt_adapter.errors.ValidationError`.
"""

from __future__ import annotations

import re
from decimal import Decimal
from typing import NewType

from kkt_adapter.errors import ValidationError

Kopecks = NewType("Kopecks", int)
"""An amount of money in kopecks (1 ruble = 100 kopecks)."""

MAX_MONEY = Kopecks(10**12)
"""Largest accepted amount: 10 000 000 000.00 rubles (far above any till's sale, and well
inside the 6-byte VLN of FFD money tags)."""

MAX_QUANTITY_MILLI = 99_999_999
"""Largest accepted quantity in thousandths: 99 999.999 units."""

_MONEY_RE = re.compile(r"[0-9]{1,13}(?:\.[0-9]{1,2})?")
_QUANTITY_RE = re.compile(r"[0-9]{1,8}(?:\.[0-9]{1,3})?")
_FACTORS = {2: 100, 3: 1000}
_EXAMPLES = {2: "7990.00", 3: "1.500"}


def _fail(code: str, field: str, reason: str) -> ValidationError:
    return ValidationError(
        f"{field}: {reason}", code=code, details={"field": field, "reason": reason}
    )


def _scaled(value: object, scale: int, pattern: re.Pattern[str]) -> int | str:
    """``value`` times ``10**scale`` as an exact int, or a reason string when it is not one."""
    if isinstance(value, bool):
        return "a boolean is not a number"
    if isinstance(value, int):
        return value * _FACTORS[scale]
    if isinstance(value, float):
        example = _EXAMPLES[scale]
        return f'a binary float is never taken as money; send a decimal like "{example}"'
    if isinstance(value, Decimal):
        return _scaled_decimal(value, scale)
    if isinstance(value, str):
        if not pattern.fullmatch(value):
            return f"not a plain decimal with at most {scale} fraction digits"
        whole, _, frac = value.partition(".")
        return int(whole) * _FACTORS[scale] + int(frac.ljust(scale, "0") or "0")
    return f"expected a decimal string, got {type(value).__name__}"


def _scaled_decimal(value: Decimal, scale: int) -> int | str:
    """From the decimal's digits and exponent, in integers: scaling in the decimal context
    rounds to its 28 digits, which took "1.000000000000000000000000000000001" for 1.000."""
    if not value.is_finite():
        return "not a finite number"
    # Compare before scaling so a huge exponent cannot make a huge integer.
    if value.adjusted() > 20:
        return "too large"
    sign, digits, exponent = value.as_tuple()
    assert isinstance(exponent, int)  # finite
    if not any(digits):
        return 0
    kept = len(digits)
    while kept > 1 and digits[kept - 1] == 0 and exponent < -scale:
        kept, exponent = kept - 1, exponent + 1  # trailing zeros of the fraction
    if exponent < -scale:
        return f"more than {scale} fraction digits"
    factor: int = 10 ** (exponent + scale)  # exponent >= -scale: an int, never a fraction
    magnitude = int("".join(map(str, digits[:kept]))) * factor
    return -magnitude if sign else magnitude


def parse_money(value: object, field: str) -> Kopecks:
    """Parse a positive money amount into kopecks.

    Accepts a decimal string with at most 2 fraction digits ("7990.00", "10", "0.5"), a JSON
    integer meaning whole rubles, or a ``Decimal``. Raises ``ValidationError`` with code
    ``invalid_money`` naming ``field`` for anything else, for zero or negative amounts and for
    amounts above :data:`MAX_MONEY`.
    """
    result = _scaled(value, 2, _MONEY_RE)
    if isinstance(result, str):
        raise _fail("invalid_money", field, result)
    if result <= 0:
        raise _fail("invalid_money", field, "must be greater than zero")
    if result > MAX_MONEY:
        raise _fail("invalid_money", field, f"must not exceed {format_money(MAX_MONEY)}")
    return Kopecks(result)


def parse_quantity(value: object, field: str) -> int:
    """Parse a positive quantity into thousandths of a unit ("1.5" -> 1500).

    Same accepted forms as :func:`parse_money` with up to 3 fraction digits; code
    ``invalid_quantity``; at most :data:`MAX_QUANTITY_MILLI`.
    """
    result = _scaled(value, 3, _QUANTITY_RE)
    if isinstance(result, str):
        raise _fail("invalid_quantity", field, result)
    if result <= 0:
        raise _fail("invalid_quantity", field, "must be greater than zero")
    if result > MAX_QUANTITY_MILLI:
        raise _fail("invalid_quantity", field, "must not exceed 99999.999")
    return result


def item_total(price: Kopecks, quantity_milli: int) -> Kopecks:
    """``price`` x ``quantity`` rounded to whole kopecks, half away from zero (ROUND_HALF_UP)."""
    product = price * quantity_milli
    magnitude = (abs(product) + 500) // 1000
    return Kopecks(magnitude if product >= 0 else -magnitude)


def format_money(amount: int) -> str:
    """Kopecks as a decimal string with two fraction digits: 799000 -> "7990.00"."""
    sign = "-" if amount < 0 else ""
    rubles, kopecks = divmod(abs(amount), 100)
    return f"{sign}{rubles}.{kopecks:02d}"


def format_quantity(quantity_milli: int) -> str:
    """Thousandths as a decimal string with three fraction digits: 1500 -> "1.500"."""
    sign = "-" if quantity_milli < 0 else ""
    units, milli = divmod(abs(quantity_milli), 1000)
    return f"{sign}{units}.{milli:03d}"
