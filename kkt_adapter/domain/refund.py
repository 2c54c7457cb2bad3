"""Refunds of a named sale (issue 13, point 1): the rules that bind a refund to the sale it
returns (``refund_of``), and what a sale has left to refund.

Pure. The buffer reads the sale and its earlier refunds inside the intake transaction and
hands them here, so the check and the insert of the refund are one step on the buffer's
single writer: two tills refunding one sale at once cannot together return more than was
sold. What ``check_rules`` can tell without the sale (``refund_of`` on a refund type only,
every item naming a line) is in :func:`~kkt_adapter.domain.receipt.check_refund_of`.

Quantities are thousandths and money kopecks, as everywhere in the domain. An expense refund
names an expense the same way a refund names a sale; "sale" below means either.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from kkt_adapter.domain.lifecycle import ReceiptStatus
from kkt_adapter.domain.money import Kopecks, format_money, format_quantity
from kkt_adapter.domain.receipt import (
    REFUND_OF_TYPES,
    Payment,
    PaymentMethod,
    Receipt,
    ReceiptType,
    Vat,
    invalid,
)
from kkt_adapter.errors import (
    RefundCashExceedsPaid,
    RefundExceedsSale,
    RefundHeldUntilSynced,
    RefundOfLinesUnknown,
    RefundOfNotFiscalized,
)

NOT_FISCALIZED = frozenset({ReceiptStatus.ACCEPTED, ReceiptStatus.PRINT_FAILED})
"""Statuses of a receipt without a fiscal document: a sale in one has nothing to refund yet."""

HELD_RETRY_AFTER_S = 10
"""``Retry-After`` of ``refund_held_until_synced``: a sale normally reaches the OFD within a
delivery attempt or two (seconds); longer waits are an OFD outage, where the POS keeps asking
at this pace or gives up."""


@dataclass(frozen=True, slots=True)
class SoldLine:
    """One line of the sale: its 1-based position and what identifies and prices it."""

    line: int
    sku: str | None
    price: Kopecks
    vat: Vat
    quantity_milli: int


@dataclass(frozen=True, slots=True)
class Original:
    """The sale a refund names, as the buffer holds it."""

    receipt_id: str
    type: ReceiptType
    status: ReceiptStatus
    lines: tuple[SoldLine, ...] | None
    """``None``: recovered from the KKT's journal, whose row holds the fiscal document but
    not the request's items."""
    cash: Kopecks
    """The cash the sale kept: cash received minus change, what its tag 1031 says."""


@dataclass(frozen=True, slots=True)
class EarlierRefund:
    """A refund already stored that names the same sale."""

    receipt_id: str
    total: Kopecks
    status: ReceiptStatus
    lines: Mapping[int, int]
    """Line of the sale -> thousandths it returned (as resolved when it was taken in)."""
    cash: Kopecks
    """The cash it returned (cash part, change excluded)."""


@dataclass(frozen=True, slots=True)
class LineLeft:
    """One line of a sale in ``GET /v1/kkt/receipt/{id}``: sold and refunded so far."""

    line: int
    sku: str | None
    quantity_milli: int
    refunded_milli: int


@dataclass(frozen=True, slots=True)
class RefundState:
    """Whether a refund of a sale is allowed now, why not, and what is left of it."""

    allowed: bool
    reason: str | None
    lines: tuple[LineLeft, ...]
    cash_refundable: Kopecks


def cash_part(payments: Iterable[Payment], total: int) -> Kopecks:
    """Cash received minus the change: the cash that stays paid (FFD tag 1031)."""
    payments = tuple(payments)
    cash = sum(p.amount for p in payments if p.method is PaymentMethod.CASH)
    change = max(0, sum(p.amount for p in payments) - total)
    return Kopecks(cash - change)


def stored_cash(payload: Mapping[str, Any], total: int) -> Kopecks:
    """:func:`cash_part` of a stored receipt (``receipt_to_json``); 0 without payments."""
    payments = (
        Payment(PaymentMethod(p["method"]), Kopecks(int(p["amount"])))
        for p in payload.get("payments", ())
    )
    return cash_part(payments, total)


