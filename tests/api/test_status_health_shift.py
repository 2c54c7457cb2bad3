"""Buffer status, health, shift endpoints and the API's own documentation, in-process."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence
from typing import Any

import httpx
import pytest
from helpers import adapter, eventually, new_key, priced_receipt, receipt

from kkt_adapter.device.base import DeviceStatus, KktDevice
from kkt_adapter.runtime import build_device
from kkt_adapter.settings import Settings

STATUS_FIELDS = {
    "total", "accepted", "pending", "syncing", "synced", "failed", "dlq", "total_capacity",
    "current_queued", "percent_full", "oldest_pending", "network_status", "circuit_breaker",
    "last_sync", "alerts",
}  # fmt: skip


# Failures while the OFD emulator fails must not open the breaker mid-test.
@pytest.mark.parametrize(
    "settings", [{"breaker_failures": 100, "buffer_capacity": 200}], indirect=True
)
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


# The device's status is re-read between prints: here every 50 ms while the KKT is idle.
QUICK_REFRESH = {"device_status_refresh_seconds": 0.05}


@pytest.mark.parametrize("settings", [QUICK_REFRESH], indirect=True)
async def test_health_is_503_unhealthy_when_the_kkt_cannot_print(api: httpx.AsyncClient) -> None:
    api.app.state.runtime.kkt.driver.set_fault("offline")  # type: ignore[attr-defined]
    answer = await eventually(
        lambda: api.get("/v1/health"), lambda a: a.status_code == 503, what="offline seen"
    )
    assert answer.json()["status"] == "unhealthy"
    assert answer.json()["components"]["kkt"]["problems"] == ["offline"]
    assert answer.json()["components"]["kkt"]["emulator"] is True  # I7


# -- status and health never wait for the device (issue 12) --------------------------------

PRINT_MS = 500
ANSWER_WITHIN_S = 0.25  # half a print: an answer that queued behind one cannot make it


@pytest.mark.parametrize("settings", [{"print_delay_ms": PRINT_MS}], indirect=True)
async def test_status_and_health_answer_while_the_kkt_prints(api: httpx.AsyncClient) -> None:
    runtime = api.app.state.runtime  # type: ignore[attr-defined]
    sales = [
        asyncio.create_task(
            api.post("/v1/kkt/receipt", json=priced_receipt(100 + n, f"POS-{n}"), headers=new_key())
        )
        for n in range(4)
    ]  # four tills: the KKT prints for about 2 s, one receipt at a time
    await eventually(runtime.buffer.counts, lambda c: c.get("accepted", 0) >= 1, what="a print")
    answers = 0
    while not all(sale.done() for sale in sales):
        for path in ("/v1/kkt/buffer/status", "/v1/health"):
            answer = await asyncio.wait_for(api.get(path), ANSWER_WITHIN_S)
            assert answer.status_code == 200, answer.text
            answers += 1
        await asyncio.sleep(0.02)  # a poll interval, under the rate limit
    assert answers >= 4  # both were asked while receipts were being printed
    assert [sale.result().status_code for sale in sales] == [200] * 4
    kkt = (await api.get("/v1/health")).json()["components"]["kkt"]
    assert kkt["emulator"] is True and kkt["measured_at"] is not None


async def test_the_kkt_snapshot_follows_the_prints(api: httpx.AsyncClient) -> None:
    before = (await api.get("/v1/health")).json()["components"]["kkt"]
    assert before["measured_at"] is not None  # read at start-up, before serving
    assert 0 <= before["age_seconds"] < 10
    fd = (await api.post("/v1/kkt/receipt", json=receipt(), headers=new_key())).json()["fiscal"][
        "fd"
    ]

    async def kkt() -> dict[str, Any]:
        health: dict[str, Any] = (await api.get("/v1/health")).json()
        return health["components"]["kkt"]

    after = await eventually(kkt, lambda k: k["last_fd"] == fd, what="the print in the snapshot")
    assert after["measured_at"] > before["measured_at"] and after["shift_open"] is True
    assert after["status"] == "ok" and after["problems"] == []


class FlakyKkt:
    """The emulator behind a wrapper: prints wait for ``release`` while ``hold`` is set, and
    the status call fails while ``unreachable`` is set, as a register that stops answering."""

    def __init__(self) -> None:
        self.hold = threading.Event()
        self.release = threading.Event()
        self.printing = threading.Event()
        self.unreachable = False

    def __call__(self, settings: Settings) -> KktDevice:
        device = build_device(settings)
        real_print, real_status = device.print_receipts, device.status

        def print_receipts(items: Sequence[Any]) -> list[Any]:
            if self.hold.is_set():
                self.printing.set()
                self.release.wait(10)
            return real_print(items)

        def status() -> DeviceStatus:
            if self.unreachable:
                raise OSError("no answer from the KKT on /dev/ttyACM0")
            return real_status()

        device.print_receipts = print_receipts  # type: ignore[method-assign]
        device.status = status  # type: ignore[method-assign]
        return device


async def kkt_health(api: httpx.AsyncClient) -> httpx.Response:
    """``GET /v1/health``, which must answer at once whatever the device does."""
    return await asyncio.wait_for(api.get("/v1/health"), ANSWER_WITHIN_S)


async def test_health_says_the_snapshot_is_stale_while_a_print_hangs(
    settings: Settings,
) -> None:
    kkt = FlakyKkt()
    quick = {"device_status_refresh_seconds": 0.05, "device_status_stale_seconds": 0.3}
    async with adapter(settings.model_copy(update=quick), kkt) as api:
        kkt.hold.set()
        sale = asyncio.create_task(api.post("/v1/kkt/receipt", json=receipt(), headers=new_key()))
        await eventually(lambda: asyncio.sleep(0, kkt.printing.is_set()), bool, what="printing")
        stale = await eventually(
            lambda: kkt_health(api),
            lambda a: "status_stale" in a.json()["components"]["kkt"]["problems"],
            what="the stale snapshot reported",
        )
        body = stale.json()
        assert stale.status_code == 200 and body["status"] == "degraded"
        component = body["components"]["kkt"]
        assert component["status"] == "warning" and component["age_seconds"] >= 0.3
        # The device has been on the print since about the last reading (read idle, 50 ms).
        assert component["busy_seconds"] >= component["age_seconds"] - 0.1
        assert not sale.done()
        kkt.release.set()
        fd = (await sale).json()["fiscal"]["fd"]
        fresh = await eventually(
            lambda: kkt_health(api),
            lambda a: a.json()["components"]["kkt"]["last_fd"] == fd,
            what="a fresh snapshot after the print",
        )
        assert fresh.json()["components"]["kkt"]["problems"] == []
        assert fresh.json()["components"]["kkt"]["busy_seconds"] is None


async def test_health_says_the_kkt_is_unreachable_when_its_status_fails(
    settings: Settings,
) -> None:
    kkt = FlakyKkt()
    async with adapter(settings.model_copy(update=QUICK_REFRESH), kkt) as api:
        measured = (await kkt_health(api)).json()["components"]["kkt"]["measured_at"]
        kkt.unreachable = True
        down = await eventually(
            lambda: kkt_health(api), lambda a: a.status_code == 503, what="unreachable seen"
        )
        component = down.json()["components"]["kkt"]
        assert component["status"] == "error" and component["problems"] == ["unreachable"]
        assert "no answer from the KKT" in component["error"]
        assert component["emulator"] is True  # I7, from the last reading that succeeded
        assert component["measured_at"] >= measured  # the last good reading, not a new one
        status = (await api.get("/v1/kkt/buffer/status")).json()
        assert status["total"] == 0  # buffer status still answers
        kkt.unreachable = False
        back = await eventually(
            lambda: kkt_health(api), lambda a: a.status_code == 200, what="reachable again"
        )
        assert back.json()["components"]["kkt"]["problems"] == []


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
