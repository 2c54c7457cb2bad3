"""Cash in and out, the X and Z reports' figures and the kept Z reports, through the API."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from helpers import new_key, priced_receipt

from kkt_adapter.domain.shift_totals import CashKind


async def cash(api: httpx.AsyncClient, kind: str, body: Any, key: str | None = None) -> Any:
    headers = {"Idempotency-Key": key} if key else new_key()
    return await api.post(f"/v1/kkt/cash/{kind}", json=body, headers=headers)


async def test_cash_in_and_out_answer_and_move_the_drawer(api: httpx.AsyncClient) -> None:
    cash_in = await cash(api, "in", {"amount": "500.00", "cashier": "Ivanova A."})
    assert cash_in.status_code == 200, cash_in.text
    body = cash_in.json()
    assert body.keys() == {"operation_id", "kind", "amount", "shift", "number", "at",
                           "drawer_cash"}  # fmt: skip
    assert (body["kind"], body["amount"], body["number"], body["drawer_cash"]) == (
        "cash_in", "500.00", 1, "500.00",
    )  # fmt: skip
    sold = await api.post("/v1/kkt/receipt", json=priced_receipt(12_345), headers=new_key())
    assert sold.status_code == 200
    out = (await cash(api, "out", {"amount": 100})).json()  # integer rubles
    assert (out["kind"], out["amount"], out["number"], out["drawer_cash"]) == (
        "cash_out", "100.00", 2, "523.45",
    )  # fmt: skip
    assert out["shift"] == body["shift"]


async def test_a_replay_returns_the_stored_answer_and_another_body_is_refused(
    api: httpx.AsyncClient,
) -> None:
    first = await cash(api, "in", {"amount": "10.00"}, key="cash-1")
    again = await cash(api, "in", {"amount": "10"}, key="cash-1")  # the same amount
    assert again.status_code == 200 and again.json() == first.json()
    assert again.headers["idempotent-replayed"] == "true"
    assert "idempotent-replayed" not in first.headers
    other = await cash(api, "in", {"amount": "11.00"}, key="cash-1")
    assert other.status_code == 422 and other.json()["code"] == "idempotency_key_reused"
    x = (await api.post("/v1/kkt/x_report")).json()
    assert x["cash_in"] == {"amount": "10.00", "count": 1}  # done once


@pytest.mark.parametrize("amount", ["0", "-1.00", "0.001", 10.005, "100000000000.00", True, None])
async def test_bad_amounts_are_invalid_money(api: httpx.AsyncClient, amount: Any) -> None:
    refused = await cash(api, "in", {"amount": amount})
    assert refused.status_code == 422
    assert refused.json()["code"] == "invalid_money"
    assert refused.json()["details"]["field"] == "amount"


async def test_a_json_number_amount_is_a_decimal(api: httpx.AsyncClient) -> None:
    """``{"amount": 10.5}`` is what Python's json module writes: 10.50, and echoed so."""
    done = await cash(api, "in", {"amount": 10.5}, key="cash-decimal")
    assert done.status_code == 200 and done.json()["amount"] == "10.50"
    again = await cash(api, "in", {"amount": "10.50"}, key="cash-decimal")
    assert again.headers["idempotent-replayed"] == "true"


async def test_the_key_is_required_and_unknown_fields_refused(api: httpx.AsyncClient) -> None:
    missing = await api.post("/v1/kkt/cash/in", json={"amount": "1.00"})
    assert missing.status_code == 422 and missing.json()["code"] == "idempotency_key_missing"
    extra = await cash(api, "in", {"amount": "1.00", "reason": "float"})
    assert extra.status_code == 422


async def test_cash_out_beyond_the_drawer_is_409_and_can_be_retried(
    api: httpx.AsyncClient,
) -> None:
    await cash(api, "in", {"amount": "50.00"})
    refused = await cash(api, "out", {"amount": "50.01"}, key="out-1")
    assert refused.status_code == 409 and refused.json()["code"] == "insufficient_cash"
    assert refused.json()["details"] == {"drawer_cash": "50.00", "requested": "50.01"}
    await cash(api, "in", {"amount": "1.00"})
    retried = await cash(api, "out", {"amount": "50.01"}, key="out-1")  # refused: not done
    assert retried.status_code == 200 and retried.json()["drawer_cash"] == "0.99"


