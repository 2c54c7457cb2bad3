"""Receipt intake, two-phase: durable in the buffer, then fiscalized on the KKT, then answered.

    route -> IntakeService.create_receipt -> buffer (accepted) -> device -> buffer (pending)

A receipt is committed as ``accepted`` before the device is asked to print, and its id travels
in the document (tag 1192). If the process dies between the print and the record, start-up
``reconcile`` asks the device's log for that id instead of printing again (promise I2).
"""

from __future__ import annotations

import asyncio
import logging
import os
import sqlite3
import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial
from typing import Any, TypeVar, cast

from kkt_adapter.buffer import Buffer, NewReceipt
from kkt_adapter.device.base import DeviceStatus, KktDevice, ShiftReport
from kkt_adapter.device.gate import DeviceGate
from kkt_adapter.domain import Receipt, receipt_fingerprint, receipt_to_json, to_ffd
from kkt_adapter.domain.fiscal import FfdDocument, FiscalResult
from kkt_adapter.errors import DeviceError, RequestInProgress
from kkt_adapter.hlc import HlcStamp, HybridClock
from kkt_adapter.serial import CallResult, GroupCall, SerialThread
from kkt_adapter.sqlite import Staged

T = TypeVar("T")
log = logging.getLogger(__name__)

CRASH_EXIT_CODE = 70


@dataclass(frozen=True)
class Intake:
    """The answer to a receipt request; ``replayed`` when it repeats an earlier answer."""

    body: dict[str, Any]
    replayed: bool


@dataclass(frozen=True)
class ReconcileReport:
    recovered: list[str]
    never_printed: list[str]


CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


_random_words: Iterator[tuple[Any, ...]] = iter(())


def _random_u32() -> int:
    """32 bits from the OS's CSPRNG, fetched 4 KiB at a time: one syscall per 1024 ids.

    ``next`` on the C iterator is atomic under the GIL, so threads never share a value; a
    concurrent refill only discards unused bits.
    """
    global _random_words
    for (word,) in _random_words:
        return int(word)
    _random_words = struct.iter_unpack(">I", os.urandom(4096))
    return int(next(_random_words)[0])


def new_receipt_id(now_ms: int) -> str:
    """A time-ordered id of 16 characters (48-bit milliseconds + 32 random bits, base32).

    Sixteen characters because the id travels in FFD tag 1192, whose value is at most 16
    characters long; the time prefix keeps ids sortable by creation.
    """
    value = (now_ms & (2**48 - 1)) << 32 | _random_u32()
    return "".join(CROCKFORD[(value >> shift) & 31] for shift in range(75, -1, -5))


def new_receipt(key: str, receipt: Receipt, now_ms: int) -> NewReceipt:
    """A validated receipt under ``key``, with a new id and its fiscal document."""
    receipt_id = new_receipt_id(now_ms)
    payload = receipt_to_json(receipt)
    return NewReceipt(
        receipt_id=receipt_id,
        idempotency_key=key,
        fingerprint=receipt_fingerprint(receipt, payload),
        pos_id=receipt.pos_id,
        type=str(receipt.type),
        total=receipt.total,
        payload=payload,
        document=to_ffd(receipt, receipt_id),
    )


def fiscal_answer(result: FiscalResult, queue_position: int) -> dict[str, Any]:
    """The POS's answer for a fiscalized receipt (DESIGN §4, "Receipt response")."""
    return {
        "receipt_id": result.receipt_id,
        "status": "pending",
        "fiscal": {
            "fn": result.fn,
            "fd": result.fd,
            "fp": result.fp,
            "shift": result.shift,
            "number_in_shift": result.number_in_shift,
            "datetime": result.datetime.isoformat(),
            "qr": result.qr,
        },
        "ofd": {"status": "pending", "queue_position": queue_position},
    }


