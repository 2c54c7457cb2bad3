"""A full disk under the buffer: intake answers 503 storage_unavailable, nothing is half
written or printed twice, and everything recovers when space returns.

Two ways to fill the disk: an injected ``database or disk is full`` on the buffer writer's
COMMIT (exactly when the test says, e.g. right after the KKT printed), and a real, small tmpfs
filled with a file. The same scenario runs on both, as two tests; the tmpfs one needs root to
mount (CI runs as root) and is skipped, with that reason, only where the tests are not root.
"""

from __future__ import annotations

import contextlib
import errno
import os
import sqlite3
import subprocess
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from helpers import adapter, eventually, priced_receipt

from kkt_adapter.buffer.retention import Retention, quick_check
from kkt_adapter.device.base import KktDevice
from kkt_adapter.housekeeping import Housekeeper
from kkt_adapter.runtime import build_device
from kkt_adapter.settings import Settings
from kkt_adapter.sqlite import database as engine


class InjectedFull:
    """While ``on``, the buffer writer's COMMIT fails as SQLite does on a full disk."""

    def __init__(self) -> None:
        self.on = False
        self.failures = 0


class _FaultyConnection:
    """A sqlite3 connection whose COMMIT on the buffer's writer thread obeys ``InjectedFull``."""

    def __init__(self, conn: sqlite3.Connection, fault: InjectedFull) -> None:
        self._conn = conn
        self._fault = fault

    def execute(self, sql: str, *args: Any) -> sqlite3.Cursor:
        writer = threading.current_thread().name == "buffer-writer"
        if self._fault.on and writer and sql == "COMMIT":
            self._fault.failures += 1
            raise sqlite3.OperationalError("database or disk is full")
        return self._conn.execute(sql, *args)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._conn, name)


@pytest.fixture
def injected(monkeypatch: pytest.MonkeyPatch) -> InjectedFull:
    fault = InjectedFull()
    real_connect = engine.connect
    monkeypatch.setattr(
        engine, "connect", lambda path: _FaultyConnection(real_connect(path), fault)
    )
    return fault


def runtime(client: httpx.AsyncClient) -> Any:
    return client.app.state.runtime  # type: ignore[attr-defined]


async def last_fd(client: httpx.AsyncClient) -> int:
    return int((await runtime(client).kkt.status()).last_fd)


async def post(client: httpx.AsyncClient, key: str, kopecks: int = 10_000) -> httpx.Response:
    return await client.post(
        "/v1/kkt/receipt", json=priced_receipt(kopecks), headers={"Idempotency-Key": key}
    )


def exact_counts(path: Path) -> tuple[dict[str, int], dict[str, int]]:
    """The trigger-kept counters and a real count of the rows per status."""
    with contextlib.closing(sqlite3.connect(path)) as conn:
        kept = {s: n for s, n in conn.execute("SELECT status, n FROM status_counts") if n}
        real = dict(conn.execute("SELECT status, COUNT(*) FROM receipts GROUP BY status"))
    return kept, real


def printing_fills_disk(fault: InjectedFull, times: int = 1) -> Any:
    """A device factory whose next ``times`` print calls fill the disk right after printing."""
    left = [times]

    def factory(settings: Settings) -> KktDevice:
        device = build_device(settings)
        real_print = device.print_receipts

        def print_receipts(items: Any) -> Any:
            results = real_print(items)
            if left[0] > 0:
                left[0] -= 1
                fault.on = True
            return results

        device.print_receipts = print_receipts  # type: ignore[method-assign]
        return device

    return factory


async def test_full_disk_before_the_print_answers_503_and_prints_nothing(
    injected: InjectedFull, settings: Settings
) -> None:
    async with adapter(settings) as api:
        assert (await post(api, "warm-up")).status_code == 200
        fd_before = await last_fd(api)
        injected.on = True
        answer = await post(api, "full-1")
        assert answer.status_code == 503, answer.text
        assert answer.json()["code"] == "storage_unavailable"
        assert answer.headers["Retry-After"] == "5"
        assert await last_fd(api) == fd_before  # the KKT was never asked
        status = (await api.get("/v1/kkt/buffer/status")).json()
        assert status["total"] == 1  # nothing of the refused receipt was written
        injected.on = False
        again = await post(api, "full-1")
        assert again.status_code == 200, again.text
        assert again.json()["fiscal"]["fd"] == fd_before + 1
        assert await last_fd(api) == fd_before + 1
    assert injected.failures >= 1
    kept, real = exact_counts(settings.data_dir / "buffer.sqlite")
    assert kept == real and sum(real.values()) == 2


