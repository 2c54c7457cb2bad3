"""Finding receipts (by key, by FN and FD, by shift) and the customer's copy, in-process."""

from __future__ import annotations

from datetime import datetime
from html.parser import HTMLParser
from typing import Any

import httpx
import pytest
from fakes import begin_intake
from helpers import new_key, priced_receipt, receipt

from kkt_adapter.buffer import NewReceipt
from kkt_adapter.buffer.recovery import Recovered
from kkt_adapter.domain.fiscal import FiscalResult
from kkt_adapter.domain.journal import key_digest
from kkt_adapter.hlc import HlcStamp


async def sell(api: httpx.AsyncClient, body: dict[str, Any] | None = None) -> dict[str, Any]:
    headers = new_key()
    answer = await api.post("/v1/kkt/receipt", json=body or receipt(), headers=headers)
    assert answer.status_code == 200, answer.text
    return {**answer.json(), "key": headers["Idempotency-Key"]}


async def find(api: httpx.AsyncClient, **query: Any) -> httpx.Response:
    return await api.get("/v1/kkt/receipts", params=query)


async def test_find_by_idempotency_key(api: httpx.AsyncClient) -> None:
    sold = await sell(api)
    await sell(api)
    answer = await find(api, idempotency_key=sold["key"])
    assert answer.status_code == 200, answer.text
    items = answer.json()["items"]
    assert [item["receipt_id"] for item in items] == [sold["receipt_id"]]
    assert items[0]["fiscal"]["fd"] == sold["fiscal"]["fd"]
    assert (await find(api, idempotency_key="never-used")).json()["items"] == []


async def test_find_by_key_of_a_receipt_recovered_from_the_journal(
    api: httpx.AsyncClient,
) -> None:
    # A receipt recovered from the KKT's journal is stored under the key's digest only.
    buffer = api.app.state.runtime.buffer  # type: ignore[attr-defined]
    document = {"1054": 1, "1020": 100, "1192": "REC0001"}
    result = FiscalResult(
        "REC0001", "9999000000000077", 5, "0000000005", 2, 3,
        datetime.fromisoformat("2026-11-24T13:38:00+03:00"), "t=1&fn=9999000000000077", document,
    )  # fmt: skip
    recovered = Recovered(
        result, key_digest("pos-key-1"), "f", "sale", 100, HlcStamp(1, 0, "n"), {}
    )
    assert await buffer.insert_recovered([recovered]) == 1
    items = (await find(api, idempotency_key="pos-key-1")).json()["items"]
    assert [item["receipt_id"] for item in items] == ["REC0001"]
    by_fd = (await find(api, fn="9999000000000077", fd=5)).json()["items"]
    assert [item["receipt_id"] for item in by_fd] == ["REC0001"]


async def test_find_by_fn_and_fd(api: httpx.AsyncClient) -> None:
    first, second = await sell(api), await sell(api)
    fn = second["fiscal"]["fn"]
    answer = await find(api, fn=fn, fd=second["fiscal"]["fd"])
    assert [item["receipt_id"] for item in answer.json()["items"]] == [second["receipt_id"]]
    assert first["fiscal"]["fd"] != second["fiscal"]["fd"]
    assert (await find(api, fn=fn, fd=999)).json()["items"] == []
    assert (await find(api, fn="9" * 16, fd=second["fiscal"]["fd"])).json()["items"] == []


async def test_shift_receipts_are_paged_in_order(api: httpx.AsyncClient) -> None:
    sold = [await sell(api, priced_receipt(100 + n)) for n in range(5)]
    shift, fn = sold[0]["fiscal"]["shift"], sold[0]["fiscal"]["fn"]
    pages = [(await find(api, shift=shift, page=page, limit=2)).json() for page in (1, 2, 3, 4)]
    seen = [item["receipt_id"] for body in pages for item in body["items"]]
    assert seen == [s["receipt_id"] for s in sold]
    assert [len(body["items"]) for body in pages] == [2, 2, 1, 0]
    assert pages[0]["page"] == 1 and pages[0]["limit"] == 2
    numbers = [item["fiscal"]["number_in_shift"] for body in pages for item in body["items"]]
    assert numbers == sorted(numbers)
    of_fn = (await find(api, shift=shift, fn=fn)).json()["items"]
    assert len(of_fn) == 5
    assert (await find(api, shift=shift, fn="9" * 16)).json()["items"] == []
    assert (await find(api, shift=shift + 1)).json()["items"] == []


@pytest.mark.parametrize(
    "query",
    [
        {},
        {"fn": "9999000000000001"},
        {"fd": 2},
        {"idempotency_key": "k", "shift": 1},
        {"idempotency_key": "k", "fn": "9999000000000001"},
        {"fn": "9999000000000001", "fd": 2, "shift": 1},
    ],
)
async def test_lookup_needs_exactly_one_criterion(
    api: httpx.AsyncClient, query: dict[str, Any]
) -> None:
    answer = await find(api, **query)
    assert answer.status_code == 422, answer.text
    assert answer.json()["code"] == "invalid_query"
    assert answer.json()["request_id"]


