"""Receipt intake, two-phase: durable in the buffer, then fiscalized on the KKT, then answered.

    endpoint -> IntakeService.create_receipt -> buffer (accepted) -> KKT -> buffer (pending)

A receipt is committed as ``accepted`` before the device is asked to print, and its id travels
in the document (tag 1192). If the process dies between the print and the record, start-up
``reconcile`` asks the device's log for that id instead of printing again (promise I2).
Shift operations (``Shifts``) go to the same device runner and leave an audit event.
"""

from __future__ import annotations

import json
import logging
import os
import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from typing import Any, cast

from kkt_adapter.buffer import Buffer, NewReceipt, RefundClaim
from kkt_adapter.buffer.store import IntakeTx
from kkt_adapter.device import wire
from kkt_adapter.device.base import ShiftReport
from kkt_adapter.device.runner import DeviceRunner, Stamped
from kkt_adapter.domain import Receipt, receipt_fingerprint, receipt_to_json, to_ffd
from kkt_adapter.domain.fiscal import FiscalResult
from kkt_adapter.domain.journal import TAG_USER_ATTRIBUTE, mark
from kkt_adapter.domain.lifecycle import ReceiptStatus
from kkt_adapter.domain.money import format_money
from kkt_adapter.domain.receipt import payment_change
from kkt_adapter.domain.shift_totals import shift_totals
from kkt_adapter.errors import DeviceError, RequestInProgress
from kkt_adapter.hlc import HlcStamp
from kkt_adapter.sqlite import Staged

log = logging.getLogger(__name__)


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


def new_receipt(
    key: str, receipt: Receipt, now_ms: int, *, refund_requires_synced: bool = False
) -> NewReceipt:
    """A validated receipt under ``key``, with a new id and its fiscal document; a refund
    that names its sale carries the claim the buffer checks as it inserts it."""
    receipt_id = new_receipt_id(now_ms)
    payload = receipt_to_json(receipt)
    fingerprint = receipt_fingerprint(receipt, payload)
    document = to_ffd(receipt, receipt_id)
    document[TAG_USER_ATTRIBUTE] = mark(key, fingerprint)  # the journal knows the key (I8)
    return NewReceipt(
        receipt_id=receipt_id,
        idempotency_key=key,
        fingerprint=fingerprint,
        pos_id=receipt.pos_id,
        type=str(receipt.type),
        total=receipt.total,
        payload=payload,
        document=document,
        refund=None
        if receipt.refund_of is None
        else RefundClaim(receipt, require_synced=refund_requires_synced),
    )


def fiscal_answer(result: FiscalResult, queue_position: int, change: int) -> dict[str, Any]:
    """The POS's answer for a fiscalized receipt (DESIGN §4, "Receipt response").

    ``change`` is the cash handed back, in kopecks (shown like every amount, "50.00"): the
    device's document does not hold it (tag 1031 is the cash part of the total), so it comes
    from the receipt as the POS sent it."""
    return {
        "receipt_id": result.receipt_id,
        "status": ReceiptStatus.PENDING,
        "change": format_money(change),
        "fiscal": {
            "fn": result.fn,
            "fd": result.fd,
            "fp": result.fp,
            "shift": result.shift,
            "number_in_shift": result.number_in_shift,
            "datetime": result.datetime.isoformat(),
            "qr": result.qr,
        },
        "ofd": {"status": ReceiptStatus.PENDING, "queue_position": queue_position},
    }


def stored_change(row: dict[str, Any] | None) -> int:
    """The change of a buffer row's receipt; 0 without a row (a document recovered from the
    KKT alone: its log keeps the cash part, never what was received)."""
    if row is None:
        return 0
    return payment_change(json.loads(row["payload"]), row["total"])