def stored_lines(payload: Mapping[str, Any]) -> tuple[SoldLine, ...] | None:
    """The lines of a stored receipt; ``None`` when the row holds no items (recovered)."""
    items = payload.get("items")
    if not items:
        return None
    return tuple(
        SoldLine(n, i.get("sku"), Kopecks(int(i["price"])), Vat(i["vat"]), int(i["quantity_milli"]))
        for n, i in enumerate(items, start=1)
    )


def counted(earlier: Iterable[EarlierRefund]) -> list[EarlierRefund]:
    """The earlier refunds that count: all but failed prints. A refund being printed
    (``accepted``) counts: it may be printed any moment, and counting it is what keeps two
    concurrent refunds from both passing."""
    return [e for e in earlier if e.status is not ReceiptStatus.PRINT_FAILED]


def refunded_by_line(earlier: Iterable[EarlierRefund]) -> dict[int, int]:
    """Thousandths returned so far per line of the sale, by the refunds that count."""
    total: dict[int, int] = {}
    for refund in counted(earlier):
        for line, quantity in refund.lines.items():
            total[line] = total.get(line, 0) + quantity
    return total


def check_refund(
    refund: Receipt,
    original: Original,
    earlier: Sequence[EarlierRefund],
    *,
    require_synced: bool,
) -> dict[int, int]:
    """Check a refund against the sale it names and the refunds of it taken before; returns
    the thousandths it takes from each line of the sale (stored with the refund, so later
    checks need not resolve skus again).

    The order puts the refusals a retry cannot cure first: the sale's type, its fiscal
    document, its lines, the quantities, the cash; ``refund_held_until_synced`` last, so a
    POS told to wait is not then told the refund was never possible.
    """
    wanted = REFUND_OF_TYPES[refund.type]
    if original.type != wanted:
        raise invalid(
            "refund_of_type_mismatch",
            "refund_of",
            f"receipt {original.receipt_id} is a {original.type}; a {refund.type} returns a"
            f" {wanted}",
        )
    if original.status in NOT_FISCALIZED:
        raise RefundOfNotFiscalized(
            f"receipt {original.receipt_id} is {original.status}: not fiscalized, nothing to"
            " refund",
            details={"refund_of": original.receipt_id, "original_status": str(original.status)},
        )
    if original.lines is None:
        raise RefundOfLinesUnknown(
            f"receipt {original.receipt_id} was recovered from the KKT's journal without its"
            " lines; refund it without refund_of",
            details={"refund_of": original.receipt_id},
        )
    refunded = refunded_by_line(earlier)
    taking = resolve_lines(refund, original.lines, refunded)
    for line, requested in taking.items():
        sold = original.lines[line - 1].quantity_milli
        if refunded.get(line, 0) + requested > sold:
            raise RefundExceedsSale(
                f"line {line} of receipt {original.receipt_id}: sold"
                f" {format_quantity(sold)}, refunded {format_quantity(refunded.get(line, 0))},"
                f" this refund {format_quantity(requested)}",
                details={
                    "line": line,
                    "sold": format_quantity(sold),
                    "refunded": format_quantity(refunded.get(line, 0)),
                    "requested": format_quantity(requested),
                },
            )
    check_cash(refund, original, earlier)
    if require_synced and original.status is not ReceiptStatus.SYNCED:
        raise RefundHeldUntilSynced(
            f"receipt {original.receipt_id} has not reached the OFD yet ({original.status});"
            " the refund is held until it has",
            details={"refund_of": original.receipt_id, "original_status": str(original.status)},
            retry_after=HELD_RETRY_AFTER_S,
        )
    return taking


