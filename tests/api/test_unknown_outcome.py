"""A print whose outcome is unknown, with a device that cannot be asked, is neither printed
again nor marked failed: the receipt stays ``accepted`` until the device can tell (I2, I8)."""

from __future__ import annotations

from typing import Any

import httpx
from helpers import new_key, priced_receipt

from kkt_adapter.device.atol.web import OutcomeUnknown


async def test_an_unknown_outcome_the_device_cannot_settle_now_is_left_accepted_not_failed(
    api: httpx.AsyncClient,
) -> None:
    """Found by the ATOL crash suite: the register's web server died while the adapter waited
    for a task; the lookup failed too and the adapter marked the receipt ``print_failed``, but
    the task was still queued and the restarted server printed it (a fiscal receipt the
    buffer called failed, I8)."""
    device = api.app.state.runtime.kkt.driver  # type: ignore[attr-defined]
    real_print, real_find = device.print_receipts, device.find_document

    def print_then_lose_the_answer(items: Any) -> Any:
        real_print(items)
        raise OutcomeUnknown("the web server went away mid-task")

    def cannot_ask(receipt_id: str) -> Any:
        raise OutcomeUnknown("the web server does not answer")

    device.print_receipts, device.find_document = print_then_lose_the_answer, cannot_ask
    key, body = new_key(), priced_receipt(4200)
    unknown = await api.post("/v1/kkt/receipt", json=body, headers=key)
    assert unknown.status_code == 503, unknown.text
    assert unknown.json()["details"]["reason"] == "outcome_unknown"
    receipts = (await api.get("/v1/kkt/buffer/status")).json()
    assert (receipts["print_failed"], receipts["accepted"]) == (0, 1), receipts

    device.print_receipts, device.find_document = real_print, real_find  # the device is back
    retried = await api.post("/v1/kkt/receipt", json=body, headers=key)
    assert retried.status_code == 200, retried.text
    assert retried.json()["fiscal"]["fd"] == device.last_document().fd
    assert device.repeat_prints() == 0