async def test_full_disk_after_the_print_is_settled_by_the_retry_without_a_second_print(
    injected: InjectedFull, settings: Settings
) -> None:
    async with adapter(settings, printing_fills_disk(injected)) as api:
        answer = await post(api, "printed-not-recorded")
        assert answer.status_code == 503, answer.text
        assert answer.json()["code"] == "storage_unavailable"
        printed_fd = await last_fd(api)
        counts = (await api.get("/v1/kkt/buffer/status")).json()
        assert counts["accepted"] == 1 and counts["pending"] == 0
        # Still full: the retry finds the document on the KKT but cannot record it yet.
        still = await post(api, "printed-not-recorded")
        assert still.status_code == 503 and still.json()["code"] == "storage_unavailable"
        injected.on = False
        retry = await post(api, "printed-not-recorded")
        assert retry.status_code == 200, retry.text
        assert retry.headers["Idempotent-Replayed"] == "true"
        assert retry.json()["fiscal"]["fd"] == printed_fd
        assert await last_fd(api) == printed_fd  # never printed twice (I2)
        path = f"/v1/kkt/receipt/{retry.json()['receipt_id']}"

        async def row() -> dict[str, Any]:
            answer: dict[str, Any] = (await api.get(path)).json()
            return answer

        # Recorded, it is delivered like any other (the embedded OFD is in success mode).
        await eventually(row, lambda r: r["status"] == "synced", what="the receipt synced")
        replay = await post(api, "printed-not-recorded")
        assert replay.status_code == 200 and replay.json() == retry.json()


async def test_full_disk_after_the_print_without_a_retry_is_settled_by_housekeeping(
    injected: InjectedFull, settings: Settings
) -> None:
    async with adapter(settings, printing_fills_disk(injected)) as api:
        assert (await post(api, "never-retried")).status_code == 503
        printed_fd = await last_fd(api)
        injected.on = False
        rt = runtime(api)
        sweeper = Housekeeper(
            rt.buffer,
            rt.intake,
            rt.journal,
            Retention.from_days(7, 90, 100),
            period=60,
            leftover_idle_ms=0,
        )
        result = await sweeper.sweep()
        assert result.settled == 1

        async def counts() -> dict[str, Any]:
            answer: dict[str, Any] = (await api.get("/v1/kkt/buffer/status")).json()
            return answer

        # Settled, it is delivered like any other (the embedded OFD is in success mode).
        settled = await eventually(counts, lambda c: c["synced"] == 1, what="the receipt synced")
        assert (settled["total"], settled["accepted"], settled["pending"]) == (1, 0, 0)
        assert await last_fd(api) == printed_fd


async def test_full_disk_after_the_print_is_settled_by_the_next_start(
    injected: InjectedFull, settings: Settings
) -> None:
    async with adapter(settings, printing_fills_disk(injected)) as api:
        assert (await post(api, "crash-like")).status_code == 503
        printed_fd = await last_fd(api)
    injected.on = False
    async with adapter(settings) as api:
        counts = (await api.get("/v1/kkt/buffer/status")).json()
        assert counts["accepted"] == 0 and counts["print_failed"] == 0
        answer = await post(api, "crash-like")
        assert answer.status_code == 200 and answer.json()["fiscal"]["fd"] == printed_fd
        assert await last_fd(api) == printed_fd


