"""Delivery through a flaky OFD, the circuit breaker, and a corrupted document, for real."""

from __future__ import annotations

import itertools
import json
import sqlite3
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import Process, adapter_env, kkt_adapter_command, wait_until
from helpers import new_key, priced_receipt

pytestmark = pytest.mark.acceptance

FAST_RETRIES = {
    "KKT_BACKOFF_BASE_SECONDS": "0.05",
    "KKT_BACKOFF_CAP_SECONDS": "0.3",
    "KKT_BREAKER_OPEN_SECONDS": "1.5",
    "KKT_DELIVERY_SWEEP_SECONDS": "0.1",
}


def status(http: httpx.Client) -> dict[str, Any]:
    body: dict[str, Any] = http.get("/v1/kkt/buffer/status").json()
    return body


def settled(http: httpx.Client) -> dict[str, Any] | None:
    """The buffer status once nothing is left to deliver."""
    current = status(http)
    return current if current["pending"] + current["syncing"] == 0 else None


def test_flaky_ofd_delivers_everything_once_and_dead_letters_the_rejected_one(
    start_mock_ofd: Callable[..., Process], start_adapter: Callable[..., Process]
) -> None:
    ofd = start_mock_ofd()
    adapter = start_adapter(env={"KKT_OFD_URL": ofd.url, **FAST_RETRIES})
    with ofd.client() as ofd_http, adapter.client() as http:
        mode = {"mode": "flaky", "failure_rate": 0.3, "reject_next": 1}
        assert ofd_http.post("/_control/mode", json=mode).status_code == 200
        for n in range(40):
            answer = http.post("/v1/kkt/receipt", json=priced_receipt(300 + n), headers=new_key())
            assert answer.status_code == 200
        final = wait_until(lambda: settled(http), timeout=120, interval=0.2, what="delivery")
        dlq = http.get("/v1/kkt/dlq").json()
        stats = ofd_http.get("/_control/stats").json()
    assert (final["synced"], final["failed"], final["dlq"]) == (39, 1, 1)
    assert dlq["total"] == 1 and dlq["items"][0]["http_status"] == 422
    assert dlq["items"][0]["code"] == "document_rejected"
    assert dlq["items"][0]["reason"] == "the OFD emulator is set to reject the next documents"
    assert stats["failed"] > 0  # the OFD really was flaky
    assert stats["unique_documents"] == final["synced"]
    assert any(alert["code"] == "dlq_not_empty" for alert in final["alerts"])


def test_breaker_opens_half_opens_and_closes_as_seen_in_health(
    start_mock_ofd: Callable[..., Process], start_adapter: Callable[..., Process]
) -> None:
    ofd = start_mock_ofd()
    adapter = start_adapter(env={"KKT_OFD_URL": ofd.url, **FAST_RETRIES})

    def breaker(http: httpx.Client) -> str:
        state: str = http.get("/v1/health").json()["components"]["ofd"]["circuit_breaker"]
        return state

    with ofd.client() as ofd_http, adapter.client() as http:
        assert breaker(http) == "CLOSED"
        ofd_http.post("/_control/mode", json={"mode": "fail"})
        for n in range(6):
            http.post("/v1/kkt/receipt", json=priced_receipt(700 + n), headers=new_key())
        wait_until(lambda: breaker(http) == "OPEN", timeout=30, what="breaker OPEN")
        health = http.get("/v1/health").json()
        assert (health["status"], health["components"]["ofd"]["circuit_breaker"]) == (
            "degraded",
            "OPEN",
        )
        assert status(http)["network_status"] == "offline"
        ofd_http.post("/_control/mode", json={"mode": "success"})
        final = wait_until(lambda: settled(http), timeout=60, interval=0.2, what="delivery")
        assert (final["network_status"], final["circuit_breaker"]) == ("online", "CLOSED")
    assert final["synced"] == 6
    # Every change of state, as the breaker logged it: closed, open, half-open (a probe
    # failing before the OFD was back may reopen it), and closed again at the end.
    changes = [
        tuple(m.removeprefix("OFD circuit breaker ").split(" -> "))
        for m in adapter.messages("kkt_adapter")
        if m.startswith("OFD circuit breaker ")
    ]
    assert changes[0] == ("CLOSED", "OPEN") and changes[-1] == ("HALF_OPEN", "CLOSED")
    assert all(a[1] == b[0] for a, b in itertools.pairwise(changes)), changes
    assert ("OPEN", "HALF_OPEN") in changes and changes.count(("HALF_OPEN", "CLOSED")) == 1


