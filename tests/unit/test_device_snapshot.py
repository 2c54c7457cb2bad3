"""When the device runner reads the KKT's status between calls, and what it keeps."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers import eventually

from kkt_adapter.device.base import DeviceStatus
from kkt_adapter.device.gate import DeviceGate
from kkt_adapter.device.runner import DeviceRunner
from kkt_adapter.device.snapshot import AFTER_CHANGE_S, WHILE_BUSY_S, RefreshPolicy
from kkt_adapter.hlc import HybridClock
from kkt_adapter.serial import SerialThread

POLICY = RefreshPolicy(idle_seconds=2.0)


def test_the_first_reading_is_due_at_once() -> None:
    assert POLICY.wait(None, changed=False, idle=True) <= 0
    assert POLICY.wait(None, changed=False, idle=False) <= 0


def test_unchanged_the_status_is_read_on_the_idle_timer() -> None:
    assert POLICY.wait(0.5, changed=False, idle=True) == pytest.approx(1.5)
    assert POLICY.wait(2.0, changed=False, idle=True) <= 0
    assert POLICY.wait(1.9, changed=False, idle=False) > 0  # busy: no sooner


def test_after_a_change_it_is_read_soon_when_idle_and_at_most_once_a_second_when_busy() -> None:
    assert POLICY.wait(AFTER_CHANGE_S, changed=True, idle=True) <= 0
    assert POLICY.wait(AFTER_CHANGE_S / 2, changed=True, idle=True) > 0  # not once per gap
    assert POLICY.wait(WHILE_BUSY_S / 2, changed=True, idle=False) > 0
    assert POLICY.wait(WHILE_BUSY_S, changed=True, idle=False) <= 0
    quick = RefreshPolicy(idle_seconds=0.05)  # a timer shorter than the change rules wins
    assert quick.wait(0.05, changed=True, idle=False) <= 0


def test_a_serial_thread_calls_between_after_calls_and_on_its_idle_timer() -> None:
    seen: list[bool] = []
    ticks = threading.Semaphore(0)

    def between(idle: bool) -> float:
        seen.append(idle)
        ticks.release()
        return 0.01

    serial = SerialThread("test-between", between=between)
    try:
        for _ in range(5):  # the start, then idle timeouts
            assert ticks.acquire(timeout=5)
        done = threading.Event()
        serial.post(lambda: None, lambda ok, value: done.set())
        assert done.wait(5)
        assert seen and all(seen)  # nothing else was queued: idle every time
    finally:
        serial.shutdown(wait=True)


class CountingKkt:
    """A device whose status counts its readings and fails while ``down`` is set."""

    max_group = 1

    def __init__(self) -> None:
        self.readings = 0
        self.down = False
        self.fd = 0

    def status(self) -> DeviceStatus:
        if self.down:
            raise OSError("no answer")
        self.readings += 1
        return DeviceStatus(
            emulator=True, model="counting", fn="9999000000000001", registration_number="1",
            online=True, paper=True, shift_open=True, shift=1, shift_opened_at=None,
            shift_expired=False, last_fd=self.fd, unconfirmed_count=0,
            oldest_unconfirmed_at=None, fn_blocked=False,
        )  # fmt: skip

    def confirm_many(self, fn: str, fds: Any) -> None:
        self.fd += 1

    def close(self) -> None:
        pass


@pytest.fixture
def counting(tmp_path: Path) -> Iterator[tuple[CountingKkt, DeviceRunner]]:
    device = CountingKkt()
    runner = DeviceRunner(
        device,  # type: ignore[arg-type]
        DeviceGate(tmp_path),
        HybridClock("n1"),
        refresh=RefreshPolicy(idle_seconds=60),
    )
    yield device, runner
    runner.close()


async def test_the_runner_reads_once_at_start_and_again_only_after_a_change(
    counting: tuple[CountingKkt, DeviceRunner],
) -> None:
    device, runner = counting
    first = await eventually(
        lambda: asyncio.sleep(0, runner.snapshot()),
        lambda s: s.status is not None,
        what="a first reading",
    )
    assert first.error is None and first.age_ms is not None and first.measured_ms is not None
    time.sleep(3 * AFTER_CHANGE_S)
    assert device.readings == 1  # idle, nothing changed, the timer is a minute
    await runner.confirm_many("9999000000000001", [1])
    after = await eventually(
        lambda: asyncio.sleep(0, runner.snapshot()), lambda s: s.status.last_fd == 1, what="re-read"
    )
    assert device.readings == 2 and after.busy_ms is None


async def test_a_failed_reading_keeps_the_last_good_one_and_says_why(
    counting: tuple[CountingKkt, DeviceRunner],
) -> None:
    device, runner = counting
    await eventually(lambda: asyncio.sleep(0, runner.snapshot()), lambda s: s.status is not None)
    device.down = True
    with pytest.raises(OSError):
        await runner.status()
    snapshot = runner.snapshot()
    assert snapshot.error == "OSError: no answer" and snapshot.current is None
    assert snapshot.status is not None and snapshot.status.emulator  # the last good one
    device.down = False
    assert (await runner.status()).last_fd == 0 and runner.snapshot().error is None
