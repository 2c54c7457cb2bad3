"""Failed prints are not unsent fiscal documents: they use no capacity, are bounded and
expire on their own, and an operator can clear them."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from helpers import new_key, priced_receipt

from kkt_adapter.api.guard import Access, access_for


async def sell(api: httpx.AsyncClient, kopecks: int, key: dict[str, str] | None = None) -> Any:
    return await api.post("/v1/kkt/receipt", json=priced_receipt(kopecks), headers=key or new_key())


async def status(api: httpx.AsyncClient) -> dict[str, Any]:
    body: dict[str, Any] = (await api.get("/v1/kkt/buffer/status")).json()
    return body


@pytest.mark.parametrize("settings", [{"buffer_capacity": 3}], indirect=True)
async def test_paper_out_and_retries_with_new_keys_do_not_fill_the_buffer(
    api: httpx.AsyncClient,
) -> None:
    device = api.app.state.runtime.kkt.driver  # type: ignore[attr-defined]
    device.set_fault("out_of_paper")
    for n in range(5):  # the POS retries each refused sale under a new key
        refused = await sell(api, 100 + n)
        assert refused.status_code == 503 and refused.json()["code"] == "kkt_unavailable"
    current = await status(api)
    assert current["print_failed"] == 5
    assert (current["current_queued"], current["percent_full"]) == (0, 0.0)
    assert not any(alert["code"].startswith("buffer_") for alert in current["alerts"])
    device.set_fault(None)
    for n in range(3):  # the whole capacity is there for fiscal documents
        sold = await sell(api, 200 + n)
        assert sold.status_code == 200, sold.text


async def test_an_operator_clears_failed_prints(api: httpx.AsyncClient) -> None:
    device = api.app.state.runtime.kkt.driver  # type: ignore[attr-defined]
    device.set_fault("out_of_paper")
    keys = [new_key() for _ in range(3)]
    for n, key in enumerate(keys):
        assert (await sell(api, 100 + n, key)).status_code == 503
    device.set_fault(None)
    assert (await sell(api, 500)).status_code == 200  # a fiscal document: never cleared
    cleared = await api.post("/v1/kkt/print_failed/clear")
    assert cleared.status_code == 200, cleared.text
    assert cleared.json() == {"cleared": 3}
    current = await status(api)
    assert (current["print_failed"], current["total"]) == (0, 1)
    logs = (await api.get("/v1/kkt/buffer/logs", params={"level": "warning"})).json()["items"]
    assert [item["message"] for item in logs if item["event"] == "print_failed_cleared"] == [
        "3 receipts the KKT refused to print were cleared by an operator"
    ]
    # A POS retry under a cleared key is a new sale: it was never printed.
    again = await sell(api, 100, keys[0])
    assert again.status_code == 200 and again.headers.get("Idempotent-Replayed") is None
    assert (await api.post("/v1/kkt/print_failed/clear")).json() == {"cleared": 0}


def test_clearing_failed_prints_needs_the_admin_token() -> None:
    assert access_for("POST", "/v1/kkt/print_failed/clear") is Access.ADMIN