def test_corrupted_document_goes_to_the_dlq_and_is_delivered_after_repair(
    start_mock_ofd: Callable[..., Process],
    start_adapter: Callable[..., Process],
    tmp_path: Path,
) -> None:
    ofd = start_mock_ofd()
    data = tmp_path / "data"
    adapter = start_adapter(data, env={"KKT_OFD_URL": ofd.url, **FAST_RETRIES})
    with ofd.client() as ofd_http, adapter.client() as http:
        ofd_http.post("/_control/mode", json={"mode": "fail"})
        receipt_id = http.post(
            "/v1/kkt/receipt", json=priced_receipt(4242), headers=new_key()
        ).json()["receipt_id"]
        original = _alter_fiscal_sign(data / "buffer.sqlite", receipt_id)
        # An attempt claimed before the change may still be in flight with the old document;
        # once one more attempt has failed, every later attempt reads the altered one.
        attempts = http.get(f"/v1/kkt/receipt/{receipt_id}").json()["ofd"]["attempts"]
        wait_until(
            lambda: (
                _receipt(http, receipt_id)["ofd"]["attempts"] > attempts
                and _receipt(http, receipt_id)["status"] == "pending"
            ),
            timeout=30,
            what="one more failed attempt",
        )
        ofd_http.post("/_control/mode", json={"mode": "success"})
        http.post("/v1/kkt/buffer/sync")
        wait_until(lambda: status(http)["dlq"] == 1, timeout=30, what="the DLQ")
        row = http.get(f"/v1/kkt/receipt/{receipt_id}").json()
        assert row["status"] == "failed"
        assert row["ofd"]["dlq"]["code"] == "invalid_fiscal_sign"
        assert ofd_http.get("/_control/stats").json()["unique_documents"] == 0

        _restore_fiscal_sign(data / "buffer.sqlite", receipt_id, original)
        assert http.post(f"/v1/kkt/dlq/{receipt_id}/requeue").status_code == 200
        final = wait_until(lambda: settled(http), timeout=30, interval=0.1, what="delivery")
        assert (final["synced"], final["failed"], final["dlq"]) == (1, 0, 0)
        assert ofd_http.get("/_control/stats").json()["unique_documents"] == 1
        missing = http.post(f"/v1/kkt/dlq/{receipt_id}/requeue")
        assert missing.status_code == 404 and missing.json()["code"] == "not_found"


def _receipt(http: httpx.Client, receipt_id: str) -> dict[str, Any]:
    body: dict[str, Any] = http.get(f"/v1/kkt/receipt/{receipt_id}").json()
    return body


def _alter_fiscal_sign(buffer_file: Path, receipt_id: str) -> str:
    """Flip the document's fiscal sign (tag 1077) the way a corrupted write would."""
    with sqlite3.connect(buffer_file, timeout=10) as conn:
        (text,) = conn.execute(
            "SELECT document FROM receipts WHERE id = ?", (receipt_id,)
        ).fetchone()
        document = json.loads(text)
        original = str(document["1077"])
        document["1077"] = str((int(original) + 1) % 10**10).zfill(10)
        conn.execute(
            "UPDATE receipts SET document = ?, fp = ? WHERE id = ?",
            (json.dumps(document), document["1077"], receipt_id),
        )
    return original


def _restore_fiscal_sign(buffer_file: Path, receipt_id: str, original: str) -> None:
    with sqlite3.connect(buffer_file, timeout=10) as conn:
        (text,) = conn.execute(
            "SELECT document FROM receipts WHERE id = ?", (receipt_id,)
        ).fetchone()
        document = json.loads(text)
        document["1077"] = original
        conn.execute(
            "UPDATE receipts SET document = ?, fp = ? WHERE id = ?",
            (json.dumps(document), original, receipt_id),
        )


