"""The Python client against the real ``kkt-adapter serve``: receipts, replays, retries with
one key through a paper-out spell and a lost answer, refusals as exceptions, cash, reports,
tokens; sync and async."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from conftest import Process
from helpers import SAMPLE_RECEIPT, receipt

from kkt_adapter.api.answers import CashAnswer, ReceiptAnswer, ShiftReportView
from kkt_adapter.client import (
    AsyncKktClient,
    Forbidden,
    InsufficientCash,
    KktClient,
    NotFound,
    RefundExceedsSale,
    RetryPolicy,
    Unauthorized,
    ValidationRefused,
)
from kkt_adapter.device.emulator import EmulatedKkt
from kkt_adapter.settings import DEFAULT_EMULATOR_KEY

pytestmark = pytest.mark.acceptance

Start = Callable[..., Process]
POS_TOKEN = "pos-7f1c2a4e9b0d4c1a"
ADMIN_TOKEN = "adm-0b9e6d3c5a7f4e21"


def refund_of(sale_id: str, quantity: int) -> dict[str, object]:
    item = {"name": "Frame Ray-Ban RB5154", "price": "7990.00", "quantity": str(quantity),
            "vat": "vat22", "line": 1}  # fmt: skip
    paid = {"method": "card", "amount": f"{7990 * quantity}.00"}
    return receipt(type="refund", refund_of=sale_id, items=[item], payments=[paid])


def test_a_cashiers_calls_through_the_client(start_adapter: Start) -> None:
    adapter = start_adapter()
    with KktClient(adapter.url) as kkt:
        sale = kkt.create_receipt(SAMPLE_RECEIPT, idempotency_key="pos-1-sale-1")
        replay = kkt.create_receipt(SAMPLE_RECEIPT, idempotency_key="pos-1-sale-1")
        assert isinstance(sale, ReceiptAnswer) and replay == sale
        assert kkt.get_receipt(sale.receipt_id).fiscal == sale.fiscal
        found = kkt.find_receipts(idempotency_key="pos-1-sale-1").items
        assert [view.receipt_id for view in found] == [sale.receipt_id]
        by_fd = kkt.find_receipts(fn=sale.fiscal.fn, fd=sale.fiscal.fd).items
        assert [view.receipt_id for view in by_fd] == [sale.receipt_id]
        assert httpx.get(kkt.receipt_view_url(sale.receipt_id)).status_code == 200

        with pytest.raises(RefundExceedsSale) as too_much:
            kkt.create_receipt(refund_of(sale.receipt_id, 2))
        assert too_much.value.code == "refund_exceeds_sale" and too_much.value.status == 409
        assert too_much.value.details["line"] == 1 and too_much.value.idempotency_key
        with pytest.raises(ValidationRefused) as invalid:
            kkt.create_receipt(receipt(payments=[{"method": "card", "amount": "1.005"}]))
        assert invalid.value.code == "invalid_money"
        with pytest.raises(NotFound):
            kkt.get_receipt("0000000000000000")

        cash = kkt.cash_in("500.00", cashier="Ivanova A.")
        assert isinstance(cash, CashAnswer) and cash.drawer_cash == "500.00"
        with pytest.raises(InsufficientCash) as short:
            kkt.cash_out("600")
        assert short.value.details["drawer_cash"] == "500.00"
        x = kkt.x_report()
        assert isinstance(x, ShiftReportView) and x.kind == "x"
        assert x.totals["sale"] == "7990.00" and x.drawer_cash == "500.00"
        z = kkt.close_shift(cashier="Ivanova A.")
        assert kkt.z_report(z.shift) == z
        assert [kept.shift for kept in kkt.closed_shifts().items] == [z.shift]
        assert kkt.buffer_status().total == 1
        assert kkt.health().components.kkt.emulator is True


def test_a_receipt_is_retried_with_one_key_through_paper_out_and_a_lost_answer(
    start_adapter: Start, tmp_path: Path
) -> None:
    adapter = start_adapter()
    kkt_state = EmulatedKkt(tmp_path / "data", key=DEFAULT_EMULATOR_KEY.encode())
    kkt_state.set_fault("out_of_paper")
    slept: list[float] = []

    def paper_loaded_while_waiting(seconds: float) -> None:
        slept.append(seconds)
        kkt_state.set_fault(None)

    with KktClient(adapter.url, sleep=paper_loaded_while_waiting) as kkt:
        sale = kkt.create_receipt(SAMPLE_RECEIPT, idempotency_key="paper-1")
        assert slept == [5.0]  # kkt_unavailable (out_of_paper) answers Retry-After: 5
        assert len(kkt.find_receipts(idempotency_key="paper-1").items) == 1

    lost: list[httpx.Request] = []

    class LoseFirstAnswer(httpx.HTTPTransport):
        """The request reaches the adapter; its answer does not come back."""

        def handle_request(self, request: httpx.Request) -> httpx.Response:
            answer = super().handle_request(request)
            if not lost:
                lost.append(request)
                answer.close()
                raise httpx.ReadTimeout("answer lost", request=request)
            return answer

    with KktClient(adapter.url, transport=LoseFirstAnswer(), sleep=slept.append) as kkt:
        second = kkt.create_receipt(receipt(pos_id="POS-002"))
        key = lost[0].headers["idempotency-key"]
        assert [view.receipt_id for view in kkt.find_receipts(idempotency_key=key).items] == [
            second.receipt_id
        ]
        assert kkt.buffer_status().total == 2 and second.receipt_id != sale.receipt_id
    kkt_state.close()


async def test_the_async_client_with_tokens(start_adapter: Start) -> None:
    adapter = start_adapter(env={"KKT_API_TOKEN": POS_TOKEN, "KKT_ADMIN_TOKEN": ADMIN_TOKEN})
    no_retry = RetryPolicy(max_retries=0)
    async with AsyncKktClient(adapter.url, retry=no_retry) as anonymous:
        with pytest.raises(Unauthorized):
            await anonymous.buffer_status()
    async with AsyncKktClient(adapter.url, token=POS_TOKEN) as pos:
        sale = await pos.create_receipt(SAMPLE_RECEIPT)
        assert (await pos.get_receipt(sale.receipt_id)).fiscal == sale.fiscal
        cash = await pos.cash_in(100)
        assert cash.kind == "cash_in" and cash.amount == "100.00"
        assert (await pos.x_report()).receipts == 1
        with pytest.raises(Forbidden):
            await pos.sync_now()
    async with AsyncKktClient(adapter.url, token=ADMIN_TOKEN) as admin:
        synced = await admin.sync_now()
        assert synced.failed == 0 and synced.duration_seconds >= 0
        assert (await admin.dlq()).total == 0
        for _ in range(100):  # the background worker may have been sending it meanwhile
            if (await admin.buffer_status()).synced == 1:
                break
            await asyncio.sleep(0.1)
        assert (await admin.get_receipt(sale.receipt_id)).status == "synced"