class IntakeService:
    """Takes receipts in and keeps the buffer and the KKT in step."""

    def __init__(
        self,
        buffer: Buffer,
        device: DeviceRunner,
        *,
        on_pending: Callable[[], None],
        refund_requires_synced: bool = False,
    ) -> None:
        self._buffer = buffer
        self._refund_requires_synced = refund_requires_synced
        self._device = device
        self._on_pending = on_pending  # a receipt became pending (the delivery worker wakes)
        # Idempotency keys with a request running in this process: a receipt left
        # ``accepted`` under any other key is a leftover to settle (see ``settle_leftover``).
        self._inflight: dict[str, int] = {}

    async def create_receipt(self, key: str, receipt: Receipt) -> Intake:
        """Make durable, fiscalize and answer one validated receipt under its key."""
        new = new_receipt(
            key,
            receipt,
            self._buffer.now_ms(),
            refund_requires_synced=self._refund_requires_synced,
        )
        self._inflight[key] = self._inflight.get(key, 0) + 1
        try:
            outcome = await self._buffer.intake(
                lambda tx: self._intake_steps(tx, new), self._device
            )
        except RequestInProgress as busy:
            outcome = await self._retry_leftover(new, busy)
        finally:
            self._inflight[key] -= 1
            if not self._inflight[key]:
                del self._inflight[key]
        if isinstance(outcome, DeviceError):
            raise outcome
        if not outcome.replayed:
            self._on_pending()
        return cast(Intake, outcome)

    def _intake_steps(self, tx: IntakeTx, new: NewReceipt) -> Staged:
        """accepted (commit) -> the KKT prints, outside the transaction -> pending (commit).

        The transactional parts run on the buffer's writer, the print on the device thread,
        handing over without the event loop; a refusal is recorded as ``print_failed`` and
        returned.
        """
        start = tx.begin(new)
        if start.replay is not None:
            return Intake(start.replay, replayed=True)
        receipt_id = start.receipt_id
        try:
            result, stamp = yield self._device.print_call(receipt_id, start.document)
        except DeviceError as exc:
            tx.print_failed(receipt_id, exc.reason)
            return exc
        except Exception as exc:
            # The device may or may not have printed: ask its log rather than guess (I2).
            log.exception("device failure while printing %s", receipt_id)
            try:
                found = yield self._device.find_call(receipt_id)
            except Exception as lookup:
                # Neither printed nor refused for certain (the register's web server went
                # away mid-task, and its queued task may still run): the receipt stays
                # ``accepted``, settled from the device later - the POS's retry, housekeeping,
                # start-up - and never printed again without proof that it was not (I2).
                log.error("receipt %s: outcome unknown, left accepted: %s", receipt_id, lookup)
                return DeviceError(
                    f"the KKT's outcome is unknown ({exc}) and it cannot be asked now"
                    f" ({lookup}); retry with the same Idempotency-Key",
                    reason="outcome_unknown",
                )
            if found is None:
                tx.print_failed(receipt_id, "device_error")
                return DeviceError(f"the KKT failed: {exc}", reason="device_error")
            result, stamp = found
        position = start.queued + 1
        change = payment_change(new.payload, new.total)  # same body as the row (fingerprint)
        answer = tx.record_fiscal(
            receipt_id, result, lambda: fiscal_answer(result, position, change), stamp
        )
        return Intake(answer, replayed=False)

    async def _record(self, result: FiscalResult, stamp: HlcStamp) -> dict[str, Any]:
        """Record a document printed earlier (a leftover), stamped between its FD neighbours
        if later ones of its FN were recorded meanwhile (I5)."""
        stamp = await self._buffer.late_stamp(result, stamp)
        queued = (await self._buffer.counts())[ReceiptStatus.PENDING]
        change = stored_change(await self._buffer.get_receipt(result.receipt_id))
        body = await self._buffer.record_fiscal(
            result.receipt_id, result, lambda: fiscal_answer(result, queued + 1, change), stamp
        )
        self._on_pending()
        return body

    async def _retry_leftover(self, new: NewReceipt, busy: RequestInProgress) -> Any:
        """A retry found its receipt ``accepted``: in progress if a request here runs it;
        otherwise a leftover (its record failed to commit, e.g. on a full disk) to settle.

        If the process that owned it died before printing it (a standby serving the retry of
        a sale the primary died on), it is marked ``print_failed`` and printed now: the POS
        retrying the same key is the cashier asking for exactly that receipt.
        """
        receipt_id = (busy.details or {}).get("receipt_id")
        if not isinstance(receipt_id, str):
            raise busy
        try:
            body = await self.settle_leftover(receipt_id, new.idempotency_key, own=1)
        except Exception as lookup:  # the device cannot be asked now: neither print nor guess
            raise DeviceError(
                f"receipt {receipt_id}: the KKT's outcome is unknown and it cannot be asked"
                f" now ({lookup}); retry with the same Idempotency-Key",
                reason="outcome_unknown",
            ) from None
        if body is not None:
            return Intake(body, replayed=True)
        row = await self._buffer.get_receipt(receipt_id)
        if row is None or row["status"] != ReceiptStatus.ACCEPTED:
            raise busy
        if row["owner"] == self._buffer.owner:
            if self._inflight.get(new.idempotency_key, 0) > 1:
                raise busy  # another request here is printing it right now
        elif self._buffer.owner_alive(row["owner"]):
            raise busy
        # Its process died before printing it, or this one left it after an unknown outcome
        # that the KKT has now answered: not printed.
        await self._buffer.record_print_failed(receipt_id, "interrupted_before_print")
        log.warning("receipt %s: the KKT never printed it; printing it now", receipt_id)
        try:
            return await self._buffer.intake(lambda tx: self._intake_steps(tx, new), self._device)
        except RequestInProgress:
            raise busy from None

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
        row = await self._buffer.get_receipt(receipt_id)
        if row is None or row["status"] != ReceiptStatus.ACCEPTED:
            return None
        if row["owner"] != self._buffer.owner and self._buffer.owner_alive(row["owner"]):
            return None  # another live process runs it: it records it itself
        found: Stamped | None = await self._device.find_stamped(receipt_id)
        if found is None:
            return None
        log.warning("receipt %s was printed but not recorded: recorded from the KKT", receipt_id)
        return await self._record(*found)

    async def reconcile(self) -> ReconcileReport:
        """Settle receipts left ``accepted`` by a crash, from the device's document log.

        Only rows whose owner process is dead: a live process sharing the data dir may be
        printing one right now. The ones the device printed are recorded in FD order, each
        stamped as it is recorded, so their HLC order is their FD order (I5); the others were
        never printed.
        """
        printed: list[FiscalResult] = []
        never_printed: list[str] = []
        for row in await self._buffer.accepted():
            if self._buffer.owner_alive(row.owner):
                continue
            receipt_id = row.receipt_id
            try:
                result = await self._device.find(receipt_id)
            except Exception as exc:  # the device cannot tell now: left for the next sweep
                log.warning(
                    "receipt %s left accepted: the KKT cannot tell now: %s", receipt_id, exc
                )
                continue
            if result is not None:
                printed.append(result)
            else:
                await self._buffer.record_print_failed(receipt_id, "interrupted_before_print")
                never_printed.append(receipt_id)
        for result in sorted(printed, key=lambda result: result.fd):
            await self._record(result, await self._device.stamp())
        return ReconcileReport([result.receipt_id for result in printed], never_printed)