@pytest.mark.parametrize("settings", [{"auto_open_shift": False}], indirect=True)
async def test_without_an_open_shift_it_is_refused_as_a_receipt(api: httpx.AsyncClient) -> None:
    refused = await cash(api, "in", {"amount": "1.00"})
    assert refused.status_code == 503 and refused.json()["code"] == "kkt_unavailable"
    assert refused.json()["details"]["reason"] == "shift_closed"
    await api.post("/v1/kkt/shift/open")
    assert (await cash(api, "in", {"amount": "1.00"})).status_code == 200


async def test_device_faults_are_kkt_unavailable(api: httpx.AsyncClient) -> None:
    api.app.state.runtime.kkt.driver.set_fault("out_of_paper")  # type: ignore[attr-defined]
    refused = await cash(api, "in", {"amount": "1.00"}, key="paper")
    assert refused.status_code == 503 and refused.json()["details"]["reason"] == "out_of_paper"
    assert refused.headers["retry-after"] == "5"
    api.app.state.runtime.kkt.driver.set_fault(None)  # type: ignore[attr-defined]
    assert (await cash(api, "in", {"amount": "1.00"}, key="paper")).status_code == 200


async def test_a_crash_after_the_kkt_acted_is_settled_from_the_kkt(api: httpx.AsyncClient) -> None:
    """The KKT did it but the answer was never recorded (the adapter died between): the retry
    finds it on the KKT by the operation id and does not move the cash twice."""
    runtime = api.app.state.runtime  # type: ignore[attr-defined]
    from kkt_adapter.buffer.cash import NewCash
    from kkt_adapter.cash_desk import CashRequest

    request = CashRequest(CashKind.CASH_IN, 2_000, None)  # type: ignore[arg-type]
    start = await runtime.buffer.cash.begin(
        NewCash("OPCRASHED0000001", "crashed", request.fingerprint(), CashKind.CASH_IN,
                2_000, None)  # type: ignore[arg-type]
    )  # fmt: skip
    runtime.kkt.driver.cash_operation(start.operation_id, CashKind.CASH_IN, 2_000, None)
    retried = await cash(api, "in", {"amount": "20.00"}, key="crashed")
    assert retried.status_code == 200, retried.text
    assert retried.json()["operation_id"] == "OPCRASHED0000001"
    x = (await api.post("/v1/kkt/x_report")).json()
    assert x["cash_in"] == {"amount": "20.00", "count": 1} and x["drawer_cash"] == "20.00"


async def test_left_over_operations_nobody_retries_are_settled_by_housekeeping(
    api: httpx.AsyncClient,
) -> None:
    """The adapter died between the KKT's act and its record, and the POS never retried: the
    sweep records what the KKT did, and marks what it did not do failed (a retry does it)."""
    runtime = api.app.state.runtime  # type: ignore[attr-defined]
    from kkt_adapter.buffer.cash import NewCash
    from kkt_adapter.buffer.retention import Retention
    from kkt_adapter.cash_desk import CashRequest
    from kkt_adapter.housekeeping import Housekeeper

    def new(op: str, key: str, amount: int) -> NewCash:
        request = CashRequest(CashKind.CASH_IN, amount, None)  # type: ignore[arg-type]
        return NewCash(op, key, request.fingerprint(), CashKind.CASH_IN, amount, None)  # type: ignore[arg-type]

    await runtime.buffer.cash.begin(new("OPDONE0000000001", "done-on-kkt", 3_000))
    runtime.kkt.driver.cash_operation("OPDONE0000000001", CashKind.CASH_IN, 3_000, None)
    await runtime.buffer.cash.begin(new("OPNEVER000000001", "never-done", 500))
    sweeper = Housekeeper(
        runtime.buffer, runtime.intake, runtime.journal, Retention.from_days(7, 90, 100),
        cash=runtime.cash, period=60, leftover_idle_ms=0,
    )  # fmt: skip
    assert (await sweeper.sweep()).settled == 2
    assert await runtime.buffer.cash.leftovers(runtime.buffer.now_ms() + 1) == []
    replay = await cash(api, "in", {"amount": "30.00"}, key="done-on-kkt")
    assert replay.headers["idempotent-replayed"] == "true"  # recorded by the sweep
    assert replay.json()["operation_id"] == "OPDONE0000000001"
    retried = await cash(api, "in", {"amount": "5.00"}, key="never-done")
    assert retried.status_code == 200 and "idempotent-replayed" not in retried.headers
    x = (await api.post("/v1/kkt/x_report")).json()
    assert x["cash_in"] == {"amount": "35.00", "count": 2}  # each once


