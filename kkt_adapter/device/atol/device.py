"""A real ATOL register as a ``KktDevice``: the mapping's tasks through a transport.

``KKT_DEVICE=atol-web`` runs tasks through the driver's web server (``AtolWebTransport``).
Delivery to the OFD is the register's own (``delivery = "device"``): its FN sends every
document over the register's link, and the adapter watches the FN's exchange status.

Printing never risks a second receipt (I2): the task's uuid comes from the receipt id, so a
retry after a lost answer reads the first task's result; a new task for the same receipt
(``task_uuid(receipt_id, attempt)``) is queued only after every earlier one is known to have
failed (its final status is an error). A task whose fate stays unknown raises
``OutcomeUnknown``, and the runner then asks ``find_document``, which reads the tasks' results
and, failing that, the FN's archive by tag 1192 - never prints.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime
from typing import Any, Protocol

from kkt_adapter.device.atol import mapping
from kkt_adapter.device.atol.expect import Expectations, Expected
from kkt_adapter.device.atol.web import OutcomeUnknown, TaskState
from kkt_adapter.device.base import CashResult, DeviceStatus, Exchange, JournalEntry, ShiftReport
from kkt_adapter.domain.fiscal import FfdDocument, FiscalResult
from kkt_adapter.domain.money import Kopecks, format_money
from kkt_adapter.domain.shift_totals import CashKind
from kkt_adapter.domain.sign import qr_string
from kkt_adapter.domain.vat import RECEIPT_SUM_TAGS
from kkt_adapter.errors import CashOutcomeUnknown, DeviceError, InsufficientCash

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 20
"""Tasks queued for one receipt at most (each after the one before failed for certain)."""
ARCHIVE_LOOKBACK = 50
"""FN archive documents read back to find a receipt whose task the web server lost."""
MODEL = "ATOL (driver web server)"
_MONEY_TAGS = ("1020", *RECEIPT_SUM_TAGS, "1031", "1081", "1215", "1216", "1217")
_ITEM_MONEY_TAGS = ("1079", "1043", "1200")


class Transport(Protocol):
    """What the device needs of a transport (``AtolWebTransport``; the library's later)."""

    def submit(self, uuid: str, task: dict[str, Any]) -> bool: ...

    def state(self, uuid: str) -> TaskState | None: ...

    def wait(self, uuid: str) -> dict[str, Any]: ...

    def close(self) -> None: ...


class AtolDevice:
    """An ATOL register (see the module docstring)."""

    max_group = 1
    delivery = "device"

    def __init__(
        self,
        transport: Transport,
        *,
        taxation_type: str | None,
        registration_number: str = "",
        model: str = MODEL,
        expectations: Expectations | None = None,
    ) -> None:
        self._transport = transport
        self._expectations = expectations
        self._last: tuple[str, int] | None = None  # (FN, last FD) as last seen
        self._taxation_type = taxation_type
        self._registration_number = registration_number
        self._model = model
        self._query = 0
        if getattr(transport, "settles_open_documents", False):
            self.settle_open_document()

    def settle_open_document(self) -> str:
        """After a power loss mid-receipt (driver library: nothing else settles it): a
        document the FN closed but the printer did not print is printed (``continuePrint``);
        one the FN did not close is cancelled, so it was never fiscalized. Returns what was
        done: "printed", "cancelled" or "nothing"."""
        state = mapping.document_state(self._run(mapping.check_document_closed_task()))
        if state.closed and not state.printed:
            self._run(mapping.continue_print_task())
            log.warning("ATOL: the last document was fiscalized but not printed: printed now")
            return "printed"
        if not state.closed:
            self._run(mapping.cancel_receipt_task())
            log.warning("ATOL: the last receipt was left open (not fiscalized): cancelled")
            return "cancelled"
        return "nothing"

    # -- receipts -------------------------------------------------------------------------

    def print_receipts(
        self, items: Sequence[tuple[str, FfdDocument]]
    ) -> list[FiscalResult | Exception]:
        outcomes: list[FiscalResult | Exception] = []
        for receipt_id, document in items:
            try:
                outcomes.append(self._print(receipt_id, document))
            except DeviceError as refused:
                outcomes.append(refused)
        return outcomes

    def _print(self, receipt_id: str, document: FfdDocument) -> FiscalResult:
        task = mapping.receipt_task(receipt_id, document, taxation_type=self._taxation_type)
        self._expect(receipt_id, document)
        for attempt in range(MAX_ATTEMPTS):
            uuid = mapping.task_uuid(receipt_id, attempt)
            if not self._transport.submit(uuid, task):
                known = self._transport.state(uuid)
                if known is not None and known.status in ("error", "interrupted", "canceled"):
                    continue  # that task failed for certain: a new one may print it
            try:
                answer = self._transport.wait(uuid)
            except OutcomeUnknown:
                self._last = None  # whether it took an FD is unknown: read the FN again
                raise
            return self._fiscalized(receipt_id, answer, document)
        raise DeviceError(
            f"receipt {receipt_id}: {MAX_ATTEMPTS} tasks failed", reason="device_error"
        )

    def _expect(self, receipt_id: str, document: FfdDocument) -> None:
        """Write the FN and FD the receipt should get before its task is sent."""
        if self._expectations is None:
            return
        if self._last is None:
            status = self.status()
            # A closed shift is opened by the receipt itself, as a document of its own first.
            self._last = (status.fn, status.last_fd + (0 if status.shift_open else 1))
        fn, last_fd = self._last
        total = int(document.get("1020", 0))
        self._expectations.write(receipt_id, Expected(fn, last_fd + 1, total))

    def _fiscalized(
        self, receipt_id: str, answer: dict[str, Any], document: FfdDocument
    ) -> FiscalResult:
        warnings = mapping.task_warnings(answer)
        if warnings.not_printed:  # fiscalized, paper not printed: finish the printing
            with _quietly():
                self._run(mapping.continue_print_task())
        result = mapping.fiscal_result(receipt_id, answer, document=document)
        self._last = (result.fn, result.fd)
        return result

    def find_document(self, receipt_id: str) -> FiscalResult | None:
        """The receipt's result from its tasks, else from the FN's archive (tag 1192)."""
        for attempt in range(MAX_ATTEMPTS):
            state = self._transport.state(mapping.task_uuid(receipt_id, attempt))
            if state is None:
                break
            if state.status == "ready" and state.result is not None:
                fd = int(state.result["fiscalParams"]["fiscalDocumentNumber"])
                return self._archive_receipt(fd)
            if state.status not in ("error", "interrupted", "canceled"):
                raise OutcomeUnknown(f"the task for {receipt_id} is still {state.status}")
        expected = None if self._expectations is None else self._expectations.read(receipt_id)
        if expected is not None:
            found = self._archive_receipt_or_none(expected.fd)
            if found is not None and found.receipt_id == receipt_id:
                return found  # the FD it was expected to get: tag 1192 says it is
        last = mapping.fn_status(self._run(mapping.fn_status_task())).last_fd
        for fd in range(last, max(last - ARCHIVE_LOOKBACK, 0), -1):
            found = self._archive_receipt(fd)
            if found is not None and found.receipt_id == receipt_id:
                return found
        return None

    def journal(self, after_fd: int, limit: int) -> list[JournalEntry]:
        exchange = mapping.exchange_status(self._run(mapping.exchange_status_task()))
        last = mapping.fn_status(self._run(mapping.fn_status_task())).last_fd
        entries = []
        for fd in range(after_fd + 1, min(last, after_fd + limit) + 1):
            found = self._archive_receipt(fd)
            if found is not None:
                unsent = exchange.first_unsent_fd is not None and fd >= exchange.first_unsent_fd
                entries.append(JournalEntry(found, confirmed=not unsent))
        return entries

    def _archive_receipt_or_none(self, fd: int) -> FiscalResult | None:
        """``_archive_receipt``, or None when the FN has no such document (yet)."""
        try:
            return self._archive_receipt(fd)
        except DeviceError:
            return None

    def _archive_receipt(self, fd: int) -> FiscalResult | None:
        document = mapping.fn_document(self._run(mapping.fn_document_task(fd)))
        if not document.kind.startswith("receipt"):
            return None
        return _result_of(document)

    # -- the rest ---------------------------------------------------------------------------

    def exchange(self) -> Exchange:
        """The FN's exchange with the OFD (delivery ``device``). The last FD is read first:
        a receipt fiscalized meanwhile is above it, and never counted as delivered."""
        last = mapping.fn_status(self._run(mapping.fn_status_task())).last_fd
        status = mapping.exchange_status(self._run(mapping.exchange_status_task()))
        below = status.first_unsent_fd if status.first_unsent_fd is not None else last + 1
        return Exchange(
            delivered_below=below,
            unsent_count=status.unsent_count,
            first_unsent_at=status.first_unsent_at,
            last_success_at=status.last_success_at,
            error=status.error,
        )

    def status(self) -> DeviceStatus:
        return mapping.device_status(
            mapping.device_state(self._run(mapping.device_status_task())),
            mapping.shift_state(self._run(mapping.shift_status_task())),
            mapping.fn_info(self._run(mapping.fn_info_task())),
            mapping.fn_status(self._run(mapping.fn_status_task())),
            mapping.exchange_status(self._run(mapping.exchange_status_task())),
            model=self._model,
            registration_number=self._registration_number,
        )

    def open_shift(self, cashier: str | None = None) -> ShiftReport:
        operator = mapping.Operator(cashier) if cashier else None
        self._last = None  # another document takes an FD: read it again before a receipt
        return mapping.shift_report("open", self._run(mapping.open_shift_task(operator)))

    def close_shift(self, cashier: str | None = None) -> ShiftReport:
        """The Z report: the register's counters are read just before the shift closes (the
        counters of a closed shift are not read back), the report's FD from the close."""
        operator = mapping.Operator(cashier) if cashier else None
        _, summary = mapping.shift_totals(self._run(mapping.shift_totals_task()))
        self._last = None
        report = mapping.shift_report("z", self._run(mapping.close_shift_task(operator)))
        return replace(report, totals=dict(summary.totals), summary=summary)

    def x_report(self) -> ShiftReport:
        self._run(mapping.report_x_task())
        shift, summary = mapping.shift_totals(self._run(mapping.shift_totals_task()))
        last = mapping.fn_status(self._run(mapping.fn_status_task())).last_fd
        fn = mapping.fn_info(self._run(mapping.fn_info_task())).serial
        return ShiftReport(
            "x", shift, last, None, None, summary.receipts, dict(summary.totals), fn, summary
        )

    # -- cash in and out --------------------------------------------------------------------

    def cash_operation(
        self, operation_id: str, kind: CashKind, amount: Kopecks, cashier: str | None
    ) -> CashResult:
        """``cashIn``/``cashOut`` under the task uuid of ``operation_id`` (a retry reads the
        first task's result, never queues a second). Error 80 (no cash) is
        ``InsufficientCash`` with the drawer's cash read from the register's counters."""
        operator = mapping.Operator(cashier) if cashier else None
        uuid = mapping.task_uuid(operation_id)
        self._transport.submit(uuid, mapping.cash_task(kind, amount, operator))
        try:
            answer = self._transport.wait(uuid)
        except DeviceError as refused:
            if refused.reason != "insufficient_cash":
                raise
            _, summary = mapping.shift_totals(self._run(mapping.shift_totals_task()))
            raise InsufficientCash(
                f"cash out of {format_money(amount)} refused: {refused.message}",
                details={
                    "drawer_cash": format_money(summary.drawer_cash),
                    "requested": format_money(amount),
                },
            ) from None
        return self._cash_result(operation_id, kind, amount, mapping.cash_sum(answer))

    def find_cash_operation(self, operation_id: str) -> CashResult | None:
        """From the task's result: failed for certain is ``None``; done is read back (its
        number and drawer as the counters say now). A register keeps no operation id with a
        cash document, so a task the web server does not know (never sent, forgotten after
        ``deleteRequestsAfter``, or the library transport after a restart) or one still
        running is ``CashOutcomeUnknown``: not done again; the X report settles it."""
        state = self._transport.state(mapping.task_uuid(operation_id))
        if state is not None and state.status in ("error", "interrupted", "canceled"):
            return None
        if state is None or state.status != "ready" or state.result is None:
            raise CashOutcomeUnknown(
                f"cash operation {operation_id}: the register cannot say whether it was done"
                f" ({'no such task' if state is None else state.status}); read the X report",
                details={"operation_id": operation_id},
            )
        # The answer does not repeat the task: kind and amount are the caller's to fill in.
        return self._cash_result(
            operation_id, CashKind.CASH_IN, Kopecks(0), mapping.cash_sum(state.result)
        )

    def _cash_result(
        self, operation_id: str, kind: CashKind, amount: Kopecks, drawer: int
    ) -> CashResult:
        """The answer has the drawer's cash only: the shift and the operation's number come
        from the counters (cash in + cash out so far), the time from this computer's clock."""
        shift, summary = mapping.shift_totals(self._run(mapping.shift_totals_task()))
        number = summary.cash_in.count + summary.cash_out.count
        return CashResult(
            operation_id, kind, amount, shift, number, datetime.now().astimezone(), Kopecks(drawer)
        )

    def confirm_many(self, fn: str, fds: Sequence[int]) -> None:
        """Nothing to tell: the register's FN has the OFD's receipts itself."""

    def close(self) -> None:
        self._transport.close()
        if self._expectations is not None:
            self._expectations.close()

    def _run(self, task: dict[str, Any]) -> dict[str, Any]:
        """A task that changes no receipt, under a fresh uuid."""
        self._query += 1
        uuid = f"kkt-adapter-{datetime.now().strftime('%Y%m%d%H%M%S%f')}-{self._query}"
        self._transport.submit(uuid, task)
        return self._transport.wait(uuid)


class _quietly:
    """Suppress and log a failure of a best-effort step."""

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: object, exc: BaseException | None, tb: object) -> bool:
        if exc is not None and isinstance(exc, Exception):
            log.warning("ATOL: best-effort step failed: %s", exc)
            return True
        return False