def test_cli_status_and_sync_against_a_running_adapter(
    start_mock_ofd: Callable[..., Process], start_adapter: Callable[..., Process]
) -> None:
    ofd = start_mock_ofd()
    adapter = start_adapter(env={"KKT_OFD_URL": ofd.url, **FAST_RETRIES})
    with ofd.client() as ofd_http, adapter.client() as http:
        ofd_http.post("/_control/mode", json={"mode": "fail"})
        for n in range(5):
            http.post("/v1/kkt/receipt", json=priced_receipt(900 + n), headers=new_key())
        ofd_http.post("/_control/mode", json={"mode": "success"})
    synced = run_cli("sync", "--url", adapter.url, "--timeout", "60")
    assert synced.returncode == 0, synced.stderr
    assert "remaining 0" in synced.stdout
    shown = run_cli("status", "--url", adapter.url)
    assert shown.returncode == 0, shown.stderr
    cells = (
        [c.strip() for c in line.split("│") if c.strip()] for line in shown.stdout.splitlines()
    )
    rows = dict(row for row in cells if len(row) == 2)  # the table's (what, value) rows
    assert rows["circuit breaker"] == "CLOSED"
    assert rows["synced"] == "5" and rows["pending / syncing"] == "0 / 0"
    assert rows["KKT"].startswith("EMULATOR FN 9999")
    unreachable = run_cli("status", "--url", "http://127.0.0.1:9")
    assert unreachable.returncode == 1 and "cannot reach" in unreachable.stderr


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**adapter_env(), "COLUMNS": "160"}
    return subprocess.run(
        [*kkt_adapter_command(), *args], capture_output=True, text=True, timeout=120, env=env
    )


def test_a_full_buffer_refuses_sales_with_503_loses_nothing_and_sells_again_after_delivery(
    start_mock_ofd: Callable[..., Process], start_adapter: Callable[..., Process]
) -> None:
    ofd = start_mock_ofd()
    adapter = start_adapter(
        env={"KKT_OFD_URL": ofd.url, "KKT_BUFFER_CAPACITY": "5", **FAST_RETRIES}
    )
    with ofd.client() as ofd_http, adapter.client() as http:
        assert ofd_http.post("/_control/mode", json={"mode": "fail"}).status_code == 200
        sold = []
        for n in range(5):
            answer = http.post("/v1/kkt/receipt", json=priced_receipt(100 + n), headers=new_key())
            assert answer.status_code == 200, answer.text
            sold.append(answer.json()["receipt_id"])
        key = new_key()
        refused = http.post("/v1/kkt/receipt", json=priced_receipt(999), headers=key)
        assert refused.status_code == 503, refused.text
        assert refused.json()["code"] == "buffer_full"
        assert refused.headers["Retry-After"] == "30"
        full = status(http)
        assert (full["total"], full["pending"] + full["syncing"]) == (5, 5)
        assert full["percent_full"] == 100.0
        assert "buffer_full" in [alert["code"] for alert in full["alerts"]]
        assert (
            http.post("/v1/kkt/receipt", json=priced_receipt(999), headers=key).status_code == 503
        )

        assert ofd_http.post("/_control/mode", json={"mode": "success"}).status_code == 200
        wait_until(lambda: status(http)["synced"] == 5, timeout=30, what="the five delivered")
        again = http.post("/v1/kkt/receipt", json=priced_receipt(999), headers=key)
        assert again.status_code == 200, again.text
        wait_until(lambda: status(http)["synced"] == 6, timeout=30, what="the sixth delivered")
        received = ofd_http.get("/_control/received").json()["items"]
    delivered = sorted(item["receipt_id"] for item in received)
    assert delivered == sorted([*sold, again.json()["receipt_id"]])  # nothing lost, none twice
    assert [item["idempotency_key"] for item in received] == [
        item["receipt_id"] for item in received
    ]
