"""A cashier's whole day with the real commands: the shift opened with the POS token, cash
put in, sales with change, a partial refund of one sale, cash taken out, the X report, the Z
report read back after closing, and every receipt at the OFD emulator with its VAT sums."""

from __future__ import annotations

from collections.abc import Callable
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

import httpx
import pytest
from conftest import Process, wait_until
from helpers import new_key, receipt

pytestmark = pytest.mark.acceptance

POS = {"Authorization": "Bearer pos-token-for-the-day-0001"}
FAST = {
    "KKT_API_TOKEN": "pos-token-for-the-day-0001",
    "KKT_ADMIN_TOKEN": "admin-token-for-the-day-0001",
    "KKT_BACKOFF_BASE_SECONDS": "0.05",
    "KKT_BACKOFF_CAP_SECONDS": "0.3",
    "KKT_DELIVERY_SWEEP_SECONDS": "0.1",
}

GLASSES = {"name": "Frame Ray-Ban RB5154", "price": "3990.00", "quantity": "1", "vat": "vat22",
           "sku": "RB5154"}  # fmt: skip
CLOTH = {"name": "Lens cloth", "price": "150.00", "quantity": "3", "vat": "vat10", "sku": "CLOTH"}
BOOK = {"name": "Care guide", "price": "99.99", "quantity": "1", "vat": "vat0"}


def post(http: httpx.Client, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
    headers = {**POS, **new_key()}
    answer = http.post(path, json=body, headers=headers) if body else http.post(path, headers=POS)
    assert answer.status_code == 200, answer.text
    result: dict[str, Any] = answer.json()
    return result


def kopecks(text: str) -> int:
    return int(Decimal(text) * 100)


def vat_of(amount: int, rate: int) -> int:
    """VAT inside ``amount`` kopecks at ``rate`` %, rounded half up (computed here afresh)."""
    return int((Decimal(amount) * rate / (100 + rate)).quantize(Decimal(1), ROUND_HALF_UP))


def synced(http: httpx.Client) -> dict[str, Any] | None:
    status: dict[str, Any] = http.get("/v1/kkt/buffer/status", headers=POS).json()
    return status if status["pending"] + status["syncing"] == 0 else None


def test_a_cashiers_day(
    start_mock_ofd: Callable[..., Process], start_adapter: Callable[..., Process]
) -> None:
    ofd = start_mock_ofd()
    adapter = start_adapter(env={"KKT_OFD_URL": ofd.url, "KKT_AUTO_OPEN_SHIFT": "false", **FAST})
    with adapter.client() as http, ofd.client() as ofd_http:
        opened = post(http, "/v1/kkt/shift/open", {"cashier": "Ivanova A."})
        shift = opened["shift"]
        cash_in = post(http, "/v1/kkt/cash/in", {"amount": "1000.00", "cashier": "Ivanova A."})
        assert (cash_in["kind"], cash_in["amount"], cash_in["shift"]) == (
            "cash_in",
            "1000.00",
            shift,
        )
        assert cash_in["drawer_cash"] == "1000.00"

        # 3990.00 + 3 x 150.00 = 4440.00, paid with 5000.00 in cash: 560.00 change.
        paid = [{"method": "cash", "amount": "5000.00"}]
        first = post(http, "/v1/kkt/receipt", receipt(items=[GLASSES, CLOTH], payments=paid))
        assert first["change"] == "560.00"
        # 99.99: 49.99 by card, the rest from 200.00 in cash (50.00 kept, 150.00 change).
        second = post(http, "/v1/kkt/receipt", receipt(
            items=[BOOK], payments=[{"method": "cash", "amount": "200.00"},
                                    {"method": "card", "amount": "49.99"}]))  # fmt: skip
        assert second["change"] == "150.00"

        # The buyer brings two lens cloths back: line 2 of the first sale, in cash.
        refund = post(http, "/v1/kkt/receipt", receipt(
            type="refund", refund_of=first["receipt_id"],
            items=[{**CLOTH, "quantity": "2", "line": 2}],
            payments=[{"method": "cash", "amount": "300.00"}]))  # fmt: skip
        again = http.post("/v1/kkt/receipt", headers={**POS, **new_key()}, json=receipt(
            type="refund", refund_of=first["receipt_id"],
            items=[{**CLOTH, "quantity": "2", "line": 2}],
            payments=[{"method": "cash", "amount": "300.00"}]))  # fmt: skip
        assert again.status_code == 409 and again.json()["code"] == "refund_exceeds_sale"
        sale = http.get(f"/v1/kkt/receipt/{first['receipt_id']}", headers=POS).json()
        assert [r["receipt_id"] for r in sale["refunds"]["receipts"]] == [refund["receipt_id"]]

        cash_out = post(http, "/v1/kkt/cash/out", {"amount": "700.00"})
        # 1000.00 in + 4440.00 + 50.00 kept in cash - 300.00 refunded - 700.00 out
        drawer = 100000 + 444000 + 5000 - 30000 - 70000
        assert kopecks(cash_out["drawer_cash"]) == drawer

        x = post(http, "/v1/kkt/x_report")
        assert (x["kind"], x["shift"]) == ("x", shift)
        assert kopecks(x["drawer_cash"]) == drawer
        assert x["totals"]["sale"] == "4539.99" and x["totals"]["refund"] == "300.00"
        assert x["counts"]["sale"] == 2 and x["counts"]["refund"] == 1
        assert (x["payments"]["sale"]["cash"], x["payments"]["sale"]["card"]) == (
            "4490.00",
            "49.99",
        )
        assert x["payments"]["refund"]["cash"] == "300.00"
        assert x["vat"]["sale"]["vat22"] == {"amount": "3990.00", "vat": "719.51"}
        assert x["vat"]["refund"] == {"vat10": {"amount": "300.00", "vat": "27.27"}}
        assert x["cash_in"] == {"amount": "1000.00", "count": 1}
        assert x["cash_out"] == {"amount": "700.00", "count": 1}

        z = post(http, "/v1/kkt/shift/close", {"cashier": "Ivanova A."})
        assert (z["kind"], z["shift"], kopecks(z["drawer_cash"])) == ("z", shift, drawer)
        kept = http.get(f"/v1/kkt/shifts/{shift}/z_report", headers=POS)
        assert kept.status_code == 200 and kept.json()["drawer_cash"] == z["drawer_cash"]
        assert kept.json()["totals"] == z["totals"] and kept.json()["vat"] == z["vat"]
        closed = http.get("/v1/kkt/shifts", headers=POS).json()
        assert [item["shift"] for item in closed["items"]] == [shift]

        wait_until(lambda: synced(http), timeout=60, interval=0.2, what="delivery")
        received = ofd_http.get("/_control/received").json()["items"]
    documents = {item["receipt_id"]: item["document"] for item in received}
    assert set(documents) == {first["receipt_id"], second["receipt_id"], refund["receipt_id"]}
    first_doc = documents[first["receipt_id"]]
    assert (first_doc["1102"], first_doc["1103"]) == (vat_of(399000, 22), vat_of(45000, 10))
    assert first_doc["1031"] == 444000  # the cash kept: 5000.00 less 560.00 change
    assert documents[second["receipt_id"]]["1104"] == 9999  # turnover at 0 %
    refund_doc = documents[refund["receipt_id"]]
    assert refund_doc["1054"] == 2 and refund_doc["1103"] == vat_of(30000, 10)
    assert "1102" not in refund_doc
