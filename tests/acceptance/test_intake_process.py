"""POC-1, restart and crash recovery, against the real ``kkt-adapter serve`` process."""

from __future__ import annotations

import itertools
import sqlite3
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from conftest import Process
from helpers import new_key, priced_receipt, receipt

pytestmark = pytest.mark.acceptance

Start = Callable[..., Process]


def test_poc1_fifty_receipts(start_adapter: Start, capsys: pytest.CaptureFixture[str]) -> None:
    adapter = start_adapter()
    assert adapter.startup_seconds < 2.0, f"start-up took {adapter.startup_seconds:.2f}s"
    assert "EMULATOR" in adapter.output()  # I7: the emulator says what it is
    latencies, fds, ids = [], [], []
    with adapter.client() as http:
        for n in range(50):
            started = time.perf_counter()
            answer = http.post("/v1/kkt/receipt", json=priced_receipt(100 + n), headers=new_key())
            latencies.append((time.perf_counter() - started) * 1000)
            assert answer.status_code == 200, answer.text
            fds.append(answer.json()["fiscal"]["fd"])
            ids.append(answer.json()["receipt_id"])
        status = http.get("/v1/kkt/buffer/status").json()
        stored = [http.get(f"/v1/kkt/receipt/{rid}").json()["status"] for rid in ids]
    assert all(b > a for a, b in itertools.pairwise(fds)), fds
    assert status["total"] == 50 and status["accepted"] == status["print_failed"] == 0
    # Fiscalized and in the buffer; the embedded OFD emulator may already have them.
    assert set(stored) <= {"pending", "syncing", "synced"} and len(stored) == 50
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
        for answer in answers:
            row = http.get(f"/v1/kkt/receipt/{answer['receipt_id']}").json()
            assert row["status"] in {"pending", "syncing", "synced"}
            assert row["fiscal"]["fd"] == answer["fiscal"]["fd"]
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
    crashing = start_adapter(data, env={"KKT_TEST_CRASH_AFTER_PRINT": "true"})
    with crashing.client() as http, pytest.raises(httpx.TransportError):  # the connection dies
        http.post("/v1/kkt/receipt", json=body, headers=key)
    assert crashing.wait_exit(timeout=10) == 70

    device_docs = _device_receipts(data)
    assert len(device_docs) == 1  # printed once, before the crash
    buffer_rows = _buffer_statuses(data)
    assert list(buffer_rows.values()) == ["accepted"]  # recorded as accepted, never as pending

    restarted = start_adapter(data)
    assert "found on the KKT" in restarted.output()
    with restarted.client() as http:
        replay = http.post("/v1/kkt/receipt", json=body, headers=key)
        status = http.get("/v1/kkt/buffer/status").json()
    assert replay.status_code == 200
    assert replay.headers["Idempotent-Replayed"] == "true"
    receipt_id, fd = device_docs[0]
    assert replay.json()["receipt_id"] == receipt_id
    assert replay.json()["fiscal"]["fd"] == fd
    assert (status["total"], status["accepted"], status["print_failed"]) == (1, 0, 0)
    assert _device_receipts(data) == device_docs  # not printed again


def _device_receipts(data: Path) -> list[tuple[str, int]]:
    with sqlite3.connect(data / "kkt-emulator.sqlite") as conn:
        rows = conn.execute(
            "SELECT receipt_id, fd FROM documents WHERE kind = 'receipt' ORDER BY fd"
        ).fetchall()
    return [(str(r[0]), int(r[1])) for r in rows]


def _buffer_statuses(data: Path) -> dict[str, str]:
    with sqlite3.connect(data / "buffer.sqlite") as conn:
        return {str(r[0]): str(r[1]) for r in conn.execute("SELECT id, status FROM receipts")}
