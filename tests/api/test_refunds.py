"""Refunds of a named sale (``refund_of``), in-process: every refusal code, the state a sale
shows, concurrency, replays and retries."""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Any

import httpx
import pytest
from helpers import eventually, new_key, receipt

from kkt_adapter.buffer.recovery import Recovered
from kkt_adapter.domain.fiscal import FiscalResult
from kkt_adapter.domain.journal import key_digest
from kkt_adapter.domain.money import format_money, item_total, parse_money, parse_quantity
from kkt_adapter.hlc import HlcStamp

FRAME = {"name": "Frame", "price": "100.00", "quantity": "2", "vat": "vat22", "sku": "FR-1"}
LENS = {"name": "Lens", "price": "50.00", "quantity": "3", "vat": "vat10", "sku": "LN-1"}
OFD_MODE = "/ofd-emulator/_control/mode"


def sale_body(**changes: Any) -> dict[str, Any]:
    """Frame 2 x 100.00 and lens 3 x 50.00 = 350.00: 150.00 cash (200.00 given), 200.00 card."""
    body = receipt(
        items=[FRAME, LENS],
        payments=[{"method": "cash", "amount": "200.00"}, {"method": "card", "amount": "200.00"}],
    )
    body.update(changes)
    return body


def refund_body(refund_of: str, *items: dict[str, Any], cash: str | None = None) -> dict[str, Any]:
    """A refund of ``items`` (each a line of the sale), ``cash`` in cash, the rest by card."""
    total = sum(
        item_total(parse_money(i["price"], "price"), parse_quantity(i["quantity"], "quantity"))
        for i in items
    )
    in_cash = 0 if cash is None else parse_money(cash, "cash")
    payments = [] if cash is None else [{"method": "cash", "amount": cash}]
    if total > in_cash:
        payments.append({"method": "card", "amount": format_money(total - in_cash)})
    return receipt(type="refund", refund_of=refund_of, items=list(items), payments=payments)


def line(n: int, quantity: str = "1", base: dict[str, Any] = FRAME) -> dict[str, Any]:
    item = {k: v for k, v in base.items() if k != "sku"}
    return {**item, "quantity": quantity, "line": n}


async def post(api: httpx.AsyncClient, body: dict[str, Any], key: Any = None) -> httpx.Response:
    return await api.post("/v1/kkt/receipt", json=body, headers=key or new_key())


async def sell(api: httpx.AsyncClient, body: dict[str, Any] | None = None) -> str:
    answer = await post(api, body or sale_body())
    assert answer.status_code == 200, answer.text
    return str(answer.json()["receipt_id"])


