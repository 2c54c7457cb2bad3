"""Buffer status, health, shift endpoints and the API's own documentation, in-process."""

from __future__ import annotations

import httpx
import pytest
from helpers import new_key, receipt

STATUS_FIELDS = {
    "total", "accepted", "pending", "syncing", "synced", "failed", "dlq", "total_capacity",
    "current_queued", "percent_full", "oldest_pending", "network_status", "circuit_breaker",
    "last_sync", "alerts",
}  # fmt: skip


# Failures while the OFD emulator fails must not open the breaker mid-test.
@pytest.mark.parametrize("settings", [{"breaker_failures": 100}], indirect=True)
async def test_buffer_status_counts_and_oldest_pending(api: httpx.AsyncClient) -> None:
    await api.post("/ofd-emulator/_control/mode", json={"mode": "fail"})  # keep them pending
    empty = (await api.get("/v1/kkt/buffer/status")).json()
    assert empty.keys() >= STATUS_FIELDS
    assert empty["total"] == 0 and empty["oldest_pending"] is None
    first = (await api.post("/v1/kkt/receipt", json=receipt(), headers=new_key())).json()
    await api.post("/v1/kkt/receipt", json=receipt(), headers=new_key())
    status = (await api.get("/v1/kkt/buffer/status")).json()
    assert (status["total"], status["pending"] + status["syncing"], status["synced"]) == (2, 2, 0)
    assert status["current_queued"] == 2
    assert status["percent_full"] == 1.0  # 2 of 200
    assert status["oldest_pending"]["receipt_id"] == first["receipt_id"]
    assert 0 <= status["oldest_pending"]["age_hours"] < 1
    assert status["alerts"] == []
    assert status["circuit_breaker"] == "CLOSED"


async def test_health_reports_the_emulated_kkt_and_the_buffer(api: httpx.AsyncClient) -> None:
    answer = await api.get("/v1/health")
    assert answer.status_code == 200
    body = answer.json()
    assert body["status"] == "healthy"  # every component ok, the ERP not configured
    assert set(body["components"]) == {"kkt", "ofd", "buffer", "erp"}
    kkt = body["components"]["kkt"]
    assert kkt["status"] == "ok" and kkt["emulator"] is True  # I7
    assert body["components"]["buffer"]["status"] == "ok"


async def test_health_is_503_unhealthy_when_the_kkt_cannot_print(api: httpx.AsyncClient) -> None:
    api.app.state.runtime.kkt.driver.set_fault("offline")  # type: ignore[attr-defined]
    answer = await api.get("/v1/health")
    assert answer.status_code == 503
    assert answer.json()["status"] == "unhealthy"
    assert answer.json()["components"]["kkt"]["problems"] == ["offline"]


async def test_shift_lifecycle_open_x_close(api: httpx.AsyncClient) -> None:
    closed = (await api.get("/v1/kkt/shift")).json()
    assert closed["open"] is False and closed["emulator"] is True
    opened = await api.post("/v1/kkt/shift/open", json={"cashier": "Ivanova A."})
    assert opened.status_code == 200 and opened.json()["kind"] == "open"
    again = await api.post("/v1/kkt/shift/open")
    assert again.status_code == 409 and again.json()["code"] == "shift_state_conflict"
    await api.post("/v1/kkt/receipt", json=receipt(), headers=new_key())
    x_report = (await api.post("/v1/kkt/x_report")).json()
    assert x_report["kind"] == "x" and x_report["receipts"] == 1
    assert x_report["totals"]["sale"] == "7990.00"
    z_report = (await api.post("/v1/kkt/shift/close")).json()
    assert z_report["kind"] == "z" and z_report["receipts"] == 1
    assert (await api.get("/v1/kkt/shift")).json()["open"] is False
    events = (await api.get("/v1/kkt/shift")).json()
    assert events["shift"] == opened.json()["shift"]


@pytest.mark.parametrize("settings", [{"auto_open_shift": False}], indirect=True)
async def test_without_auto_open_a_receipt_needs_an_open_shift(api: httpx.AsyncClient) -> None:
    refused = await api.post("/v1/kkt/receipt", json=receipt(), headers=new_key())
    assert refused.status_code == 503
    assert refused.json()["details"]["reason"] == "shift_closed"
    await api.post("/v1/kkt/shift/open")
    assert (await api.post("/v1/kkt/receipt", json=receipt(), headers=new_key())).status_code == 200


async def test_openapi_documents_the_receipt_request_with_an_example(
    api: httpx.AsyncClient,
) -> None:
    schema = (await api.get("/openapi.json")).json()
    operation = schema["paths"]["/v1/kkt/receipt"]["post"]
    ref = operation["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    model = schema["components"]["schemas"][ref.rsplit("/", 1)[1]]
    assert model.get("examples") or model.get("example")
    assert any(p["name"] == "Idempotency-Key" for p in operation["parameters"])
    assert "/v1/health" in schema["paths"] and "/v1/kkt/shift/close" in schema["paths"]
    docs = await api.get("/docs")
    assert docs.status_code == 200 and "swagger" in docs.text.lower()


async def test_unknown_path_and_wrong_method_have_codes(api: httpx.AsyncClient) -> None:
    missing = await api.get("/v1/nothing-here")
    assert missing.status_code == 404 and missing.json()["code"] == "not_found"
    wrong = await api.get("/v1/kkt/shift/open")
    assert wrong.status_code == 405 and wrong.json()["code"] == "method_not_allowed"


async def test_request_id_is_echoed(api: httpx.AsyncClient) -> None:
    answer = await api.get("/v1/kkt/receipt/x", headers={"X-Request-ID": "req-42"})
    assert answer.headers["X-Request-ID"] == "req-42"
    assert answer.json()["request_id"] == "req-42"
