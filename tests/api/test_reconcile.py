"""Start-up reconciliation of receipts a crash left ``accepted`` (promise I2), in process.

A crash between the ``accepted`` commit and the print leaves a receipt the KKT never printed:
it becomes ``print_failed`` (``interrupted_before_print``), is never printed behind the
cashier's back, and the POS's retry with the same key prints it. A crash between the print and
its record leaves a receipt the KKT did print: it is recorded from the KKT's log, never printed
again. The strict emulator refuses and counts any repeat print request.
"""

from __future__ import annotations

import asyncio
import json
from datetime import date
from typing import Any

import httpx
from chaos import device_log
from fakes import begin_intake
from helpers import adapter, eventually, new_key, receipt

from kkt_adapter.api.schemas import parse_receipt
from kkt_adapter.buffer import Buffer, NewReceipt
from kkt_adapter.runtime import build_device
from kkt_adapter.service import new_receipt
from kkt_adapter.settings import Settings


async def left_accepted(settings: Settings, key: str, body: dict[str, Any]) -> NewReceipt:
    """The buffer as a crash right after the ``accepted`` commit leaves it."""
    receipt = parse_receipt(json.dumps(body).encode(), date.today())
    new = new_receipt(key, receipt, 1_764_000_000_000)
    buffer = Buffer(settings.data_dir, capacity=10)
    await asyncio.to_thread(buffer.open)
    try:
        start = await begin_intake(buffer, new)
        assert (start.receipt_id, start.replay) == (new.receipt_id, None)
    finally:
        buffer.close()
    return new


def kkt_receipts(settings: Settings) -> tuple[list[tuple[str, int]], int]:
    """The receipts in the KKT's log (id, FD) and its count of repeat print requests."""
    documents, repeats = device_log(settings.data_dir)
    return [(rid, fd) for fd, rid in documents if rid is not None], repeats


async def receipt_row(api: httpx.AsyncClient, receipt_id: str) -> dict[str, Any]:
    answer = await api.get(f"/v1/kkt/receipt/{receipt_id}")
    assert answer.status_code == 200, answer.text
    row: dict[str, Any] = answer.json()
    return row


async def test_a_receipt_interrupted_before_the_print_is_not_printed_until_the_pos_retries(
    settings: Settings,
) -> None:
    key, body = new_key(), receipt()
    new = await left_accepted(settings, key["Idempotency-Key"], body)
    async with adapter(settings) as api:
        row = await receipt_row(api, new.receipt_id)
        assert (row["status"], row["last_error"]) == ("print_failed", "interrupted_before_print")
        assert row["fiscal"] is None
        assert kkt_receipts(settings) == ([], 0)  # nothing printed behind the cashier's back
        retried = await api.post("/v1/kkt/receipt", json=body, headers=key)
        assert retried.status_code == 200, retried.text
        assert retried.json()["receipt_id"] == new.receipt_id
        fd = retried.json()["fiscal"]["fd"]
    assert kkt_receipts(settings) == ([(new.receipt_id, fd)], 0)


async def test_a_receipt_printed_but_not_recorded_is_recorded_from_the_kkt_log(
    settings: Settings,
) -> None:
    key, body = new_key(), receipt()
    new = await left_accepted(settings, key["Idempotency-Key"], body)
    device = build_device(settings)  # the KKT printed it; the crash came before the record
    printed = device.print_receipt(new.receipt_id, new.document)
    device.close()
    async with adapter(settings) as api:
        row = await receipt_row(api, new.receipt_id)
        assert (row["fiscal"]["fn"], row["fiscal"]["fd"]) == (printed.fn, printed.fd)
        assert row["last_error"] is None
        # Recorded like any fiscalized receipt, it goes on to the (embedded) OFD.
        await eventually(
            lambda: receipt_row(api, new.receipt_id), lambda r: r["status"] == "synced"
        )
        replay = await api.post("/v1/kkt/receipt", json=body, headers=key)
        assert replay.status_code == 200 and replay.headers["Idempotent-Replayed"] == "true"
        assert replay.json()["fiscal"]["fd"] == printed.fd
    assert kkt_receipts(settings) == ([(new.receipt_id, printed.fd)], 0)  # printed once
