"""POC-5: two adapters on one data dir, a paused leader, a flapping OFD, Redis down and back."""

from __future__ import annotations

import contextlib
import itertools
import os
import signal
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from chaos import device_log, ofd_documents
from conftest import Process, RedisServer, wait_until
from helpers import new_key, priced_receipt

pytestmark = pytest.mark.acceptance

Start = Callable[..., Process]
FAST = {
    "KKT_LEADERSHIP_TTL_MS": "1500",
    "KKT_DELIVERY_LEASE_MS": "3000",
    "KKT_BACKOFF_BASE_SECONDS": "0.05",
    "KKT_BACKOFF_CAP_SECONDS": "0.3",
    "KKT_BREAKER_OPEN_SECONDS": "0.5",
    "KKT_DELIVERY_SWEEP_SECONDS": "0.1",
}


def status(http: httpx.Client) -> dict[str, Any]:
    body: dict[str, Any] = http.get("/v1/kkt/buffer/status").json()
    return body


def post(http: httpx.Client, kopecks: int) -> str:
    answer = http.post("/v1/kkt/receipt", json=priced_receipt(kopecks), headers=new_key())
    assert answer.status_code == 200, answer.text
    return str(answer.json()["receipt_id"])


def all_synced(http: httpx.Client, total: int) -> dict[str, Any] | None:
    current = status(http)
    done = current["synced"] == total and current["pending"] + current["syncing"] == 0
    return current if done else None


def assert_each_stored_once(ofd: httpx.Client, expected: int) -> list[dict[str, Any]]:
    documents = ofd_documents(ofd)
    ids = [d["receipt_id"] for d in documents]
    assert len(ids) == len(set(ids)) == expected
    assert ofd.get("/_control/stats").json()["unique_documents"] == expected
    assert [d["idempotency_key"] for d in documents] == ids  # I3: keyed by receipt id
    return documents


def test_poc5a_two_instances_three_concurrent_syncs(
    start_mock_ofd: Start, start_adapter: Start, tmp_path: Path
) -> None:
    ofd = start_mock_ofd()
    data = tmp_path / "data"
    env = {"KKT_OFD_URL": ofd.url, **FAST}
    first, second = start_adapter(data, env=env), start_adapter(data, env=env)
    with ofd.client() as ofd_http, first.client() as h1, second.client() as h2:
        _, _, leader, follower = _leader_first(first, second, h1, h2)
        ofd_http.post("/_control/mode", json={"mode": "fail"})
        for n in range(30):
            post(leader if n % 2 else follower, 100 + n)
        ofd_http.post("/_control/mode", json={"mode": "success"})
        answers: dict[int, int] = {}

        def sync(index: int, http: httpx.Client) -> None:
            answers[index] = http.post("/v1/kkt/buffer/sync").status_code

        syncs = [
            threading.Thread(target=sync, args=(i, c))
            for i, c in enumerate((leader, follower, leader))
        ]
        for thread in syncs:
            thread.start()
        for thread in syncs:
            thread.join(timeout=60)
        # The leader runs both of its syncs (claims keep them apart); the other refuses.
        assert answers == {0: 200, 1: 409, 2: 200}
        wait_until(lambda: all_synced(leader, 30), timeout=60, interval=0.1, what="30 synced")
        documents = assert_each_stored_once(ofd_http, 30)
    assert len({d["fn"] for d in documents}) == 1  # one KKT for both processes
    assert sorted(d["fd"] for d in documents) == list(range(2, 32))  # FD 1: the shift
    assert_device_log_has_one_document_per_receipt(data, 30)


