"""VAT sums of a receipt (FFD 1.2): tag 1200 per line, and the receipt-level sums per rate.

Prices include VAT, so a line of amount ``A`` kopecks (tag 1043) at rate ``r`` % carries
``A * r / (100 + r)`` of VAT, rounded half-up to the kopeck. The calculated rates (20/120,
22/122, 10/110, 5/105, 7/107) are the same fraction of the same amount, so they share the
formula of their plain rate. 0 % and "no VAT" carry no VAT sum. Everything is integer
arithmetic: a float would round 0.5 kopeck either way.

The receipt-level tags sum the line VATs of the rates that map to them; 1104 and 1105 sum the
line *amounts* at 0 % and without VAT. Which tag carries which 2026 rate is a decision with
unconfirmed parts, written down in ``docs/decisions.md`` ("Receipt-level VAT sums"): 22 % and
22/122 are filed under 1102 and 1106 (the tags of the standard rate, as 18 % -> 20 % kept them
in 2019); 5 %, 7 %, 5/105, 7/107 have no receipt-level tag in any source we found, so only
their lines' 1200 carry their VAT.
"""

from __future__ import annotations

from collections.abc import Iterable

from kkt_adapter.domain.money import Kopecks
from kkt_adapter.domain.receipt import Vat

RATE_PERCENT: dict[Vat, int] = {
    Vat.VAT22: 22,
    Vat.VAT22_122: 22,
    Vat.VAT20: 20,
    Vat.VAT20_120: 20,
    Vat.VAT10: 10,
    Vat.VAT10_110: 10,
    Vat.VAT7: 7,
    Vat.VAT7_107: 7,
    Vat.VAT5: 5,
    Vat.VAT5_105: 5,
}
"""The rates that carry a VAT sum, in percent (0 % and "no VAT" carry none)."""

TAG_VAT_STANDARD = "1102"
TAG_VAT_10 = "1103"
TAG_AMOUNT_VAT_0 = "1104"
TAG_AMOUNT_NO_VAT = "1105"
TAG_VAT_STANDARD_CALC = "1106"
TAG_VAT_10_110 = "1107"

RECEIPT_VAT_TAGS: dict[Vat, str] = {
    Vat.VAT22: TAG_VAT_STANDARD,  # unconfirmed: see the module docstring
    Vat.VAT20: TAG_VAT_STANDARD,
    Vat.VAT10: TAG_VAT_10,
    Vat.VAT22_122: TAG_VAT_STANDARD_CALC,  # unconfirmed
    Vat.VAT20_120: TAG_VAT_STANDARD_CALC,
    Vat.VAT10_110: TAG_VAT_10_110,
}
"""Rate -> the receipt-level tag summing its lines' VAT (1200)."""

RECEIPT_AMOUNT_TAGS: dict[Vat, str] = {Vat.VAT0: TAG_AMOUNT_VAT_0, Vat.NONE: TAG_AMOUNT_NO_VAT}
"""Rate -> the receipt-level tag summing its lines' amounts (1043)."""

RECEIPT_SUM_TAGS: tuple[str, ...] = (
    TAG_VAT_STANDARD,
    TAG_VAT_10,
    TAG_AMOUNT_VAT_0,
    TAG_AMOUNT_NO_VAT,
    TAG_VAT_STANDARD_CALC,
    TAG_VAT_10_110,
)
"""Every receipt-level VAT tag the adapter writes (money, kopecks), in tag order."""


def line_vat(amount: int, vat: Vat) -> Kopecks | None:
    """Tag 1200 of a line of ``amount`` kopecks (VAT included): ``amount * r / (100 + r)``
    rounded half-up; ``None`` for 0 % and "no VAT"."""
    percent = RATE_PERCENT.get(vat)
    if percent is None:
        return None
    divisor = 100 + percent
    # Half-up on a non-negative quotient: floor((2 * a * r + d) / (2 * d)).
    return Kopecks((2 * amount * percent + divisor) // (2 * divisor))


def receipt_vat_sums(lines: Iterable[tuple[Vat, int]]) -> dict[str, Kopecks]:
    """The receipt-level VAT tags of lines given as ``(rate, amount)``: only the tags of the
    rates present, each the sum of its lines' VAT (or amount, for 1104 and 1105)."""
    sums: dict[str, int] = {}
    for vat, amount in lines:
        tag, vat_sum = RECEIPT_VAT_TAGS.get(vat), line_vat(amount, vat)
        if tag is not None and vat_sum is not None:
            sums[tag] = sums.get(tag, 0) + vat_sum
        elif vat in RECEIPT_AMOUNT_TAGS:
            tag = RECEIPT_AMOUNT_TAGS[vat]
            sums[tag] = sums.get(tag, 0) + amount
    return {tag: Kopecks(sums[tag]) for tag in RECEIPT_SUM_TAGS if tag in sums}