class IntakeService:
    """Takes receipts in and keeps the buffer and the device in step."""

    def __init__(
        self,
        buffer: Buffer,
        device: KktDevice,
        *,
        gate: DeviceGate,
        crash_after_print: bool = False,
        on_pending: Callable[[], None] = lambda: None,
    ) -> None:
        self.buffer = buffer
        self.device = device
        self.gate = gate
        self._crash_after_print = crash_after_print
        self.on_pending = on_pending
        # One thread: the device prints one receipt at a time, never on the event loop.
        self._device_thread = SerialThread("kkt-device")
        # Idempotency keys with a request running in this process: a receipt left
        # ``accepted`` under any other key is a leftover to settle (see ``settle_leftover``).
        self._inflight: dict[str, int] = {}

    def close(self) -> None:
        self._device_thread.shutdown(wait=True)
        self.gate.close()

    async def on_device(self, call: Callable[..., T], *args: Any) -> T:
        """Run a device call on the device thread."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._device_thread, call, *args)

    async def create_receipt(self, key: str, receipt: Receipt) -> Intake:
        """Make durable, fiscalize and answer one validated receipt under its key."""
        new = new_receipt(key, receipt, self.buffer.now_ms())
        self._inflight[key] = self._inflight.get(key, 0) + 1
        try:
            outcome = await self.buffer.db.staged(
                lambda conn: self._intake_steps(conn, new), self._device_thread
            )
        except RequestInProgress as busy:
            outcome = await self._retry_leftover(key, busy)
        finally:
            self._inflight[key] -= 1
            if not self._inflight[key]:
                del self._inflight[key]
        if isinstance(outcome, DeviceError):
            raise outcome
        if not outcome.replayed:
            self.on_pending()
        return cast(Intake, outcome)

    def _intake_steps(self, conn: sqlite3.Connection, new: NewReceipt) -> Staged:
        """accepted (commit) -> the KKT prints, outside the transaction -> pending (commit).

        The transactional parts run on the buffer's writer, the print on the device thread,
        handing over without the event loop; a refusal is recorded as ``print_failed`` and
        returned.
        """
        start = self.buffer.begin_intake_tx(conn, new)
        if start.replay is not None:
            return Intake(start.replay, replayed=True)
        receipt_id = start.receipt_id
        try:
            result, stamp = yield GroupCall(
                self._print_group, (receipt_id, start.document), self.device.max_group
            )
        except DeviceError as exc:
            self.buffer.print_failed_tx(conn, receipt_id, exc.reason)
            return exc
        except Exception as exc:
            # The device may or may not have printed: ask its log rather than guess (I2).
            log.exception("device failure while printing %s", receipt_id)
            found = yield partial(self._find_quietly, receipt_id)
            if found is None:
                self.buffer.print_failed_tx(conn, receipt_id, "device_error")
                return DeviceError(f"the KKT failed: {exc}", reason="device_error")
            result, stamp = found
        position = start.queued + 1
        answer = self.buffer.record_fiscal_tx(
            conn, receipt_id, result, lambda: fiscal_answer(result, position), stamp
        )
        return Intake(answer, replayed=False)

    def _print_group(self, items: list[tuple[str, FfdDocument]]) -> list[CallResult]:
        """Print the receipts queued for the device in one go (one durable write on it), under
        the gate, stamping each in FD order before letting go (HLC order = FD order)."""
        outcomes: list[CallResult] = []
        with self.gate.held():
            for done in self.device.print_receipts(items):
                if isinstance(done, Exception):
                    outcomes.append((False, done))
                else:
                    outcomes.append((True, (done, self.gate.stamp(self._clock()))))
        if self._crash_after_print:
            log.critical("test fault switch: exiting after print, before record")
            os._exit(CRASH_EXIT_CODE)
        return outcomes

    def _stamp(self) -> HlcStamp:
        """A stamp above every stamp taken under the gate, by any process."""
        with self.gate.held():
            return self.gate.stamp(self._clock())

    def _find_stamped(self, receipt_id: str) -> tuple[FiscalResult, HlcStamp] | None:
        with self.gate.held():
            result = self.device.find_document(receipt_id)
            return None if result is None else (result, self.gate.stamp(self._clock()))

    def _find_quietly(self, receipt_id: str) -> tuple[FiscalResult, HlcStamp] | None:
        try:
            return self._find_stamped(receipt_id)
        except Exception:
            log.exception("device lookup of %s failed", receipt_id)
            return None

    def _gated(self, call: Callable[..., T], *args: Any) -> T:
        """A device operation that changes its state, under the cross-process gate."""
        with self.gate.held():
            return call(*args)

    def _clock(self) -> HybridClock:
        assert self.buffer.clock is not None
        return self.buffer.clock

    async def _record(self, result: FiscalResult, stamp: HlcStamp) -> dict[str, Any]:
        queued = (await self.buffer.counts())["pending"]
        body = await self.buffer.record_fiscal(
            result.receipt_id, result, lambda: fiscal_answer(result, queued + 1), stamp
        )
        self.on_pending()
        return body

    async def _retry_leftover(self, key: str, busy: RequestInProgress) -> Intake:
        """A retry found its receipt ``accepted``: in progress if a request here runs it;
        otherwise a leftover (its record failed to commit, e.g. on a full disk) to settle."""
        receipt_id = (busy.details or {}).get("receipt_id")
        if not isinstance(receipt_id, str):
            raise busy
        body = await self.settle_leftover(receipt_id, key, own=1)
        if body is None:
            raise busy
        return Intake(body, replayed=True)

    async def settle_leftover(
        self, receipt_id: str, key: str, *, own: int = 0
    ) -> dict[str, Any] | None:
        """Record a receipt left ``accepted`` from the KKT's log if the KKT printed it (I2:
        never print it again); returns its answer, or ``None`` if not printed (yet).

        Not printed is left alone: another process sharing the buffer may be about to print
        it; start-up reconciliation settles it for good. ``own``: requests with this key the
        caller itself is.
        """
        if self._inflight.get(key, 0) > own:
            return None
        found = await self.on_device(self._find_stamped, receipt_id)
        if found is None:
            return None
        log.warning("receipt %s was printed but not recorded: recorded from the KKT", receipt_id)
        return await self._record(*found)

    async def reconcile(self) -> ReconcileReport:
        """Settle receipts left ``accepted`` by a crash, from the device's document log.

        The ones the device printed are recorded in FD order, each stamped as it is recorded,
        so their HLC order is their FD order (I5); the others were never printed.
        """
        printed: list[FiscalResult] = []
        never_printed: list[str] = []
        for receipt_id in await self.buffer.accepted_ids():
            result = await self.on_device(self.device.find_document, receipt_id)
            if result is not None:
                printed.append(result)
            else:
                await self.buffer.record_print_failed(receipt_id, "interrupted_before_print")
                never_printed.append(receipt_id)
        for result in sorted(printed, key=lambda result: result.fd):
            await self._record(result, await self.on_device(self._stamp))
        return ReconcileReport([result.receipt_id for result in printed], never_printed)

    async def device_status(self) -> DeviceStatus:
        return await self.on_device(self.device.status)

    async def open_shift(self, cashier: str | None) -> ShiftReport:
        report: ShiftReport = await self.on_device(self._gated, self.device.open_shift, cashier)
        await self.buffer.log_event("info", "shift_opened", f"shift {report.shift}, FD {report.fd}")
        return report

    async def close_shift(self, cashier: str | None) -> ShiftReport:
        report: ShiftReport = await self.on_device(self._gated, self.device.close_shift, cashier)
        await self.buffer.log_event(
            "info", "shift_closed", f"shift {report.shift}, Z report FD {report.fd}"
        )
        return report

    async def x_report(self) -> ShiftReport:
        return await self.on_device(self.device.x_report)