def test_poc5d_hlc_rises_with_fd_across_two_instances(
    start_mock_ofd: Start, start_adapter: Start, tmp_path: Path
) -> None:
    ofd = start_mock_ofd()
    data = tmp_path / "data"
    env = {"KKT_OFD_URL": ofd.url, **FAST}
    first, second = start_adapter(data, env=env), start_adapter(data, env=env)
    with ofd.client() as ofd_http, first.client() as a, second.client() as b:
        errors: list[BaseException] = []

        def sell(http: httpx.Client, base: int) -> None:
            try:
                for n in range(25):
                    post(http, base + n)
            except BaseException as exc:  # kept for the assertion below, not lost
                errors.append(exc)

        sellers = [
            threading.Thread(target=sell, args=(h, base)) for h, base in ((a, 100), (b, 900))
        ]
        for thread in sellers:
            thread.start()
        for thread in sellers:
            thread.join(timeout=60)
        assert errors == [] and not any(thread.is_alive() for thread in sellers)
        wait_until(lambda: all_synced(a, 50), timeout=60, interval=0.1, what="50 synced")
        documents = assert_each_stored_once(ofd_http, 50)
    by_fn: dict[str, list[dict[str, Any]]] = {}
    for document in documents:
        by_fn.setdefault(document["fn"], []).append(document)
    assert len(by_fn) == 1 and len(documents) == 50
    for docs in by_fn.values():
        stamps = [_stamp(d["hlc"]) for d in sorted(docs, key=lambda d: d["fd"])]
        assert all(x < y for x, y in itertools.pairwise(stamps)), stamps


def test_poc5c_paused_leader_is_fenced_out(
    start_mock_ofd: Start, start_adapter: Start, tmp_path: Path
) -> None:
    ofd = start_mock_ofd()
    data = tmp_path / "data"
    env = {"KKT_OFD_URL": ofd.url, **FAST}
    one, two = start_adapter(data, env=env), start_adapter(data, env=env)
    with ofd.client() as ofd_http, one.client() as h1, two.client() as h2:
        leader, _follower, lh, fh = _leader_first(one, two, h1, h2)
        ofd_http.post("/_control/mode", json={"mode": "success", "latency_ms": 400})
        for n in range(10):
            post(lh, 200 + n)
        # Pause the leader well past its lease while it has deliveries in flight.
        wait_until(lambda: status(lh)["syncing"] > 0, timeout=15, what="deliveries in flight")
        assert leader.proc is not None
        os.kill(leader.proc.pid, signal.SIGSTOP)
        try:
            for n in range(10):
                post(fh, 300 + n)  # sales go on at the other instance
            wait_until(lambda: status(fh)["sync_leader"]["leader"], timeout=15, what="takeover")
            wait_until(lambda: all_synced(fh, 20), timeout=60, interval=0.1, what="20 synced")
        finally:
            os.kill(leader.proc.pid, signal.SIGCONT)
        # The old leader wakes up with stale claims and answers in hand: none may land.
        wait_until(lambda: not status(lh)["sync_leader"]["leader"], timeout=15, what="abdication")
        wait_until(
            lambda: any(
                m.endswith("dropped: its claim was taken over")
                for m in leader.messages("kkt_adapter.delivery.worker")
            ),
            timeout=15,
            what="the old leader's late results refused",
        )
        final = status(fh)
        assert (final["synced"], final["syncing"], final["pending"]) == (20, 0, 0)
        assert_each_stored_once(ofd_http, 20)
    synced_events = _events(data, "synced")
    assert len(synced_events) == 20 and len(set(synced_events)) == 20  # each synced once
    assert "no longer the sync leader" in leader.output()