def refused(answer: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert (answer.status_code, answer.json()["code"]) == (status, code), answer.text
    details: dict[str, Any] = answer.json()["details"]
    return details


async def view(api: httpx.AsyncClient, receipt_id: str) -> dict[str, Any]:
    answer = await api.get(f"/v1/kkt/receipt/{receipt_id}")
    assert answer.status_code == 200, answer.text
    body: dict[str, Any] = answer.json()
    return body


async def test_refund_by_line_and_by_sku_and_what_the_sale_shows(api: httpx.AsyncClient) -> None:
    sale = await sell(api)
    before = (await view(api, sale))["refunds"]
    assert before["allowed"] is True and before["reason"] is None
    assert before["receipts"] == [] and before["cash_refundable"] == "150.00"
    by_line = await post(api, refund_body(sale, line(1), cash="100.00"))
    assert by_line.status_code == 200, by_line.text
    by_sku = await post(api, refund_body(sale, {**LENS, "quantity": "2"}))
    assert by_sku.status_code == 200, by_sku.text
    after = (await view(api, sale))["refunds"]
    assert after["lines"] == [
        {"line": 1, "sku": "FR-1", "quantity": "2.000", "refunded": "1.000"},
        {"line": 2, "sku": "LN-1", "quantity": "3.000", "refunded": "2.000"},
    ]
    assert [r["receipt_id"] for r in after["receipts"]] == [
        by_line.json()["receipt_id"], by_sku.json()["receipt_id"]
    ]  # fmt: skip
    assert after["receipts"][0]["total"] == "100.00"
    assert after["cash_refundable"] == "50.00" and after["allowed"] is True
    refund = await view(api, by_line.json()["receipt_id"])
    assert refund["refund_of"] == sale and "refunds" not in refund
    assert (await view(api, sale))["refund_of"] is None
    found = await api.get("/v1/kkt/receipts", params={"fn": refund["fiscal"]["fn"],
                                                       "fd": refund["fiscal"]["fd"]})  # fmt: skip
    assert found.json()["items"][0]["refund_of"] == sale


async def test_a_fully_refunded_sale_says_so(api: httpx.AsyncClient) -> None:
    sale = await sell(api)
    answer = await post(api, refund_body(sale, line(1, "2"), line(2, "3", LENS)))
    assert answer.status_code == 200, answer.text
    state = (await view(api, sale))["refunds"]
    assert (state["allowed"], state["reason"]) == (False, "fully_refunded")
    details = refused(await post(api, refund_body(sale, line(2, "0.5", LENS))), 409,
                      "refund_exceeds_sale")  # fmt: skip
    assert details == {"line": 2, "sold": "3.000", "refunded": "3.000", "requested": "0.500"}


async def test_refund_of_on_a_sale_and_line_without_refund_of_are_refused(
    api: httpx.AsyncClient,
) -> None:
    details = refused(await post(api, sale_body(refund_of="X")), 422, "refund_of_not_allowed")
    assert details["field"] == "refund_of"
    plain_refund = receipt(type="refund", items=[line(1)],
                           payments=[{"method": "card", "amount": "100.00"}])  # fmt: skip
    details = refused(await post(api, plain_refund), 422, "refund_of_required")
    assert details["field"] == "items[0].line"


async def test_unknown_original_and_wrong_type(api: httpx.AsyncClient) -> None:
    refused(await post(api, refund_body("NOSUCHRECEIPT", line(1))), 422, "refund_of_unknown")
    sale = await sell(api)
    refund = (await post(api, refund_body(sale, line(1)))).json()["receipt_id"]
    details = refused(await post(api, refund_body(refund, line(1))), 422,
                      "refund_of_type_mismatch")  # fmt: skip
    assert details["field"] == "refund_of"
    expense_refund = {**refund_body(sale, line(1)), "type": "expense_refund"}
    refused(await post(api, expense_refund), 422, "refund_of_type_mismatch")


async def test_unknown_and_mismatched_lines(api: httpx.AsyncClient) -> None:
    sale = await sell(api)
    no_line = {k: v for k, v in line(1).items() if k != "line"}
    details = refused(await post(api, refund_body(sale, no_line)), 422, "refund_line_unknown")
    assert details["field"] == "items[0]"
    details = refused(await post(api, refund_body(sale, line(3))), 422, "refund_line_unknown")
    assert details["field"] == "items[0].line"
    other = {**FRAME, "sku": "NOPE", "quantity": "1"}
    refused(await post(api, refund_body(sale, other)), 422, "refund_line_unknown")
    cheaper = {**line(1), "price": "90.00"}
    details = refused(await post(api, refund_body(sale, cheaper)), 422, "refund_line_mismatch")
    assert details["field"] == "items[0].price"


async def test_over_refund_and_cash(api: httpx.AsyncClient) -> None:
    sale = await sell(api)
    details = refused(await post(api, refund_body(sale, line(1, "3"))), 409,
                      "refund_exceeds_sale")  # fmt: skip
    assert details == {"line": 1, "sold": "2.000", "refunded": "0.000", "requested": "3.000"}
    details = refused(await post(api, refund_body(sale, line(1, "2"), cash="150.01")), 409,
                      "refund_cash_exceeds_paid")  # fmt: skip
    assert details == {"cash_paid": "150.00", "cash_refunded": "0.00", "requested": "150.01"}
    assert (await post(api, refund_body(sale, line(1), cash="100.00"))).status_code == 200
    details = refused(await post(api, refund_body(sale, line(1), cash="60.00")), 409,
                      "refund_cash_exceeds_paid")  # fmt: skip
    assert details["cash_refunded"] == "100.00"


async def test_a_refund_is_paid_exactly(api: httpx.AsyncClient) -> None:
    sale = await sell(api)
    over = refund_body(sale, line(1), cash="100.00")
    over["payments"] = [{"method": "cash", "amount": "110.00"}]
    refused(await post(api, over), 422, "change_not_allowed")


async def test_an_unfiscalized_sale_cannot_be_refunded(api: httpx.AsyncClient) -> None:
    device = api.app.state.runtime.kkt.driver  # type: ignore[attr-defined]
    device.set_fault("out_of_paper")
    key = new_key()
    assert (await post(api, sale_body(), key)).status_code == 503
    device.set_fault(None)
    found = await api.get("/v1/kkt/receipts", params={"idempotency_key": key["Idempotency-Key"]})
    sale = found.json()["items"][0]["receipt_id"]
    details = refused(await post(api, refund_body(sale, line(1))), 409,
                      "refund_of_not_fiscalized")  # fmt: skip
    assert details["original_status"] == "print_failed"
    state = (await view(api, sale))["refunds"]
    assert (state["allowed"], state["reason"]) == (False, "refund_of_not_fiscalized")


async def test_a_sale_recovered_from_the_journal_has_no_lines_to_refund(
    api: httpx.AsyncClient,
) -> None:
    buffer = api.app.state.runtime.buffer  # type: ignore[attr-defined]
    document = {"1054": 1, "1020": 10000, "1192": "REC0001"}
    result = FiscalResult(
        "REC0001", "9999000000000077", 5, "0000000005", 2, 3,
        datetime.fromisoformat("2026-11-24T13:38:00+03:00"), "t=1&fn=9999000000000077", document,
    )  # fmt: skip
    recovered = Recovered(result, key_digest("k"), "f", "sale", 10000, HlcStamp(1, 0, "n"), {})
    assert await buffer.insert_recovered([recovered]) == 1
    refused(await post(api, refund_body("REC0001", line(1))), 409, "refund_of_lines_unknown")
    state = (await view(api, "REC0001"))["refunds"]
    assert (state["allowed"], state["reason"], state["lines"]) == (
        False, "refund_of_lines_unknown", []
    )  # fmt: skip


@pytest.mark.parametrize("settings", [{"refund_requires_synced": True}], indirect=True)
async def test_held_until_the_sale_is_synced_when_required(api: httpx.AsyncClient) -> None:
    await api.post(OFD_MODE, json={"mode": "fail"})  # the sale stays unsent
    sale = await sell(api)
    answer = await post(api, refund_body(sale, line(1)))
    details = refused(answer, 409, "refund_held_until_synced")
    assert int(answer.headers["Retry-After"]) > 0
    assert details["original_status"] in {"pending", "syncing"}
    state = (await view(api, sale))["refunds"]
    assert (state["allowed"], state["reason"]) == (False, "refund_held_until_synced")
    await api.post(OFD_MODE, json={"mode": "success"})
    await api.post("/v1/kkt/sync")
    await eventually(lambda: view(api, sale), lambda v: v["status"] == "synced", what="synced")
    assert (await view(api, sale))["refunds"]["allowed"] is True
    assert (await post(api, refund_body(sale, line(1)))).status_code == 200


async def test_offline_first_a_refund_of_an_unsent_sale_is_fiscalized_by_default(
    api: httpx.AsyncClient,
) -> None:
    await api.post(OFD_MODE, json={"mode": "fail"})
    sale = await sell(api)
    assert (await post(api, refund_body(sale, line(1)))).status_code == 200


async def test_concurrent_refunds_cannot_together_over_refund(api: httpx.AsyncClient) -> None:
    sale = await sell(api)
    answers = await asyncio.gather(*(post(api, refund_body(sale, line(1))) for _ in range(6)))
    codes = sorted(a.json().get("code", "ok") for a in answers)
    assert codes == ["ok", "ok"] + ["refund_exceeds_sale"] * 4
    assert (await view(api, sale))["refunds"]["lines"][0]["refunded"] == "2.000"


async def test_a_replay_is_not_checked_again(api: httpx.AsyncClient) -> None:
    sale = await sell(api)
    key, body = new_key(), refund_body(sale, line(1, "2"))
    first = await post(api, body, key)
    assert first.status_code == 200, first.text
    again = await post(api, body, key)
    assert again.status_code == 200 and again.headers["Idempotent-Replayed"] == "true"
    assert again.json() == first.json()


async def test_a_retried_failed_refund_is_checked_again(api: httpx.AsyncClient) -> None:
    sale = await sell(api)
    device = api.app.state.runtime.kkt.driver  # type: ignore[attr-defined]
    device.set_fault("out_of_paper")
    key, body = new_key(), refund_body(sale, line(1, "2"))
    assert (await post(api, body, key)).status_code == 503  # print_failed: counts for nothing
    device.set_fault(None)
    assert (await post(api, refund_body(sale, line(1, "2")))).status_code == 200
    refused(await post(api, body, key), 409, "refund_exceeds_sale")


async def test_openapi_describes_refund_of_line_and_the_codes(api: httpx.AsyncClient) -> None:
    spec = (await api.get("/openapi.json")).json()
    schemas = spec["components"]["schemas"]
    assert "refund_of" in schemas["ReceiptIn"]["properties"]
    assert "line" in schemas["ItemIn"]["properties"]
    responses = spec["paths"]["/v1/kkt/receipt"]["post"]["responses"]
    for code in ("refund_exceeds_sale", "refund_cash_exceeds_paid", "refund_held_until_synced",
                 "refund_of_not_fiscalized", "refund_of_lines_unknown"):  # fmt: skip
        assert code in responses["409"]["description"]
    unprocessable = (
        "refund_of_unknown",
        "refund_of_type_mismatch",
        "refund_line_unknown",
        "refund_line_mismatch",
        "refund_of_not_allowed",
        "refund_of_required",
    )
    for code in unprocessable:
        assert code in responses["422"]["description"]
