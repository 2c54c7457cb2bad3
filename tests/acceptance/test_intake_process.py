"""POC-1, restart and crash recovery, against the real ``kkt-adapter serve`` process."""

from __future__ import annotations

import contextlib
import statistics
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from chaos import buffer_statuses, device_log, device_receipts, held_device_gate
from conftest import Process, wait_until
from helpers import new_key, priced_receipt, receipt

pytestmark = pytest.mark.acceptance

Start = Callable[..., Process]


def kkt_emulator_warnings(adapter: Process) -> list[str]:
    """The KKT's own start-up line saying it is an emulator (I7), not the OFD emulator's."""
    return [
        record["message"]
        for record in adapter.log_records()
        if record["logger"] == "kkt_adapter"
        and record["level"] == "warning"
        and record["message"].startswith("KKT: EMULATOR (")
    ]


def synced(http: httpx.Client, count: int) -> dict[str, Any] | None:
    """The buffer status once ``count`` receipts are synced and nothing is left to send."""
    status: dict[str, Any] = http.get("/v1/kkt/buffer/status").json()
    done = status["synced"] == count and status["pending"] + status["syncing"] == 0
    return status if done else None


def test_poc1_fifty_receipts(start_adapter: Start, capsys: pytest.CaptureFixture[str]) -> None:
    adapter = start_adapter()
    with adapter.client() as http:
        fn = http.get("/v1/health").json()["components"]["kkt"]["fn"]
    [warning] = kkt_emulator_warnings(adapter)  # I7: the KKT emulator says what it is
    assert f"FN {fn}" in warning and "not a real cash register" in warning
    latencies, fds, ids = [], [], []
    with adapter.client() as http:
        for n in range(50):
            started = time.perf_counter()
            answer = http.post("/v1/kkt/receipt", json=priced_receipt(100 + n), headers=new_key())
            latencies.append((time.perf_counter() - started) * 1000)
            assert answer.status_code == 200, answer.text
            fds.append(answer.json()["fiscal"]["fd"])
            ids.append(answer.json()["receipt_id"])
        # Fiscalized, in the buffer, and delivered to the embedded OFD emulator.
        status = wait_until(lambda: synced(http, 50), timeout=30, what="50 receipts synced")
        stored = [http.get(f"/v1/kkt/receipt/{rid}").json()["fiscal"]["fd"] for rid in ids]
    assert fds == list(range(2, 52))  # FD 1 is the shift the first receipt opened
    assert (status["total"], status["accepted"], status["print_failed"]) == (50, 0, 0)
    assert stored == fds
    p95 = statistics.quantiles(latencies, n=20)[18]
    with capsys.disabled():
        print(
            "\nPOC-1 report: 50 receipts, all 200; FD "
            f"{fds[0]}..{fds[-1]} strictly increasing; all in the buffer; "
            f"latency p50 {statistics.median(latencies):.1f} ms, p95 {p95:.1f} ms, "
            f"max {max(latencies):.1f} ms; start-up {adapter.startup_seconds:.2f} s"
        )


def test_restart_keeps_receipts_and_continues_fd(start_adapter: Start, tmp_path: Path) -> None:
    data = tmp_path / "data"
    first = start_adapter(data)
    with first.client() as http:
        answers = [
            http.post("/v1/kkt/receipt", json=priced_receipt(500 + n), headers=new_key()).json()
            for n in range(5)
        ]
    assert first.terminate() == 0  # SIGTERM: clean stop
    assert "stopped cleanly" in first.output()
    second = start_adapter(data)
    with second.client() as http:
        wait_until(lambda: synced(http, 5), timeout=30, what="the five receipts synced")
        for answer in answers:
            row = http.get(f"/v1/kkt/receipt/{answer['receipt_id']}").json()
            assert (row["status"], row["fiscal"]) == ("synced", answer["fiscal"])
        after = http.post("/v1/kkt/receipt", json=priced_receipt(999), headers=new_key()).json()
        total = http.get("/v1/kkt/buffer/status").json()["total"]
    assert after["fiscal"]["fd"] == answers[-1]["fiscal"]["fd"] + 1
    assert after["fiscal"]["fn"] == answers[-1]["fiscal"]["fn"]
    assert total == 6


def test_crash_between_print_and_record_is_reconciled_not_reprinted(
    start_adapter: Start, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    key = new_key()
    body = receipt()
    crashing = start_adapter(data, env={"KKT_FAULT_CRASH_AFTER_PRINT": "true"})
    assert any("KKT_FAULT_CRASH_AFTER_PRINT" in line for line in crashing.messages("kkt_adapter"))
    with crashing.client() as http, pytest.raises(httpx.TransportError):  # the connection dies
        http.post("/v1/kkt/receipt", json=body, headers=key)
    assert crashing.wait_exit(timeout=10) == 70

    device_docs = device_receipts(data)
    assert len(device_docs) == 1  # printed once, before the crash
    buffer_rows = buffer_statuses(data)
    assert list(buffer_rows.values()) == ["accepted"]  # recorded as accepted, never as pending

    restarted = start_adapter(data)
    assert RECONCILED.format(found=1, never=0) in restarted.messages("kkt_adapter")
    with restarted.client() as http:
        replay = http.post("/v1/kkt/receipt", json=body, headers=key)
        status = http.get("/v1/kkt/buffer/status").json()
    assert replay.status_code == 200
    assert replay.headers["Idempotent-Replayed"] == "true"
    receipt_id, fd = device_docs[0]
    assert replay.json()["receipt_id"] == receipt_id
    assert replay.json()["fiscal"]["fd"] == fd
    assert (status["total"], status["accepted"], status["print_failed"]) == (1, 0, 0)
    assert device_receipts(data) == device_docs  # not printed again
    assert device_log(data)[1] == 0  # and never asked to (the strict emulator counts it)


def test_crash_before_the_print_is_not_printed_behind_the_cashiers_back(
    start_adapter: Start, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    key, body = new_key(), receipt()
    crashing = start_adapter(data)
    # Another holder of the KKT's gate: the adapter commits the receipt, then waits to print.
    with held_device_gate(data), crashing.client() as http:
        waiting = threading.Thread(target=_post_ignoring_the_kill, args=(http, body, key))
        waiting.start()
        [receipt_id] = wait_until(
            lambda: [rid for rid, status in buffer_statuses(data).items() if status == "accepted"],
            timeout=15,
            what="the receipt committed as accepted",
        )
        crashing.kill()  # SIGKILL between the accepted commit and the print
        waiting.join(timeout=15)
        assert not waiting.is_alive()
    assert device_receipts(data) == []

    restarted = start_adapter(data)
    assert RECONCILED.format(found=0, never=1) in restarted.messages("kkt_adapter")
    with restarted.client() as http:
        row = http.get(f"/v1/kkt/receipt/{receipt_id}").json()
        assert (row["status"], row["last_error"]) == ("print_failed", "interrupted_before_print")
        assert device_receipts(data) == []  # start-up did not print it either
        retried = http.post("/v1/kkt/receipt", json=body, headers=key)
    assert retried.status_code == 200, retried.text
    assert retried.json()["receipt_id"] == receipt_id
    assert device_receipts(data) == [(receipt_id, retried.json()["fiscal"]["fd"])]
    assert device_log(data)[1] == 0


RECONCILED = "reconciled receipts left unfinished: {found} found on the KKT, {never} never printed"


def _post_ignoring_the_kill(http: httpx.Client, body: dict[str, Any], key: dict[str, str]) -> None:
    with contextlib.suppress(httpx.TransportError):  # the adapter is killed mid-request
        http.post("/v1/kkt/receipt", json=body, headers=key)