def archive_fp(value: object) -> str:
    """Tag 1077 of an archive document as the fiscal sign the receipt and QR show.

    The driver gives it as hex bytes (6 bytes, the FN's "ФПД"); the printed FP is the last 4
    of them read as a big-endian number. Digits are taken as they are (the emulator's form).
    """
    text = str(value).strip()
    if text.isdigit():
        return text
    try:
        return str(int(text.replace(" ", "")[-8:], 16))
    except ValueError:
        return text


def _result_of(document: mapping.FnDocument) -> FiscalResult | None:
    """Our fiscal result of a receipt read from the FN's archive (money back to kopecks)."""
    tags = document.tags
    if document.receipt_id is None:
        return None
    ours: dict[str, Any] = dict(tags)
    for tag in _MONEY_TAGS:
        if tags.get(tag) is not None:
            ours[tag] = mapping.kopecks_from_json(tags[tag], f"documentTLV.{tag}")
    items = tags.get("1059")
    if isinstance(items, list):
        ours["1059"] = [
            {
                **item,
                **{
                    tag: mapping.kopecks_from_json(item[tag], f"documentTLV.1059.{tag}")
                    for tag in _ITEM_MONEY_TAGS
                    if tag in item
                },
            }
            for item in items
            if isinstance(item, dict)
        ]
    when = datetime.fromisoformat(str(tags["1012"]))
    total = int(ours.get("1020", 0))
    fn, fp = str(tags["1041"]), archive_fp(tags["1077"])
    return FiscalResult(
        receipt_id=document.receipt_id,
        fn=fn,
        fd=document.fd,
        fp=fp,
        shift=int(tags.get("1038", 0)),
        number_in_shift=int(tags.get("1042", 0)),
        datetime=when,
        qr=qr_string(when, total, fn, document.fd, fp, int(tags.get("1054", 1))),
        document=ours,
    )