def test_poc5b_flapping_ofd_all_delivered_and_breaker_seen(
    start_mock_ofd: Start, start_adapter: Start
) -> None:
    ofd = start_mock_ofd()
    adapter = start_adapter(env={"KKT_OFD_URL": ofd.url, **FAST})
    with ofd.client() as ofd_http, adapter.client() as http:
        for window in range(8):
            mode = "fail" if window % 2 == 0 else "success"
            ofd_http.post("/_control/mode", json={"mode": mode})
            for n in range(5):
                post(http, 1000 + window * 10 + n)
            time.sleep(0.6)  # pacing: the OFD flaps every 0.6 s
        ofd_http.post("/_control/mode", json={"mode": "success"})
        final = wait_until(lambda: all_synced(http, 40), timeout=60, interval=0.1, what="synced")
        assert_each_stored_once(ofd_http, 40)
    assert final["circuit_breaker"] == "CLOSED"
    changes = [
        m.removeprefix("OFD circuit breaker ")
        for m in adapter.messages("kkt_adapter")
        if m.startswith("OFD circuit breaker ")
    ]
    assert "CLOSED -> OPEN" in changes and changes[-1] == "HALF_OPEN -> CLOSED", changes


def test_redis_down_and_back_pauses_then_resumes_delivery(
    start_mock_ofd: Start, start_adapter: Start, redis_server: RedisServer
) -> None:
    ofd = start_mock_ofd()
    adapter = start_adapter(env={"KKT_OFD_URL": ofd.url, "KKT_REDIS_URL": redis_server.url, **FAST})
    with ofd.client() as ofd_http, adapter.client() as http:
        for n in range(5):
            post(http, 100 + n)
        wait_until(lambda: all_synced(http, 5), timeout=30, interval=0.1, what="5 synced")
        assert status(http)["sync_leader"]["backend"] == "redis"
        redis_server.stop()
        wait_until(lambda: not status(http)["sync_leader"]["leader"], timeout=15, what="no leader")
        for n in range(5):
            post(http, 200 + n)  # intake goes on without Redis
        health = http.get("/v1/health").json()
        assert health["components"]["ofd"]["sync_leader"]["error"].startswith(
            "redis lease unavailable: "
        )
        assert (health["status"], health["components"]["ofd"]["status"]) == (
            "degraded",
            "warning",
        )
        # Never "run without a lock": through three tries to lead (one every TTL/3 = 0.5 s),
        # this process does not lead and the OFD gets nothing.
        submissions = ofd_http.get("/_control/stats").json()["submissions"]
        window = time.monotonic() + 1.5
        while time.monotonic() < window:
            current = status(http)
            assert (current["sync_leader"]["leader"], current["synced"]) == (False, 5)
            assert ofd_http.get("/_control/stats").json()["submissions"] == submissions
            time.sleep(0.1)
        redis_server.start()
        wait_until(lambda: all_synced(http, 10), timeout=30, interval=0.1, what="10 synced")
        assert_each_stored_once(ofd_http, 10)


def _leader_first(
    one: Process, two: Process, h1: httpx.Client, h2: httpx.Client
) -> tuple[Process, Process, httpx.Client, httpx.Client]:
    wait_until(
        lambda: status(h1)["sync_leader"]["leader"] or status(h2)["sync_leader"]["leader"],
        timeout=15,
        what="a leader",
    )
    if status(h1)["sync_leader"]["leader"]:
        return one, two, h1, h2
    return two, one, h2, h1


def _stamp(text: str) -> tuple[int, int]:
    wall, counter, _node = text.split(".", 2)
    return int(wall), int(counter)


def _events(data: Path, event: str) -> list[str]:
    with sqlite3.connect(data / "buffer.sqlite", timeout=10) as conn:
        rows = conn.execute(
            "SELECT receipt_id FROM buffer_events WHERE event = ?", (event,)
        ).fetchall()
    return [str(r[0]) for r in rows]


def assert_device_log_has_one_document_per_receipt(data: Path, count: int) -> None:
    """The KKT printed ``count`` receipts, one document each, with the FDs the buffer has."""
    documents, repeats = device_log(data)
    printed = {rid: fd for fd, rid in documents if rid is not None}
    with contextlib.closing(sqlite3.connect(data / "buffer.sqlite", timeout=10)) as buffer:
        rows = dict(buffer.execute("SELECT id, fd FROM receipts WHERE fd IS NOT NULL").fetchall())
    assert (len(printed), repeats) == (count, 0)
    assert printed == rows