class RealFullDisk:
    """A small tmpfs for the buffer, filled with a file on demand."""

    def __init__(self, mount: Path) -> None:
        self.mount = mount
        self.filler = mount / "filler"

    def fill(self) -> None:
        fd = os.open(self.filler, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
        try:
            for size in (1 << 16, 512, 1):
                with contextlib.suppress(OSError):
                    while True:
                        os.write(fd, b"\0" * size)
        finally:
            os.close(fd)
        probe = os.open(self.mount / "probe", os.O_WRONLY | os.O_CREAT)
        try:
            with pytest.raises(OSError) as full:
                os.write(probe, b"x" * 4096)
            assert full.value.errno == errno.ENOSPC
        finally:
            os.close(probe)

    def free(self) -> None:
        self.filler.unlink()
        (self.mount / "probe").unlink(missing_ok=True)


class InjectedFullDisk:
    """The injected SQLite error, filled and freed like a disk."""

    def __init__(self, fault: InjectedFull) -> None:
        self.fault = fault

    def fill(self) -> None:
        self.fault.on = True

    def free(self) -> None:
        self.fault.on = False


@pytest.fixture
def small_filesystem(tmp_path: Path) -> Iterator[RealFullDisk]:
    """A 4 MiB tmpfs. Mounting needs root (CI runs as root): elsewhere the test is skipped,
    saying so; as root, a mount that fails is a failure, never a silent swap for a fake."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root; CI runs this test as root")
    mount = tmp_path / "small-fs"
    mount.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mount)],
        capture_output=True,
        text=True,
    )
    assert mounted.returncode == 0, f"cannot mount a tmpfs as root: {mounted.stderr}"
    try:
        yield RealFullDisk(mount)
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=True)


async def test_intake_on_a_really_full_filesystem_refuses_then_recovers(
    small_filesystem: RealFullDisk, tmp_path: Path
) -> None:
    await refuses_while_full_then_recovers(small_filesystem, small_filesystem.mount, tmp_path)


async def test_intake_with_injected_disk_full_errors_refuses_then_recovers(
    injected: InjectedFull, tmp_path: Path
) -> None:
    await refuses_while_full_then_recovers(InjectedFullDisk(injected), tmp_path, tmp_path)
    assert injected.failures >= 3  # each refused receipt met the injected error


async def refuses_while_full_then_recovers(
    full_disk: RealFullDisk | InjectedFullDisk, buffer_dir: Path, tmp_path: Path
) -> None:
    """Three sales, the disk fills, a sale is refused three times and nothing is printed or
    half written; the disk frees, the same sale goes through, and the buffer is sound."""
    data = buffer_dir / "data"
    # No free-disk floor: this is about what happens when the disk really fills.
    settings = Settings(data_dir=data, delivery_sweep_seconds=60, buffer_min_free_mb=0)

    def device_elsewhere(settings: Settings) -> KktDevice:
        # The KKT is a separate device with its own storage, not on the buffer's disk.
        return build_device(settings.model_copy(update={"data_dir": tmp_path / "kkt"}))

    async with adapter(settings, device_elsewhere) as api:
        for n in range(3):
            assert (await post(api, f"before-{n}", 100 + n)).status_code == 200
        fd_before = await last_fd(api)
        full_disk.fill()
        key = f"while-full-{uuid.uuid4()}"
        for _ in range(3):
            answer = await post(api, key, 555)
            assert answer.status_code == 503, answer.text
            assert answer.json()["code"] == "storage_unavailable"
        assert await last_fd(api) == fd_before
        # Reads still answer on a full disk, and the KKT (its own storage) is fine, but no sale
        # can be taken: health says so (503) and names the buffer's storage.
        health = await api.get("/v1/health")
        assert health.status_code == 503, health.text
        assert health.json()["components"]["kkt"]["status"] == "ok"
        assert health.json()["components"]["buffer"]["storage"] == "unavailable"
        full_disk.free()
        assert (await api.get("/v1/health")).json()["components"]["buffer"]["storage"] == "ok"
        answer = await post(api, key, 555)
        assert answer.status_code == 200, answer.text
        assert answer.json()["fiscal"]["fd"] == fd_before + 1
        assert (await post(api, "after", 777)).status_code == 200
    path = data / "buffer.sqlite"
    assert quick_check(path) is None
    kept, real = exact_counts(path)
    assert kept == real and sum(real.values()) == 5


async def test_a_full_disk_shows_in_health_status_and_metrics_until_it_recovers(
    injected: InjectedFull, settings: Settings
) -> None:
    async with adapter(settings) as api:
        assert (await post(api, "warm-up")).status_code == 200
        assert (await api.get("/v1/health")).json()["components"]["buffer"]["storage"] == "ok"
        injected.on = True
        assert (await post(api, "while-full")).json()["code"] == "storage_unavailable"
        health = await api.get("/v1/health")
        assert health.status_code == 503, health.text
        body = health.json()
        assert body["status"] == "unhealthy"
        buffer = body["components"]["buffer"]
        assert (buffer["status"], buffer["storage"]) == ("error", "unavailable")
        assert "disk is full" in buffer["storage_error"]
        status = (await api.get("/v1/kkt/buffer/status")).json()
        [alert] = [a for a in status["alerts"] if a["code"] == "storage_unavailable"]
        assert alert["level"] == "critical" and "disk is full" in alert["message"]
        metrics = (await api.get("/metrics")).text
        assert "kkt_storage_unavailable 1.0" in metrics
        failures = _sample(metrics, "kkt_storage_failures_total")
        assert failures >= 1
        injected.on = False  # space is back: the next look finds the buffer writable again
        health = await api.get("/v1/health")
        assert health.status_code == 200, health.text
        assert health.json()["components"]["buffer"]["storage"] == "ok"
        status = (await api.get("/v1/kkt/buffer/status")).json()
        assert not [a for a in status["alerts"] if a["code"] == "storage_unavailable"]
        metrics = (await api.get("/metrics")).text
        assert "kkt_storage_unavailable 0.0" in metrics
        assert _sample(metrics, "kkt_storage_failures_total") >= failures  # a counter


def _sample(metrics: str, name: str) -> float:
    [line] = [line for line in metrics.splitlines() if line.startswith(name + " ")]
    return float(line.split()[1])
