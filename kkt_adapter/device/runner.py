"""The one way to the KKT: its own thread, the cross-process gate, and HLC stamps in FD order.

Intake, start-up reconciliation, delivery (confirmations), shifts and status all reach the
device through a ``DeviceRunner``; none of them calls a ``KktDevice`` directly. So:

- the device works one call at a time, never on the event loop (its own ``SerialThread``);
  the receipts that queued up while it was busy are fiscalized in one ``print_receipts``
  call, up to the device's ``max_group``;
- every call that changes the device's state holds the ``DeviceGate``, shared by every
  process on the data dir, and each fiscalized receipt is stamped under it, in FD order, above
  every stamp any process took there (promise I5);
- the device's status is read on that thread between calls and kept (``snapshot``), so
  status and health never wait behind a print (``kkt_adapter.device.snapshot``);
- a driver is any ``KktDevice``: a second one plugs in here without touching intake or the
  buffer.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any, TypeVar

from kkt_adapter.device.base import (
    CashResult,
    DeviceStatus,
    Exchange,
    JournalEntry,
    KktDevice,
    ShiftReport,
)
from kkt_adapter.device.gate import DeviceGate
from kkt_adapter.device.snapshot import RefreshPolicy, StatusSnapshot
from kkt_adapter.domain.fiscal import FfdDocument, FiscalResult
from kkt_adapter.domain.journal import read_mark, stamped
from kkt_adapter.domain.money import Kopecks
from kkt_adapter.domain.shift_totals import CashKind
from kkt_adapter.hlc import HlcStamp, HybridClock, WallClock, system_wall_ms
from kkt_adapter.serial import CallResult, GroupCall, SerialThread

T = TypeVar("T")
log = logging.getLogger(__name__)

CRASH_EXIT_CODE = 70

Stamped = tuple[FiscalResult, HlcStamp]
"""A fiscalized receipt and the HLC stamp it took under the gate."""


@dataclass(frozen=True)
class _Reading:
    """One status reading, as the device thread keeps it."""

    status: DeviceStatus | None
    measured_ms: int | None
    measured_at: float | None
    """``time.monotonic()`` of the reading that succeeded."""
    error: str | None


class DeviceRunner:
    """Runs every call to one KKT on its own thread (``post`` makes it a staged write's
    ``Poster``), under the cross-process gate where the call changes the device, and reads
    the device's status between the calls (``snapshot``)."""

    def __init__(
        self,
        device: KktDevice,
        gate: DeviceGate,
        clock: HybridClock,
        *,
        crash_after_print: bool = False,
        refresh: RefreshPolicy | None = None,
        wall: WallClock = system_wall_ms,
    ) -> None:
        self.driver = device
        """The driver itself: only tests and emulator controls reach past the runner."""
        self._gate = gate
        self._clock = clock
        self._crash_after_print = crash_after_print
        self._refresh = refresh
        self._wall = wall
        # Written by the device thread only, one object at a time; readers take it whole.
        self._last = _Reading(None, None, None, None)
        self._changed = False
        self._thread = SerialThread(
            "kkt-device", between=None if refresh is None else self._between
        )

    def close(self) -> None:
        """Run what was queued, then release the thread, the gate and the device."""
        self._thread.shutdown(wait=True)
        self._gate.close()
        self.driver.close()

    # -- on the device thread (a staged write yields these) -------------------------------

    def _between(self, idle: bool) -> float | None:
        """Between calls: read the status if the policy says it is due; how long to wait."""
        assert self._refresh is not None
        last = self._last.measured_at
        age = None if last is None else time.monotonic() - last
        wait = self._refresh.wait(age, changed=self._changed, idle=idle)
        if wait <= 0:
            try:
                self._read_status()
            except Exception:  # kept in the snapshot; health says unreachable
                log.debug("KKT status reading failed", exc_info=True)
            wait = self._refresh.wait(0.0, changed=False, idle=idle)
        return wait

    def _read_status(self) -> DeviceStatus:
        """Ask the device for its status and keep the answer (or why there was none)."""
        self._changed = False
        try:
            status = self.driver.status()
        except Exception as exc:
            previous = self._last
            self._last = _Reading(
                previous.status,
                previous.measured_ms,
                previous.measured_at,
                f"{type(exc).__name__}: {exc}",
            )
            raise
        self._last = _Reading(status, self._wall(), time.monotonic(), None)
        return status

    def _changing(self, call: Callable[..., T], *args: Any) -> T:
        """Run a call that changes the device; its status is due again after it."""
        try:
            return call(*args)
        finally:
            self._changed = True

    def post(self, call: Callable[[], Any], done: Callable[[bool, Any], None]) -> None:
        """Run ``call()`` on the device thread, then ``done(ok, result or exception)``."""
        self._thread.post(call, done)

    def print_call(self, receipt_id: str, document: FfdDocument) -> GroupCall:
        """The call that fiscalizes one receipt, grouped with the prints queued behind it;
        it returns the receipt's ``Stamped`` or raises what refused it."""
        return GroupCall(self._print_group, (receipt_id, document), self.driver.max_group)

    def find_call(self, receipt_id: str) -> Callable[[], Stamped | None]:
        """The call that looks a receipt up in the device's log (stamped if found; ``None``:
        the device says it never printed it); a lookup that fails raises: the outcome stays
        unknown, which is not the same as not printed (I2, I8)."""
        return partial(self._find_stamped, receipt_id)

    def _print_group(self, items: list[tuple[str, FfdDocument]]) -> list[CallResult]:
        """Print the receipts queued for the device in one go (one durable write on it), under
        the gate. Each is stamped under the gate just before, in the order the device numbers
        them (HLC order = FD order), and its stamp travels in its document (tag 1084), so the
        KKT's journal keeps it (I5, I8)."""
        outcomes: list[CallResult] = []
        self._changed = True
        with self._gate.held():
            stamps = [self._gate.stamp(self._clock) for _ in items]
            marked = [
                (receipt_id, stamped(document, str(stamp)))
                for (receipt_id, document), stamp in zip(items, stamps, strict=True)
            ]
            for done, stamp in zip(self.driver.print_receipts(marked), stamps, strict=True):
                if isinstance(done, Exception):
                    outcomes.append((False, done))
                else:
                    outcomes.append((True, (done, stamp)))
        if self._crash_after_print:
            log.critical("test fault switch: exiting after print, before record")
            os._exit(CRASH_EXIT_CODE)
        return outcomes

    def _find_stamped(self, receipt_id: str) -> Stamped | None:
        """The receipt from the device's log with the stamp it was printed with (its tag
        1084), or one taken now for a document without it."""
        with self._gate.held():
            result = self.driver.find_document(receipt_id)
            if result is None:
                return None
            own = _own_stamp(result)
            if own is None:
                return result, self._gate.stamp(self._clock)
            self._clock.merge(own)  # later stamps come above it
            return result, own

    def _stamp(self) -> HlcStamp:
        with self._gate.held():
            return self._gate.stamp(self._clock)

    def _gated(self, call: Callable[..., T], *args: Any) -> T:
        with self._gate.held():
            return self._changing(call, *args)

    # -- from the event loop ----------------------------------------------------------------

    async def _run(self, call: Callable[..., T], *args: Any) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._thread, call, *args)

    async def find(self, receipt_id: str) -> FiscalResult | None:
        """The fiscalized receipt whose tag 1192 is ``receipt_id``, if the device has one."""
        return await self._run(self.driver.find_document, receipt_id)

    async def find_stamped(self, receipt_id: str) -> Stamped | None:
        """``find``, stamped under the gate when found."""
        return await self._run(self._find_stamped, receipt_id)

    async def stamp(self) -> HlcStamp:
        """A stamp above every stamp taken under the gate, by any process."""
        return await self._run(self._stamp)

    def snapshot(self) -> StatusSnapshot:
        """The device's status as last read, and how old it is: never waits for the device
        (status, health, metrics and the ERP heartbeat read this)."""
        last, now = self._last, time.monotonic()
        running = self._thread.running_since
        return StatusSnapshot(
            status=last.status,
            measured_ms=last.measured_ms,
            age_ms=None if last.measured_at is None else int((now - last.measured_at) * 1000),
            error=last.error,
            busy_ms=None if running is None else int(max(now - running, 0) * 1000),
        )

    async def status(self) -> DeviceStatus:
        """Ask the device now (behind every call queued for it); the answer is kept for
        ``snapshot`` too. For the journal's checks and the shift state, not for health."""
        return await self._run(self._read_status)

    async def open_shift(self, cashier: str | None) -> ShiftReport:
        return await self._run(self._gated, self.driver.open_shift, cashier)

    async def close_shift(self, cashier: str | None) -> ShiftReport:
        return await self._run(self._gated, self.driver.close_shift, cashier)

    async def x_report(self) -> ShiftReport:
        return await self._run(self.driver.x_report)

    async def cash_operation(
        self, operation_id: str, kind: CashKind, amount: Kopecks, cashier: str | None
    ) -> CashResult:
        """Cash in or out on the device, under the gate (it changes the device)."""
        return await self._run(
            self._gated, self.driver.cash_operation, operation_id, kind, amount, cashier
        )

    async def find_cash_operation(self, operation_id: str) -> CashResult | None:
        """The cash operation the device did under ``operation_id`` (``None``: not done)."""
        return await self._run(self.driver.find_cash_operation, operation_id)

    async def confirm_many(self, fn: str, fds: list[int]) -> None:
        """Tell the device the OFD acknowledged these documents of FN ``fn`` (one durable
        write)."""
        await self._run(self._changing, self.driver.confirm_many, fn, fds)

    @property
    def delivery(self) -> str:
        """``relay`` (the adapter carries documents to the OFD) or ``device`` (the register's
        FN sends them itself and the adapter watches its exchange)."""
        return str(getattr(self.driver, "delivery", "relay"))

    async def exchange(self) -> Exchange:
        """The FN's exchange with the OFD, on a device that delivers itself."""
        exchange = getattr(self.driver, "exchange", None)
        if exchange is None:
            raise TypeError("this device does not deliver to the OFD itself")
        found: Exchange = await self._run(exchange)
        return found

    async def journal(self, after_fd: int, limit: int) -> list[JournalEntry]:
        """The device's fiscalized receipts above ``after_fd``, in FD order (``limit`` at most)."""
        return await self._run(self.driver.journal, after_fd, limit)


def _own_stamp(result: FiscalResult) -> HlcStamp | None:
    """The stamp a receipt was printed with (its tag 1084), if it has a readable one."""
    mark = read_mark(result.document)
    if mark is None or mark.stamp is None:
        return None
    try:
        return HlcStamp.parse(mark.stamp)
    except ValueError:
        return None
