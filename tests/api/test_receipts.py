"""The receipt intake API, in-process."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import httpx
import pytest
from helpers import adapter, eventually, new_key, priced_receipt, receipt

from kkt_adapter.device.base import KktDevice
from kkt_adapter.errors import DeviceError
from kkt_adapter.runtime import build_device
from kkt_adapter.settings import Settings


async def test_create_receipt_answers_with_fiscal_attributes(api: httpx.AsyncClient) -> None:
    answer = await api.post("/v1/kkt/receipt", json=receipt(), headers=new_key())
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["status"] == "pending"
    fiscal = body["fiscal"]
    assert len(fiscal["fn"]) == 16
    assert fiscal["fd"] == 2  # a new KKT: FD 1 is the shift it opened for this receipt
    assert len(fiscal["fp"]) == 10 and fiscal["fp"].isdigit()
    assert f"fn={fiscal['fn']}" in fiscal["qr"] and "s=7990.00" in fiscal["qr"]
    assert body["ofd"] == {"status": "pending", "queue_position": 1}
    assert "Idempotent-Replayed" not in answer.headers


async def test_get_receipt_returns_status_fiscal_and_hlc(api: httpx.AsyncClient) -> None:
    created = (await api.post("/v1/kkt/receipt", json=receipt(), headers=new_key())).json()
    path = f"/v1/kkt/receipt/{created['receipt_id']}"

    async def get() -> httpx.Response:
        return await api.get(path)

    # The embedded OFD (success mode) takes it at the first attempt.
    answer = await eventually(get, lambda a: a.json()["status"] == "synced", what="synced")
    assert answer.status_code == 200
    body = answer.json()
    assert body["fiscal"]["fd"] == created["fiscal"]["fd"]
    assert body["total"] == "7990.00"
    assert body["ofd"]["attempts"] == 1
    assert body["hlc"].count(".") == 2
    item = body["receipt"]["items"][0]
    assert (item["price"], item["quantity"]) == ("7990.00", "1.000")  # as sent: rubles, units
    assert "quantity_milli" not in item


async def test_cash_over_the_total_answers_the_change(api: httpx.AsyncClient) -> None:
    body = receipt(payments=[{"method": "cash", "amount": "8000"}])
    answer = await api.post("/v1/kkt/receipt", json=body, headers=new_key())
    assert answer.status_code == 200, answer.text
    created = answer.json()
    assert created["change"] == "10.00"
    assert "s=7990.00" in created["fiscal"]["qr"]  # the receipt's sum, not the cash received
    view = (await api.get(f"/v1/kkt/receipt/{created['receipt_id']}")).json()
    assert (view["total"], view["change"]) == ("7990.00", "10.00")
    assert view["receipt"]["payments"] == [{"method": "cash", "amount": "8000.00"}]  # received
    exact = await api.post("/v1/kkt/receipt", json=receipt(), headers=new_key())
    assert exact.json()["change"] == "0.00"


async def test_json_numbers_are_taken_as_decimals_and_replay_as_strings(
    api: httpx.AsyncClient,
) -> None:
    """``"price": 100.0`` is what Python's json module writes; it is 100.00, the same receipt
    (fingerprint) as ``"100.00"`` and ``100``."""
    key = new_key()
    as_numbers = (
        b'{"pos_id": "POS-001", "type": "sale", "items": [{"name": "Lens cloth", "price": 100.0,'
        b' "quantity": 1.0, "vat": "vat22"}], "payments": [{"method": "cash", "amount": 150.0}]}'
    )
    headers = {**key, "Content-Type": "application/json"}
    first = await api.post("/v1/kkt/receipt", content=as_numbers, headers=headers)
    assert first.status_code == 200, first.text
    assert first.json()["change"] == "50.00"
    for price, amount in (("100.00", "150.00"), (100, 150)):
        body = {
            "pos_id": "POS-001",
            "type": "sale",
            "items": [{"name": "Lens cloth", "price": price, "quantity": "1", "vat": "vat22"}],
            "payments": [{"method": "cash", "amount": amount}],
        }
        again = await api.post("/v1/kkt/receipt", json=body, headers=key)
        assert again.status_code == 200, again.text
        assert again.headers["idempotent-replayed"] == "true"
    too_fine = as_numbers.replace(b"100.0,", b"100.005,")
    refused = await api.post("/v1/kkt/receipt", content=too_fine, headers=new_key())
    assert refused.status_code == 422
    assert (refused.json()["code"], refused.json()["details"]["field"]) == (
        "invalid_money",
        "items[0].price",
    )


async def test_openapi_describes_the_change(api: httpx.AsyncClient) -> None:
    schema = (await api.get("/openapi.json")).json()
    ok = schema["paths"]["/v1/kkt/receipt"]["post"]["responses"]["200"]
    assert ok["content"]["application/json"]["schema"]["$ref"].endswith("/ReceiptAnswer")
    assert "change" in schema["components"]["schemas"]["ReceiptAnswer"]["required"]


async def test_unknown_receipt_is_404_with_code(api: httpx.AsyncClient) -> None:
    answer = await api.get("/v1/kkt/receipt/no-such-id")
    assert answer.status_code == 404
    assert answer.json()["code"] == "not_found"
    assert answer.json()["request_id"]


async def test_fd_numbers_strictly_increase(api: httpx.AsyncClient) -> None:
    fds = []
    for kopecks in range(100, 110):
        answer = await api.post("/v1/kkt/receipt", json=priced_receipt(kopecks), headers=new_key())
        fds.append(answer.json()["fiscal"]["fd"])
    assert fds == list(range(2, 12))  # after the auto-opened shift's FD 1, one each


async def test_hlc_stamps_increase_with_each_receipt(api: httpx.AsyncClient) -> None:
    stamps = []
    for _ in range(5):
        created = (await api.post("/v1/kkt/receipt", json=receipt(), headers=new_key())).json()
        row = (await api.get(f"/v1/kkt/receipt/{created['receipt_id']}")).json()
        wall, counter, _node = row["hlc"].split(".", 2)
        stamps.append((int(wall), int(counter)))
    assert stamps == sorted(stamps) and len(set(stamps)) == 5


class HeldKkt:
    """The emulator behind a wrapper: the first print call waits for ``release``, every call's
    size is recorded, receipts of ``refused_total`` kopecks are refused (out of paper), and
    the second call fails with ``OSError`` ``before`` or ``after`` printing, if asked."""

    def __init__(self, refused_total: int | None = None, second_fails: str | None = None) -> None:
        self.release = threading.Event()
        self.groups: list[int] = []
        self.refused_total = refused_total
        self.second_fails = second_fails

    def __call__(self, settings: Settings) -> KktDevice:
        device = build_device(settings)
        real_print = device.print_receipts

        def print_receipts(items: Any) -> list[Any]:
            self.groups.append(len(items))
            if len(self.groups) == 1:
                self.release.wait(10)
            failing = len(self.groups) == 2 and self.second_fails
            if failing == "before":
                raise OSError("the KKT's link dropped before the print")
            printed = iter(real_print([i for i in items if i[1]["1020"] != self.refused_total]))
            if failing == "after":
                raise OSError("the KKT's link dropped before its answer")
            return [
                DeviceError("out of paper", reason="out_of_paper")
                if document["1020"] == self.refused_total
                else next(printed)
                for _, document in items
            ]

        device.print_receipts = print_receipts  # type: ignore[method-assign]
        return device


async def until(check: Callable[[], Awaitable[bool]], what: str = "condition") -> None:
    await eventually(check, bool, what=what)


async def sell_behind_a_held_print(
    api: httpx.AsyncClient, kkt: HeldKkt, count: int
) -> list[httpx.Response]:
    """Receipt 1 is held at the KKT until receipts 2..count are committed and queued behind
    it; then the KKT goes on. Prices 100, 101, ... kopecks; the answers in that order."""
    runtime = api.app.state.runtime  # type: ignore[attr-defined]

    async def sell(kopecks: int) -> httpx.Response:
        return await api.post("/v1/kkt/receipt", json=priced_receipt(kopecks), headers=new_key())

    async def all_queued() -> bool:
        # From the buffer itself (the status endpoint also asks the held KKT), and then from
        # the device thread's queue: the writer hands a print over only after its commit, and
        # a print still on its way there would miss the group.
        counts = await runtime.buffer.counts()
        queued = runtime.kkt._thread._calls.qsize()
        return bool(counts.get("accepted") == count and queued == count - 1)

    first = asyncio.create_task(sell(100))
    await until(lambda: asyncio.sleep(0, bool(kkt.groups)), "the first print started")
    rest = [asyncio.create_task(sell(kopecks)) for kopecks in range(101, 100 + count)]
    await until(all_queued, "all accepted and queued for the KKT")
    kkt.release.set()
    return [await first] + [await task for task in rest]


async def test_receipts_queued_for_the_kkt_print_as_one_group_in_fd_and_hlc_order(
    settings: Settings,
) -> None:
    kkt = HeldKkt(refused_total=107)
    async with adapter(settings, kkt) as api:
        answers = await sell_behind_a_held_print(api, kkt, 40)
        refused = answers[7]
        assert refused.status_code == 503 and refused.json()["code"] == "kkt_unavailable"
        sold = answers[:7] + answers[8:]
        assert [a.status_code for a in sold] == [200] * 39
        # The held one alone, then all 39 queued behind it at once (at most MAX_GROUP, 64).
        assert kkt.groups == [1, 39]
        rows = [(await api.get(f"/v1/kkt/receipt/{a.json()['receipt_id']}")).json() for a in sold]
    stamped = sorted(
        (row["fiscal"]["fd"], tuple(map(int, row["hlc"].split(".", 2)[:2]))) for row in rows
    )
    fds = [fd for fd, _ in stamped]
    assert fds == list(range(2, 41))  # after the shift's FD 1; the refusal took no FD
    stamps = [stamp for _, stamp in stamped]
    assert stamps == sorted(stamps) and len(set(stamps)) == 39


async def test_a_group_whose_answer_is_lost_is_recorded_from_the_kkt_log(
    settings: Settings,
) -> None:
    kkt = HeldKkt(second_fails="after")
    async with adapter(settings, kkt) as api:
        answers = await sell_behind_a_held_print(api, kkt, 6)
        assert [a.status_code for a in answers] == [200] * 6, answers[-1].text
        assert kkt.groups == [1, 5]  # the lost group was looked up, not printed again
        fds = sorted(a.json()["fiscal"]["fd"] for a in answers)
        assert fds == list(range(2, 8))  # after the shift's FD 1
        status = await api.app.state.runtime.kkt.status()  # type: ignore[attr-defined]
        assert status.last_fd == fds[-1]  # each printed once: nothing printed again


async def test_a_group_failing_before_the_print_is_print_failed_and_a_retry_prints(
    settings: Settings,
) -> None:
    kkt = HeldKkt(second_fails="before")
    async with adapter(settings, kkt) as api:
        answers = await sell_behind_a_held_print(api, kkt, 4)
        assert answers[0].status_code == 200
        assert [a.json()["code"] for a in answers[1:]] == ["kkt_unavailable"] * 3
        assert kkt.groups[:2] == [1, 3]
        counts = await api.app.state.runtime.buffer.counts()  # type: ignore[attr-defined]
        assert counts["print_failed"] == 3
        retried = await api.post(
            "/v1/kkt/receipt",
            json=priced_receipt(101),
            headers={"Idempotency-Key": answers[1].request.headers["Idempotency-Key"]},
        )
        assert retried.status_code == 200
        assert retried.json()["fiscal"]["fd"] == answers[0].json()["fiscal"]["fd"] + 1
        assert kkt.groups == [1, 3, 1]  # the retry printed that one receipt alone


async def test_same_key_same_body_replays_the_stored_answer(api: httpx.AsyncClient) -> None:
    key = new_key()
    first = await api.post("/v1/kkt/receipt", json=receipt(), headers=key)
    second = await api.post("/v1/kkt/receipt", json=receipt(), headers=key)
    assert second.status_code == 200
    assert second.headers["Idempotent-Replayed"] == "true"
    assert second.json() == first.json()
    status = (await api.get("/v1/kkt/buffer/status")).json()
    assert status["total"] == 1


async def test_same_key_different_body_is_422_idempotency_key_reused(
    api: httpx.AsyncClient,
) -> None:
    key = new_key()
    await api.post("/v1/kkt/receipt", json=priced_receipt(100), headers=key)
    answer = await api.post("/v1/kkt/receipt", json=priced_receipt(200), headers=key)
    assert answer.status_code == 422
    assert answer.json()["code"] == "idempotency_key_reused"


async def test_same_key_while_in_flight_is_409_request_in_progress(settings: Settings) -> None:
    kkt = HeldKkt()
    async with adapter(settings, kkt) as api:
        key = new_key()
        first = asyncio.create_task(api.post("/v1/kkt/receipt", json=receipt(), headers=key))
        # The KKT holds the first print until released: that request is provably in flight.
        await until(lambda: asyncio.sleep(0, bool(kkt.groups)), "the first print started")
        second = await api.post("/v1/kkt/receipt", json=receipt(), headers=key)
        assert second.status_code == 409
        assert second.json()["code"] == "request_in_progress"
        assert second.headers["Retry-After"] == "1"
        kkt.release.set()
        done = await first
        assert done.status_code == 200
        assert second.json()["details"]["receipt_id"] == done.json()["receipt_id"]
        assert kkt.groups == [1]  # printed once


async def test_missing_idempotency_key_is_422_with_code(api: httpx.AsyncClient) -> None:
    answer = await api.post("/v1/kkt/receipt", json=receipt())
    assert answer.status_code == 422
    assert answer.json()["code"] == "idempotency_key_missing"


BAD_INPUTS = [
    ("malformed_json", b'{"pos_id": "POS-001", "items": [', "malformed_json"),
    ("empty_items", receipt(items=[]), "empty_items"),
    (
        "negative_price",
        receipt(
            items=[{"name": "x", "price": "-1.00", "quantity": "1", "vat": "vat22"}],
            payments=[{"method": "cash", "amount": "1.00"}],
        ),
        "invalid_money",
    ),
    (
        "three_decimal_money",
        receipt(
            items=[{"name": "x", "price": "1.005", "quantity": "1", "vat": "vat22"}],
            payments=[{"method": "cash", "amount": "1.00"}],
        ),
        "invalid_money",
    ),
    (
        "unpaid_total",
        receipt(payments=[{"method": "card", "amount": "100.00"}]),
        "payment_mismatch",
    ),
    (
        "card_over_total",
        receipt(payments=[{"method": "card", "amount": "8000.00"}]),
        "non_cash_overpayment",
    ),
    (
        "change_not_less_than_cash",
        receipt(
            payments=[{"method": "card", "amount": "7990.00"}, {"method": "cash", "amount": "10"}]
        ),
        "change_exceeds_cash",
    ),
    (
        "refund_with_change",
        receipt(type="refund", payments=[{"method": "cash", "amount": "8000.00"}]),
        "change_not_allowed",
    ),
    ("unknown_type", receipt(type="gift"), "invalid_receipt_type"),
    (
        "absurd_quantity",
        receipt(
            items=[{"name": "x", "price": "1.00", "quantity": "100000000", "vat": "vat22"}],
            payments=[{"method": "cash", "amount": "100000000.00"}],
        ),
        "invalid_quantity",
    ),
    ("missing_fields", {"pos_id": "POS-001"}, "missing_field"),
    ("wrong_types", receipt(items="three frames"), "invalid_type"),
    ("unknown_field", receipt(discount="10%"), "unknown_field"),
    (
        "retired_vat20",
        receipt(items=[dict(receipt()["items"][0], vat="vat20")]),
        "vat_rate_retired",
    ),
]


@pytest.mark.parametrize(("name", "body", "code"), BAD_INPUTS, ids=[b[0] for b in BAD_INPUTS])
async def test_bad_input_is_422_with_a_stable_code(
    api: httpx.AsyncClient, name: str, body: object, code: str
) -> None:
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    answer = await api.post(
        "/v1/kkt/receipt",
        content=content,
        headers={**new_key(), "Content-Type": "application/json"},
    )
    assert answer.status_code == 422, answer.text
    error = answer.json()
    assert error["code"] == code, error
    assert error["message"]
    assert error["request_id"]
    status = (await api.get("/v1/kkt/buffer/status")).json()
    assert status["total"] == 0  # nothing stored for a refused request


async def test_oversized_body_is_413_with_code(api: httpx.AsyncClient) -> None:
    huge = receipt(pos_id="P" * (200 * 1024))
    answer = await api.post("/v1/kkt/receipt", json=huge, headers=new_key())
    assert answer.status_code == 413
    assert answer.json()["code"] == "payload_too_large"


async def test_oversized_chunked_body_is_413_on_the_intake_path(api: httpx.AsyncClient) -> None:
    async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: the size shows as it comes
        yield b'{"pos_id": "'
        for _ in range(100):
            yield b"P" * 1024

    answer = await api.post("/v1/kkt/receipt", content=chunks(), headers=new_key())
    assert answer.status_code == 413, answer.text
    body = answer.json()
    assert body.keys() == {"code", "message", "details", "request_id"}
    assert body["code"] == "payload_too_large" and body["details"] == {"limit_bytes": 65536}
    assert body["request_id"] == answer.headers["X-Request-ID"]
    assert (await api.get("/v1/kkt/buffer/status")).json()["total"] == 0


@pytest.mark.parametrize("settings", [{"buffer_capacity": 3}], indirect=True)
async def test_full_buffer_is_503_buffer_full_and_accepts_nothing(api: httpx.AsyncClient) -> None:
    await api.post("/ofd-emulator/_control/mode", json={"mode": "fail"})  # nothing drains
    for kopecks in (100, 200, 300):
        ok = await api.post("/v1/kkt/receipt", json=priced_receipt(kopecks), headers=new_key())
        assert ok.status_code == 200
    refused = await api.post("/v1/kkt/receipt", json=priced_receipt(400), headers=new_key())
    assert refused.status_code == 503
    assert refused.json()["code"] == "buffer_full"
    assert refused.json()["details"] == {"reason": "capacity", "capacity": 3, "unsynced": 3}
    assert refused.headers["Retry-After"] == "30"
    status = (await api.get("/v1/kkt/buffer/status")).json()
    assert status["total"] == 3
    assert status["percent_full"] == 100.0
    assert any(alert["code"] == "buffer_full" for alert in status["alerts"])


@pytest.mark.parametrize("settings", [{"buffer_min_free_mb": 10_000_000}], indirect=True)
async def test_below_the_free_disk_floor_a_sale_is_503_buffer_full_and_nothing_is_printed(
    api: httpx.AsyncClient,
) -> None:
    # A floor of 10 TB: more than any test machine has free, so the real disk is below it.
    refused = await api.post("/v1/kkt/receipt", json=priced_receipt(100), headers=new_key())
    assert refused.status_code == 503, refused.text
    body = refused.json()
    assert body["code"] == "buffer_full"
    assert body["details"]["reason"] == "disk"
    assert body["details"]["min_free_bytes"] == 10_000_000 * 1024 * 1024
    assert 0 <= body["details"]["free_bytes"] < body["details"]["min_free_bytes"]
    assert refused.headers["Retry-After"] == "30"
    status = (await api.get("/v1/kkt/buffer/status")).json()
    assert (status["total"], status["print_failed"]) == (0, 0)  # not printed, not stored
    device = api.app.state.runtime.kkt.driver  # type: ignore[attr-defined]
    assert device.status().last_fd == 0  # the KKT printed nothing, not even a shift opening
    # The operator learns it before the cashier does: status, health and /metrics say it.
    disk = [alert for alert in status["alerts"] if alert["code"] == "disk_low"]
    assert [alert["level"] for alert in disk] == ["critical"]
    assert "KKT_BUFFER_MIN_FREE_MB" in disk[0]["message"]
    metrics = (await api.get("/metrics")).text
    gauges = {line.split()[0]: float(line.split()[1]) for line in metrics.splitlines()
              if line.startswith("kkt_buffer_disk_")}  # fmt: skip
    assert gauges["kkt_buffer_disk_min_free_bytes"] == 10_000_000 * 2**20
    assert 0 <= gauges["kkt_buffer_disk_free_bytes"] < gauges["kkt_buffer_disk_min_free_bytes"]


async def test_device_fault_is_503_kkt_unavailable_and_a_retry_prints(
    api: httpx.AsyncClient,
) -> None:
    device = api.app.state.runtime.kkt.driver  # type: ignore[attr-defined]
    device.set_fault("out_of_paper")
    key = new_key()
    refused = await api.post("/v1/kkt/receipt", json=receipt(), headers=key)
    assert refused.status_code == 503
    assert refused.json()["code"] == "kkt_unavailable"
    assert refused.json()["details"]["reason"] == "out_of_paper"
    assert refused.headers["Retry-After"] == "5"
    status = (await api.get("/v1/kkt/buffer/status")).json()
    assert status["print_failed"] == 1 and status["pending"] == 0
    warnings = (await api.get("/v1/kkt/buffer/logs", params={"level": "warning"})).json()
    [failed] = [item for item in warnings["items"] if item["event"] == "print_failed"]
    device.set_fault(None)
    retried = await api.post("/v1/kkt/receipt", json=receipt(), headers=key)
    assert retried.status_code == 200
    receipt_id = retried.json()["receipt_id"]
    assert receipt_id == failed["receipt_id"]  # the refused receipt was printed, not a new one
    logs = (await api.get("/v1/kkt/buffer/logs", params={"receipt_id": receipt_id})).json()
    oldest_first = [item["event"] for item in reversed(logs["items"])]
    assert oldest_first[:4] == ["accepted", "print_failed", "print_retry", "fiscalized"]
    status = (await api.get("/v1/kkt/buffer/status")).json()
    assert (status["total"], status["accepted"], status["print_failed"]) == (1, 0, 0)
