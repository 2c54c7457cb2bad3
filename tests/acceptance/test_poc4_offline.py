"""POC-4, the seed's 8-hour offline proof, against the real commands.

The OFD emulator (``kkt-adapter mock-ofd``) is put in permanent failure, 50 receipts are sold
"offline", then the OFD comes back, a manual sync runs, and every receipt must reach the OFD
exactly once. The "8 hours" are conceptual: the same mechanisms run in seconds here.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from conftest import Process, wait_until
from helpers import new_key, priced_receipt

pytestmark = pytest.mark.acceptance

NUM_RECEIPTS = 50
SYNC_TIMEOUT_SECONDS = 600
LINE = "─" * 60
RULE = "=" * 60


def test_poc4_8h_offline_operation(
    start_mock_ofd: Callable[..., Process],
    start_adapter: Callable[..., Process],
    capsys: pytest.CaptureFixture[str],
) -> None:
    ofd = start_mock_ofd()
    adapter = start_adapter(env={"KKT_OFD_URL": ofd.url})
    # The phase-by-phase report is part of the result: it shows in the test run's output.
    with capsys.disabled(), ofd.client() as ofd_http, adapter.client() as http:
        report = _offline_phase(ofd_http, http)
        report.update(_recovery_phase(ofd_http, http))
        _print_summary(report)


def _offline_phase(ofd: httpx.Client, http: httpx.Client) -> dict[str, Any]:
    print(f"\n{RULE}\nPOC-4 Test: 8h Offline Mode - Extended Offline Operation\n{RULE}")
    print(f"\nPhase 1: Offline Operation\n{LINE}")
    print("\nStep 1: Setting Mock OFD to permanent failure mode (OFD down)...")
    assert ofd.post("/_control/mode", json={"mode": "fail"}).status_code == 200
    print("  ✅ Mock OFD in permanent failure mode (simulating OFD unavailable)")

    print(f"\nStep 2: Creating {NUM_RECEIPTS} receipts in offline mode...")
    started = time.monotonic()
    for n in range(1, NUM_RECEIPTS + 1):
        answer = http.post("/v1/kkt/receipt", json=priced_receipt(1000 + n), headers=new_key())
        assert answer.status_code == 200, answer.text
        if n % 10 == 0:
            print(f"  ✅ Created {n}/{NUM_RECEIPTS} receipts (offline)")
    created_in = time.monotonic() - started
    print(
        f"\n✅ All {NUM_RECEIPTS} receipts created in offline mode\n   Duration: {created_in:.2f}s"
    )

    print("\nStep 3: Verifying buffer status (offline)...")
    # A delivery attempt in flight holds a receipt in 'syncing' for a moment: wait it out.
    status = wait_until(
        lambda: _status_if(http, lambda s: s["pending"] == NUM_RECEIPTS),
        timeout=30,
        what="all receipts pending",
    )
    _print_counts("Buffer status (offline)", status)
    assert (status["total"], status["pending"], status["synced"], status["failed"]) == (
        NUM_RECEIPTS, NUM_RECEIPTS, 0, 0,
    )  # fmt: skip
    print(f"\n✅ All {NUM_RECEIPTS} receipts buffered (status=pending)")

    print("\nStep 4: Verifying no OFD calls succeeded during the offline period...")
    # The adapter did try (and every try was refused): offline, not idle.
    stats = wait_until(
        lambda: (s := ofd.get("/_control/stats").json())["failed"] >= 1 and s,
        timeout=30,
        what="a delivery attempt refused by the OFD",
    )
    print(f"  Mock OFD: {stats['submissions']} submissions, {stats['failed']} answered 503,")
    print(f"            {stats['unique_documents']} documents stored")
    assert (stats["unique_documents"], stats["duplicate_submissions"]) == (0, 0)
    assert stats["failed"] == stats["submissions"]
    health = http.get("/v1/health").json()
    print(f"  Circuit breaker: {health['components']['ofd']['circuit_breaker']}")
    print("\n✅ No successful OFD syncs during offline (synced=0)")
    return {
        "created": NUM_RECEIPTS,
        "buffered": status["pending"],
        "offline_stored": stats["unique_documents"],
        "offline_attempts": stats["submissions"],
        "breaker_offline": health["components"]["ofd"]["circuit_breaker"],
    }


def _recovery_phase(ofd: httpx.Client, http: httpx.Client) -> dict[str, Any]:
    print(f"\nPhase 2: Sync Recovery\n{LINE}")
    print("\nStep 5: Restoring Mock OFD (set success mode)...")
    assert ofd.post("/_control/mode", json={"mode": "success"}).status_code == 200
    print("  ✅ Mock OFD restored (success mode)")

    print("\nStep 6: Triggering manual sync...")
    restored_at = time.monotonic()
    sync = http.post("/v1/kkt/buffer/sync")
    assert sync.status_code == 200, sync.text
    summary = sync.json()
    print("  Manual sync triggered:")
    print(f"    Synced: {summary['synced']}\n    Failed: {summary['failed']}")
    print(f"    Remaining: {summary['remaining']}\n    Duration: {summary['duration_seconds']}s")

    print(f"\nStep 7: Waiting for sync to complete (max {SYNC_TIMEOUT_SECONDS}s)...")
    status = wait_until(
        lambda: _status_if(http, lambda s: s["synced"] >= NUM_RECEIPTS),
        timeout=SYNC_TIMEOUT_SECONDS,
        interval=0.2,
        what="all receipts synced",
    )
    sync_duration = time.monotonic() - restored_at
    print(f"  ⏳ Sync progress: {status['synced']}/{NUM_RECEIPTS} receipts synced")
    print(f"\n✅ Sync completed in {sync_duration:.2f}s (within {SYNC_TIMEOUT_SECONDS}s limit)")

    print("\nStep 8: Verifying all receipts synced...")
    _print_counts("Final buffer status", status)
    print(f"    DLQ: {status['dlq']}")
    assert (status["synced"], status["pending"], status["syncing"]) == (NUM_RECEIPTS, 0, 0)
    assert (status["failed"], status["dlq"]) == (0, 0)
    print(f"\n✅ All {NUM_RECEIPTS} receipts synced successfully")

    print("\nStep 9: Verifying no duplicates in OFD...")
    received = ofd.get("/_control/received", params={"limit": 1000}).json()["items"]
    ids = [item["receipt_id"] for item in received]
    stats = ofd.get("/_control/stats").json()
    print(f"  OFD received receipts: {len(ids)}\n  Unique receipt IDs: {len(set(ids))}")
    assert len(ids) == len(set(ids)) == NUM_RECEIPTS
    assert stats["unique_documents"] == NUM_RECEIPTS
    assert [item["idempotency_key"] for item in received] == ids  # I3: keyed by receipt id
    print(f"\n✅ No duplicates in OFD ({NUM_RECEIPTS} unique receipts)")
    return {
        "sync_duration": sync_duration,
        "synced": status["synced"],
        "in_ofd": len(ids),
        "unique": len(set(ids)),
        "duplicate_submissions": stats["duplicate_submissions"],
    }


def _status_if(
    http: httpx.Client, ready: Callable[[dict[str, Any]], bool]
) -> dict[str, Any] | None:
    status: dict[str, Any] = http.get("/v1/kkt/buffer/status").json()
    return status if ready(status) else None


def _print_counts(title: str, status: dict[str, Any]) -> None:
    print(f"  {title}:")
    print(f"    Total receipts: {status['total']}\n    Pending: {status['pending']}")
    print(f"    Synced: {status['synced']}\n    Failed: {status['failed']}")


def _print_summary(report: dict[str, Any]) -> None:
    print(f"\n{RULE}\nPOC-4 Test: ✅ PASS\n{RULE}")
    print("  Phase 1: Offline Operation")
    print(f"    Receipts created (offline): {report['created']}")
    print(f"    Receipts buffered:          {report['buffered']}")
    print(f"    OFD calls during offline:   {report['offline_attempts']} (all failed, 0 stored)")
    print(f"    Circuit breaker (offline):  {report['breaker_offline']}")
    print("\n  Phase 2: Sync Recovery")
    duration = report["sync_duration"]
    print(f"    Sync duration:              {duration:.2f}s (≤ {SYNC_TIMEOUT_SECONDS}s)")
    print(f"    Receipts synced:            {report['synced']}")
    print(f"    Receipts in OFD:            {report['in_ofd']}")
    print(f"    Unique receipts:            {report['unique']}")
    print(f"    Duplicates stored:          {report['in_ofd'] - report['unique']}")
    print(f"    Repeat submissions answered idempotently: {report['duplicate_submissions']}")
    print(RULE)