class Shifts:
    """The shift's operations on the KKT, each left in the audit log when it changes state."""

    def __init__(self, buffer: Buffer, device: DeviceRunner) -> None:
        self._buffer = buffer
        self._device = device

    async def open(self, cashier: str | None) -> ShiftReport:
        report = await self._device.open_shift(cashier)
        await self._buffer.log_event(
            "info", "shift_opened", f"shift {report.shift}, FD {report.fd}"
        )
        return report

    async def close(self, cashier: str | None) -> ShiftReport:
        """Close the shift and keep its Z report's figures (read back by FN and shift)."""
        report = await self._with_vat(await self._device.close_shift(cashier))
        await self._buffer.log_event(
            "info", "shift_closed", f"shift {report.shift}, Z report FD {report.fd}"
        )
        fn = report.fn or (await self._device.status()).fn
        report = replace(report, fn=fn)
        closed_ms = self._buffer.now_ms()
        await self._buffer.shift_reports.keep(fn, report.shift, report.fd, closed_ms, report)
        return report

    async def x_report(self) -> ShiftReport:
        return await self._with_vat(await self._device.x_report())

    async def closed(self, *, fn: str | None, before: int | None, limit: int) -> list[ShiftReport]:
        """Kept Z reports, newest first."""
        rows = await self._buffer.shift_reports.page(fn=fn, before=before, limit=limit)
        return [wire.shift_report(row) for row in rows]

    async def z_report(self, shift: int, fn: str | None) -> ShiftReport | None:
        """The kept Z report of a closed shift (of FN ``fn``, else the newest so numbered)."""
        row = await self._buffer.shift_reports.get(shift, fn)
        return None if row is None else wire.shift_report(row)

    async def _with_vat(self, report: ShiftReport) -> ShiftReport:
        """A register that counts no VAT per rate (its report's ``vat`` is empty: ATOL's
        ``getShiftTotals`` has none) gets it from the adapter's records of the shift, added
        up by the same function as the emulator's figures."""
        summary = report.summary
        if summary is None or summary.vat or report.fn is None:
            return report
        documents = await self._buffer.shift_reports.shift_documents(report.fn, report.shift)
        return replace(report, summary=replace(summary, vat=shift_totals(documents).vat))