def resolve_lines(
    refund: Receipt, lines: Sequence[SoldLine], refunded: Mapping[int, int]
) -> dict[int, int]:
    """Which line of the sale each item returns, and how much of each line the refund takes.

    By ``line`` (1-based), else by ``sku``: of several lines with that sku, the first with
    quantity left after earlier refunds and the items before it (the first at all when none
    has any: the quantity check then names it). An item's price and VAT rate must be its
    line's (``refund_line_mismatch``): a refund returns what was sold, at the price it was
    sold at; a lower amount is a line of a smaller quantity. A ``sku`` given with a ``line``
    must be that line's sku.
    """
    taking: dict[int, int] = {}
    for index, item in enumerate(refund.items):
        field = f"items[{index}]"
        if item.line is not None:
            if not 1 <= item.line <= len(lines):
                raise invalid(
                    "refund_line_unknown",
                    f"{field}.line",
                    f"the original has lines 1..{len(lines)}, not {item.line}",
                )
            sold = lines[item.line - 1]
            if item.sku is not None and sold.sku is not None and item.sku != sold.sku:
                raise invalid(
                    "refund_line_mismatch",
                    f"{field}.sku",
                    f"line {sold.line} of the original has sku {sold.sku!r}",
                )
        else:
            matches = [line for line in lines if line.sku == item.sku]
            if not matches:
                raise invalid(
                    "refund_line_unknown",
                    f"{field}.sku",
                    f"no line of the original has sku {item.sku!r}",
                )
            sold = next(
                (
                    line
                    for line in matches
                    if line.quantity_milli > refunded.get(line.line, 0) + taking.get(line.line, 0)
                ),
                matches[0],
            )
        if item.price != sold.price:
            raise invalid(
                "refund_line_mismatch",
                f"{field}.price",
                f"line {sold.line} of the original was sold at {format_money(sold.price)}",
            )
        if item.vat != sold.vat:
            raise invalid(
                "refund_line_mismatch",
                f"{field}.vat",
                f"line {sold.line} of the original has VAT {sold.vat}",
            )
        taking[sold.line] = taking.get(sold.line, 0) + item.quantity_milli
    return taking


def check_cash(refund: Receipt, original: Original, earlier: Iterable[EarlierRefund]) -> None:
    """The refund's cash part with the cash earlier refunds returned must not exceed the cash
    the sale kept: money paid by card goes back to the card, not over the counter."""
    requested = cash_part(refund.payments, refund.total)
    returned = sum(e.cash for e in counted(earlier))
    if returned + requested > original.cash:
        raise RefundCashExceedsPaid(
            f"receipt {original.receipt_id} kept {format_money(original.cash)} in cash,"
            f" {format_money(returned)} of it returned already; this refund returns"
            f" {format_money(requested)} in cash",
            details={
                "cash_paid": format_money(original.cash),
                "cash_refunded": format_money(returned),
                "requested": format_money(requested),
            },
        )


def refund_state(
    original: Original, earlier: Sequence[EarlierRefund], *, require_synced: bool
) -> RefundState:
    """What ``GET /v1/kkt/receipt/{id}`` tells a POS about refunding a sale now: the first
    reason a refund would be refused in :func:`check_refund`'s order (``fully_refunded``
    when no line has quantity left), the lines with what was refunded, and the cash left."""
    refunded = refunded_by_line(earlier)
    lines = tuple(
        LineLeft(line.line, line.sku, line.quantity_milli, refunded.get(line.line, 0))
        for line in original.lines or ()
    )
    returned = sum(e.cash for e in counted(earlier))
    reason: str | None = None
    if original.status in NOT_FISCALIZED:
        reason = RefundOfNotFiscalized.code
    elif original.lines is None:
        reason = RefundOfLinesUnknown.code
    elif all(line.refunded_milli >= line.quantity_milli for line in lines):
        reason = "fully_refunded"
    elif require_synced and original.status is not ReceiptStatus.SYNCED:
        reason = RefundHeldUntilSynced.code
    return RefundState(reason is None, reason, lines, Kopecks(max(0, original.cash - returned)))