async def test_x_and_z_reports_give_the_shift_figures_and_z_is_kept(
    api: httpx.AsyncClient,
) -> None:
    await cash(api, "in", {"amount": "100.00"})
    await api.post("/v1/kkt/receipt", json=priced_receipt(12_200), headers=new_key())
    refund = {**priced_receipt(2_440), "type": "refund"}
    assert (await api.post("/v1/kkt/receipt", json=refund, headers=new_key())).status_code == 200
    await cash(api, "out", {"amount": "30.00"})
    x = (await api.post("/v1/kkt/x_report")).json()
    assert x["counts"] == {"sale": 1, "refund": 1, "expense": 0, "expense_refund": 0}
    assert x["payments"]["sale"]["cash"] == "122.00" and x["payments"]["refund"]["cash"] == "24.40"
    assert x["vat"]["sale"] == {"vat22": {"amount": "122.00", "vat": "22.00"}}
    assert x["cash_out"] == {"amount": "30.00", "count": 1}
    assert x["drawer_cash"] == "167.60"  # 100 + 122 - 24.40 - 30
    z = (await api.post("/v1/kkt/shift/close")).json()
    assert z["kind"] == "z" and z["drawer_cash"] == "167.60" and z["fn"]
    listed = (await api.get("/v1/kkt/shifts")).json()
    assert [item["shift"] for item in listed["items"]] == [z["shift"]]
    kept = await api.get(f"/v1/kkt/shifts/{z['shift']}/z_report")
    assert kept.status_code == 200 and kept.json() == z
    by_fn = await api.get(f"/v1/kkt/shifts/{z['shift']}/z_report", params={"fn": z["fn"]})
    assert by_fn.json() == z
    await cash(api, "in", {"amount": "1.00"})  # opens the next shift
    second = (await api.post("/v1/kkt/shift/close")).json()
    newest = (await api.get("/v1/kkt/shifts", params={"limit": 1})).json()["items"]
    assert [item["shift"] for item in newest] == [second["shift"]]
    page = (await api.get("/v1/kkt/shifts", params={"before": second["shift"]})).json()
    assert [item["shift"] for item in page["items"]] == [z["shift"]]


async def test_an_open_or_unknown_shift_has_no_z_report(api: httpx.AsyncClient) -> None:
    await cash(api, "in", {"amount": "1.00"})
    missing = await api.get("/v1/kkt/shifts/1/z_report")
    assert missing.status_code == 404 and missing.json()["code"] == "not_found"
    assert (await api.get("/v1/kkt/shifts/99/z_report")).status_code == 404
    assert (await api.get("/v1/kkt/shifts")).json()["items"] == []
    # A number beyond any shift (and beyond SQLite's integers) is a clear 422, not a 500.
    huge = await api.get("/v1/kkt/shifts/5535325924998489101565952/z_report")
    assert huge.status_code == 422 and huge.json()["code"] == "validation_error"


async def test_openapi_describes_the_cash_and_shift_routes(api: httpx.AsyncClient) -> None:
    paths = (await api.get("/openapi.json")).json()["paths"]
    for path in ("/v1/kkt/cash/in", "/v1/kkt/cash/out"):
        operation = paths[path]["post"]
        assert any(p["name"] == "Idempotency-Key" for p in operation["parameters"])
        body = operation["requestBody"]["content"]["application/json"]["schema"]
        assert "amount" in body["properties"]
        assert {"200", "409", "422", "503"} <= set(operation["responses"])
    assert "/v1/kkt/shifts" in paths and "/v1/kkt/shifts/{shift}/z_report" in paths
