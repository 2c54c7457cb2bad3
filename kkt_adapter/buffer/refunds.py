"""The buffer's side of refunds of a named sale (``refund_of``): reading the sale and the
refunds of it taken before, for the check inside the intake transaction
(``kkt_adapter.domain.refund``) and for ``GET /v1/kkt/receipt/{id}``.

A refund's ``refund_of`` and the thousandths it took from each of the sale's lines
(``refund_lines``, JSON ``{"<line>": thousandths}``) are columns of its row (schema 4); the
partial index ``receipts_refund_of`` finds a sale's refunds in one seek.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Mapping
from dataclasses import dataclass

import orjson

from kkt_adapter.domain.lifecycle import ReceiptStatus
from kkt_adapter.domain.money import Kopecks
from kkt_adapter.domain.receipt import Receipt, ReceiptType, invalid
from kkt_adapter.domain.refund import (
    EarlierRefund,
    Original,
    check_refund,
    stored_cash,
    stored_lines,
)


@dataclass(frozen=True)
class RefundClaim:
    """A refund that names its sale, to be checked where it is inserted."""

    receipt: Receipt
    require_synced: bool
    """``KKT_REFUND_REQUIRES_SYNCED``: hold the refund until its sale reached the OFD."""

    @property
    def refund_of(self) -> str:
        assert self.receipt.refund_of is not None
        return self.receipt.refund_of


def original_tx(conn: sqlite3.Connection, receipt_id: str) -> Original | None:
    """The receipt ``receipt_id`` as a sale that may be refunded; ``None`` if the buffer has
    no such receipt (never taken here, or pruned by retention)."""
    row = conn.execute(
        "SELECT id, type, status, total, payload FROM receipts WHERE id = ?", (receipt_id,)
    ).fetchone()
    if row is None:
        return None
    payload = json.loads(row["payload"])
    return Original(
        row["id"],
        ReceiptType(row["type"]),
        ReceiptStatus(row["status"]),
        stored_lines(payload),
        stored_cash(payload, row["total"]),
    )


def earlier_tx(conn: sqlite3.Connection, original_id: str) -> list[EarlierRefund]:
    """Every refund stored that names ``original_id``, failed prints included (the domain
    decides what counts), in the order they were taken in."""
    rows = conn.execute(
        "SELECT id, total, status, payload, refund_lines FROM receipts"
        " INDEXED BY receipts_refund_of WHERE refund_of = ? ORDER BY created_ms, id",
        (original_id,),
    ).fetchall()
    return [
        EarlierRefund(
            row["id"],
            Kopecks(row["total"]),
            ReceiptStatus(row["status"]),
            _lines(row["refund_lines"]),
            stored_cash(json.loads(row["payload"]), row["total"]),
        )
        for row in rows
    ]


def check_claim_tx(conn: sqlite3.Connection, claim: RefundClaim) -> str:
    """Check ``claim`` against its sale and the refunds of it so far, on the caller's (the
    intake) transaction; returns its ``refund_lines`` to store. Raises the refusal."""
    original = original_tx(conn, claim.refund_of)
    if original is None:
        raise invalid(
            "refund_of_unknown",
            "refund_of",
            f"no receipt {claim.refund_of} in this adapter's buffer; a refund of a sale made"
            " elsewhere leaves refund_of out",
        )
    taking = check_refund(
        claim.receipt,
        original,
        earlier_tx(conn, original.receipt_id),
        require_synced=claim.require_synced,
    )
    return orjson.dumps({str(line): quantity for line, quantity in taking.items()}).decode()


def _lines(text: str | None) -> Mapping[int, int]:
    return {int(line): int(quantity) for line, quantity in json.loads(text or "{}").items()}
