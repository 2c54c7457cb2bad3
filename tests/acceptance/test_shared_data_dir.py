"""Two ``kkt-adapter serve`` processes on one data dir: who owns a row, and who leads.

A receipt is ``accepted`` while its process prints it; another process must never settle it
then (it may be printing right now), but must settle it once that process is dead, and a
standby must be able to finish a sale its primary died on. A killed leader's sync lease must
not block delivery for its TTL once its successor starts.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from chaos import buffer_statuses, device_log, device_receipts, held_device_gate
from conftest import Process, wait_until
from helpers import new_key, receipt

pytestmark = pytest.mark.acceptance

Start = Callable[..., Process]
FAST = {"KKT_DELIVERY_SWEEP_SECONDS": "0.1", "KKT_BACKOFF_BASE_SECONDS": "0.05"}


def _accepted(data: Path) -> list[str]:
    return [rid for rid, status in buffer_statuses(data).items() if status == "accepted"]


def _post(http: httpx.Client, body: dict[str, Any], key: dict[str, str], out: list[Any]) -> None:
    try:
        out.append(http.post("/v1/kkt/receipt", json=body, headers=key))
    except httpx.TransportError as exc:  # the process was killed mid-request
        out.append(exc)


def test_a_second_process_leaves_a_receipt_the_first_is_printing_alone(
    start_adapter: Start, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    key, body = new_key(), receipt()
    first = start_adapter(data, env=FAST)
    answers: list[Any] = []
    with first.client() as http:
        with held_device_gate(data):
            posting = threading.Thread(target=_post, args=(http, body, key, answers))
            posting.start()
            [receipt_id] = wait_until(lambda: _accepted(data), timeout=15, what="accepted")
            second = start_adapter(data, env=FAST)  # it reconciles while the first waits
            assert buffer_statuses(data)[receipt_id] == "accepted"
        posting.join(timeout=30)
    [answer] = answers
    assert isinstance(answer, httpx.Response) and answer.status_code == 200, answer
    assert answer.json()["receipt_id"] == receipt_id
    with second.client() as http2:
        wait_until(
            lambda: http2.get(f"/v1/kkt/receipt/{receipt_id}").json()["status"] == "synced",
            timeout=30,
            what="the receipt synced",
        )
        logs = http2.get("/v1/kkt/buffer/logs", params={"receipt_id": receipt_id}).json()
    events = [item["event"] for item in logs["items"]]
    assert "fiscalized" in events
    assert "print_failed" not in events
    assert device_receipts(data) == [(receipt_id, answer.json()["fiscal"]["fd"])]
    assert device_log(data)[1] == 0


def test_a_standby_finishes_a_sale_its_primary_died_on_before_printing(
    start_adapter: Start, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    key, body = new_key(), receipt()
    standby = start_adapter(data, env=FAST)
    primary = start_adapter(data, env=FAST)
    answers: list[Any] = []
    with held_device_gate(data), primary.client() as http:
        posting = threading.Thread(target=_post, args=(http, body, key, answers))
        posting.start()
        [receipt_id] = wait_until(lambda: _accepted(data), timeout=15, what="accepted")
        with standby.client() as http2:
            busy = http2.post("/v1/kkt/receipt", json=body, headers=key)
        assert busy.status_code == 409, busy.text  # the primary is alive: still in progress
        assert busy.json()["code"] == "request_in_progress"
        primary.kill()  # SIGKILL between the accepted commit and the print
        posting.join(timeout=15)
    assert device_receipts(data) == []
    with standby.client() as http2:
        retried = http2.post("/v1/kkt/receipt", json=body, headers=key)
        assert retried.status_code == 200, retried.text
        assert retried.json()["receipt_id"] == receipt_id
        wait_until(
            lambda: http2.get(f"/v1/kkt/receipt/{receipt_id}").json()["status"] == "synced",
            timeout=30,
            what="the receipt synced",
        )
    assert device_receipts(data) == [(receipt_id, retried.json()["fiscal"]["fd"])]
    assert device_log(data)[1] == 0


def _leader(http: httpx.Client) -> dict[str, Any]:
    leader: dict[str, Any] = http.get("/v1/kkt/buffer/status").json()["sync_leader"]
    return leader


def test_a_restarted_process_takes_over_the_lease_of_its_killed_predecessor_at_once(
    start_adapter: Start, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    slow_ttl = {**FAST, "KKT_LEADERSHIP_TTL_MS": "120000"}  # the lease would block 2 minutes
    first = start_adapter(data, env=slow_ttl)
    with first.client() as http:
        dead = wait_until(lambda: _leader(http)["leader"] and _leader(http), timeout=15)
    first.kill()
    second = start_adapter(data, env=slow_ttl)
    with second.client() as http:
        leader = wait_until(lambda: _leader(http)["leader"] and _leader(http), timeout=15)
        assert leader["current_holder"] == leader["holder"] != dead["holder"]
        assert leader["fence"] > dead["fence"]
        sale = http.post("/v1/kkt/receipt", json=receipt(), headers=new_key())
        assert sale.status_code == 200, sale.text
        sync = http.post("/v1/kkt/buffer/sync")
        assert sync.status_code == 200, sync.text
        assert sync.json()["synced"] >= 0
        receipt_id = sale.json()["receipt_id"]
        wait_until(
            lambda: http.get(f"/v1/kkt/receipt/{receipt_id}").json()["status"] == "synced",
            timeout=15,
            what="the receipt synced",
        )


def test_status_names_the_process_that_leads(start_adapter: Start, tmp_path: Path) -> None:
    data = tmp_path / "data"
    first = start_adapter(data, env=FAST)
    with first.client() as http:
        leader = wait_until(lambda: _leader(http)["leader"] and _leader(http), timeout=15)
    second = start_adapter(data, env=FAST)
    with second.client() as http2:
        follower = wait_until(
            lambda: (view := _leader(http2))["current_holder"] and view, timeout=15
        )
    assert follower["leader"] is False
    assert follower["current_holder"] == leader["holder"] != follower["holder"]
