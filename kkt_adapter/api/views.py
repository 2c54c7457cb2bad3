"""How buffer rows and device reports look in API answers."""

from __future__ import annotations

import json
from typing import Any

from kkt_adapter.device.base import DeviceStatus, ShiftReport
from kkt_adapter.domain.dates import iso_ms
from kkt_adapter.domain.money import format_money, format_quantity
from kkt_adapter.domain.receipt import payment_change
from kkt_adapter.domain.refund import EarlierRefund, RefundState
from kkt_adapter.domain.shift_totals import CashMovement, ShiftTotals
from kkt_adapter.hlc import HlcStamp


def receipt_view(row: dict[str, Any], refunds: dict[str, Any] | None = None) -> dict[str, Any]:
    """``GET /v1/kkt/receipt/{id}``: status, fiscal attributes, attempts, last error, HLC;
    ``refund_of`` (the sale a refund names, else ``null``); ``refunds`` when given
    (:func:`refunds_view`, a sale's or an expense's refunds)."""
    stamp = HlcStamp(row["hlc_wall"], row["hlc_counter"], row["hlc_node"])
    payload = json.loads(row["payload"])
    fiscal = None
    if row["fd"] is not None:
        fiscal = {
            "fn": row["fn"],
            "fd": row["fd"],
            "fp": row["fp"],
            "shift": row["shift"],
            "number_in_shift": row["number_in_shift"],
            "datetime": row["fiscal_at"],
            "qr": row["qr"],
        }
    dlq = None
    if row.get("dlq_code") is not None:
        dlq = {"code": row["dlq_code"], "reason": row["dlq_reason"]}
    return {
        "receipt_id": row["id"],
        "status": row["status"],
        "pos_id": row["pos_id"],
        "type": row["type"],
        "total": format_money(row["total"]),
        "change": format_money(payment_change(payload, row["total"])),
        "created_at": iso_ms(row["created_ms"]),
        "updated_at": iso_ms(row["updated_ms"]),
        "hlc": str(stamp),
        "fiscal": fiscal,
        "ofd": {
            "status": _ofd_status(row["status"]),
            "attempts": row["attempts"],
            "next_attempt_at": iso_ms(row["next_attempt_ms"])
            if row["status"] == "pending"
            else None,
            "synced_at": iso_ms(row["synced_ms"]),
            "ofd_receipt_id": row["ofd_receipt_id"],
            "dlq": dlq,
        },
        "last_error": row["last_error"],
        "refund_of": row.get("refund_of"),
        **({} if refunds is None else {"refunds": refunds}),
        "receipt": request_view(payload),  # payments as given: cash as received
    }


def request_view(payload: dict[str, Any]) -> dict[str, Any]:
    """The stored receipt (``receipt_to_json``: kopecks, thousandths) as the request wrote it:
    money in rubles and quantities in units, as decimal strings. A receipt recovered from the
    KKT's journal has no stored request: ``{}``."""
    if not payload:
        return {}
    items = [
        {
            **{k: v for k, v in item.items() if k != "quantity_milli"},
            "price": format_money(item["price"]),
            "quantity": format_quantity(item["quantity_milli"]),
        }
        for item in payload["items"]
    ]
    payments = [{**p, "amount": format_money(p["amount"])} for p in payload["payments"]]
    return {**payload, "items": items, "payments": payments}


def refunds_view(state: RefundState, earlier: list[EarlierRefund]) -> dict[str, Any]:
    """A sale's refunds: whether one is allowed now and why not, the refund receipts naming
    it (failed prints too, with their status; they count for nothing), each line's sold and
    refunded quantity, and the cash a refund may still return."""
    return {
        "allowed": state.allowed,
        "reason": state.reason,
        "receipts": [
            {"receipt_id": e.receipt_id, "total": format_money(e.total), "status": e.status}
            for e in earlier
        ],
        "lines": [
            {
                "line": line.line,
                "sku": line.sku,
                "quantity": format_quantity(line.quantity_milli),
                "refunded": format_quantity(line.refunded_milli),
            }
            for line in state.lines
        ],
        "cash_refundable": format_money(state.cash_refundable),
    }


def _ofd_status(status: str) -> str:
    return {"synced": "delivered", "failed": "rejected", "syncing": "sending"}.get(
        status, "pending" if status == "pending" else "not_fiscalized"
    )


def shift_view(status: DeviceStatus) -> dict[str, Any]:
    return {
        "open": status.shift_open,
        "shift": status.shift,
        "opened_at": status.shift_opened_at.isoformat() if status.shift_opened_at else None,
        "expired": status.shift_expired,
        "fn": status.fn,
        "last_fd": status.last_fd,
        "emulator": status.emulator,
    }


def report_view(report: ShiftReport) -> dict[str, Any]:
    """An open-shift, X or Z report; X and Z add the shift's figures (``summary_view``)."""
    view: dict[str, Any] = {
        "kind": report.kind,
        "shift": report.shift,
        "fn": report.fn,
        "fd": report.fd,
        "opened_at": report.opened_at.isoformat() if report.opened_at else None,
        "closed_at": report.closed_at.isoformat() if report.closed_at else None,
        "receipts": report.receipts,
        "totals": {kind: format_money(amount) for kind, amount in report.totals.items()},
    }
    if report.summary is not None:
        view.update(summary_view(report.summary))
    return view


def summary_view(summary: ShiftTotals) -> dict[str, Any]:
    """A shift's figures: per receipt type its count, payments per method and VAT per rate
    (turnover and VAT); cash in and out (sum and count); the cash in the drawer."""
    return {
        "counts": dict(summary.counts),
        "payments": {
            kind: {method: format_money(amount) for method, amount in methods.items()}
            for kind, methods in summary.payments.items()
        },
        "vat": {
            kind: {
                rate: {"amount": format_money(f.amount), "vat": format_money(f.vat)}
                for rate, f in rates.items()
            }
            for kind, rates in summary.vat.items()
        },
        "cash_in": _movement(summary.cash_in),
        "cash_out": _movement(summary.cash_out),
        "drawer_cash": format_money(summary.drawer_cash),
    }


def _movement(movement: CashMovement) -> dict[str, Any]:
    return {"amount": format_money(movement.amount), "count": movement.count}