@pytest.mark.parametrize(
    "query",
    [{"fn": "12345", "fd": 1}, {"fn": "9999000000000001", "fd": 0}, {"shift": "x"},
     {"shift": 1, "limit": 501}, {"shift": 1, "page": 0}],
)  # fmt: skip
async def test_lookup_refuses_malformed_values(
    api: httpx.AsyncClient, query: dict[str, Any]
) -> None:
    answer = await find(api, **query)
    assert answer.status_code == 422, answer.text
    assert answer.json()["code"]


class Page(HTMLParser):
    """Text of elements with a ``data-testid``, rows of ``line``, and the QR image's src."""

    def __init__(self) -> None:
        super().__init__()
        self.texts: dict[str, str] = {}
        self.lines: list[list[str]] = []
        self.qr_src = ""
        self._open: list[str | None] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        named = dict(attrs)
        testid = named.get("data-testid")
        if tag == "img":
            self.qr_src = named.get("src") or ""
            return
        self._open.append(testid)
        if testid == "line":
            self.lines.append([])
        elif testid is not None:
            self.texts[testid] = ""
        if tag == "td" and "line" in self._open:
            self.lines[-1].append("")

    def handle_endtag(self, tag: str) -> None:
        if self._open:
            self._open.pop()

    def handle_data(self, data: str) -> None:
        for name in self._open:
            if name is not None and name != "line":
                self.texts[name] += data
        if "line" in self._open and self.lines and self.lines[-1]:
            self.lines[-1][-1] += data


def parse(html: str) -> Page:
    page = Page()
    page.feed(html)
    return page


async def test_view_shows_lines_totals_payments_and_fiscal_attributes(
    api: httpx.AsyncClient,
) -> None:
    body = receipt(
        items=[
            {"name": "Frame <b>Ray-Ban</b> & co", "price": "7990.00", "quantity": "1",
             "vat": "vat22"},
            {"name": "Lens cloth", "price": "150.50", "quantity": "2.5", "vat": "none"},
        ],
        payments=[{"method": "card", "amount": "7000.00"}, {"method": "cash", "amount": "1366.25"}],
    )  # fmt: skip
    sold = await sell(api, body)
    answer = await api.get(f"/v1/kkt/receipt/{sold['receipt_id']}/view")
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"].startswith("text/html")
    assert "<b>Ray-Ban</b>" not in answer.text  # escaped
    page = parse(answer.text)
    assert page.lines == [
        ["Frame <b>Ray-Ban</b> & co", "1.000", "7990.00", "7990.00", "НДС 22%"],
        ["Lens cloth", "2.500", "150.50", "376.25", "Без НДС"],
    ]
    assert page.texts["total"] == "8366.25"
    fiscal = sold["fiscal"]
    assert page.texts["fn"] == fiscal["fn"]
    assert page.texts["fd"] == str(fiscal["fd"])
    assert page.texts["fp"] == fiscal["fp"]
    assert page.texts["shift"] == str(fiscal["shift"])
    assert page.texts["number-in-shift"] == str(fiscal["number_in_shift"])
    assert page.texts["datetime"] == fiscal["datetime"]
    assert page.texts["registration-number"].isdigit()
    assert page.texts["emulator"].startswith("EMULATOR")
    assert page.qr_src.startswith("data:image/svg+xml")
    assert "@media print" in answer.text


async def test_view_of_unknown_receipt_is_404(api: httpx.AsyncClient) -> None:
    answer = await api.get("/v1/kkt/receipt/no-such-id/view")
    assert answer.status_code == 404
    assert answer.json()["code"] == "not_found"


async def test_view_of_a_receipt_not_fiscalized_is_409(api: httpx.AsyncClient) -> None:
    buffer = api.app.state.runtime.buffer  # type: ignore[attr-defined]
    await begin_intake(buffer, NewReceipt("R-open", "k-open", "f", "POS", "sale", 1, {}, {}))
    answer = await api.get("/v1/kkt/receipt/R-open/view")
    assert answer.status_code == 409
    assert answer.json()["code"] == "not_fiscalized"


async def test_openapi_describes_lookup_and_view(api: httpx.AsyncClient) -> None:
    paths = (await api.get("/openapi.json")).json()["paths"]
    lookup = paths["/v1/kkt/receipts"]["get"]
    assert {p["name"] for p in lookup["parameters"]} >= {"idempotency_key", "fn", "fd", "shift"}
    assert "422" in lookup["responses"]
    view = paths["/v1/kkt/receipt/{receipt_id}/view"]["get"]
    assert view["summary"] and {"404", "409"} <= set(view["responses"])
