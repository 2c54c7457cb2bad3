"""The narrow interface between the adapter and a cash register (KKT with its fiscal drive).

The methods are synchronous: a device driver does blocking I/O. The adapter calls them from
one dedicated thread (``kkt_adapter.device.runner``), so a device works on one call at a time
and the event loop never blocks on it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from kkt_adapter.domain.fiscal import FfdDocument, FiscalResult
from kkt_adapter.domain.money import Kopecks
from kkt_adapter.domain.shift_totals import CashKind, ShiftTotals


@dataclass(frozen=True)
class ShiftReport:
    """An open-shift, X or Z (close) report."""

    kind: str
    """"open", "x" or "z"."""
    shift: int
    fd: int
    opened_at: datetime | None
    closed_at: datetime | None
    receipts: int
    totals: dict[str, int] = field(default_factory=dict)
    """Sums in kopecks by receipt type ("sale", "refund", ...)."""
    fn: str | None = None
    """The FN the shift is on (shift numbers start again on a new FN)."""
    summary: ShiftTotals | None = None
    """The X or Z report's figures (``domain/shift_totals.py``); ``None`` on an open report."""


@dataclass(frozen=True)
class CashResult:
    """A cash operation the device did (cash in or out: a non-fiscal document, no FD)."""

    operation_id: str
    kind: CashKind
    amount: Kopecks
    shift: int
    number: int
    """The operation's number among the shift's cash operations (1, 2, ...)."""
    at: datetime
    drawer_cash: Kopecks
    """Cash in the drawer after it, as the device counts it."""


@dataclass(frozen=True)
class DeviceStatus:
    """Measured state of the device."""

    emulator: bool
    model: str
    fn: str
    registration_number: str
    online: bool
    paper: bool
    shift_open: bool
    shift: int
    shift_opened_at: datetime | None
    shift_expired: bool
    last_fd: int
    unconfirmed_count: int
    oldest_unconfirmed_at: datetime | None
    fn_blocked: bool
    first_unconfirmed_fd: int | None = None
    """The FD of the oldest receipt the OFD has not acknowledged (``None``: none)."""
    cover_open: bool = False
    """The printer's cover is open (a register that reports it; the emulator never does)."""
    fn_valid_until: datetime | None = None
    """When the FN stops signing (its key's validity); ``None``: not reported."""
    ffd_version: str | None = None
    """The FFD version the FN works in ("1.2")."""
    fn_memory_warning: bool = False
    """The FN reports its memory nearly full (replace it soon)."""


@dataclass(frozen=True)
class Exchange:
    """The FN's own exchange with the OFD, on a register that delivers itself (delivery
    ``device``): every receipt with an FD below ``delivered_below`` has the OFD's receipt."""

    delivered_below: int
    unsent_count: int
    first_unsent_at: datetime | None
    last_success_at: datetime | None
    error: str | None


@dataclass(frozen=True)
class JournalEntry:
    """A fiscalized receipt in the KKT's journal, and whether the OFD acknowledged it."""

    result: FiscalResult
    confirmed: bool


class KktDevice(Protocol):
    """A cash register, as the adapter uses it (through ``kkt_adapter.device.runner``, on one
    thread). Only what the adapter calls is here; a driver may offer more (the emulator's
    ``print_receipt``, ``set_fault``, ``repeat_prints`` serve tests and demos). Implementations
    raise ``kkt_adapter.errors.DeviceError`` on a refusal."""

    max_group: int
    """How many receipts ``print_receipts`` takes in one call at most (1: one at a time)."""

    def print_receipts(
        self, items: Sequence[tuple[str, FfdDocument]]
    ) -> list[FiscalResult | Exception]:
        """Fiscalize and print each ``(receipt_id, document)`` in order; a document's tag 1192
        holds its receipt id.

        One outcome per item: its result, the ``DeviceError`` refusing it, or the exception
        it failed with (then it was not fiscalized). All results are durable on the device
        before it returns: after a crash ``find_document`` finds them. An exception raised
        instead means the device failed and may have fiscalized some of them: ask
        ``find_document``.
        """
        ...

    def find_document(self, receipt_id: str) -> FiscalResult | None:
        """Look up a fiscalized receipt by the id in its tag 1192."""
        ...

    def journal(self, after_fd: int, limit: int) -> list[JournalEntry]:
        """The fiscalized receipts with an FD above ``after_fd``, in FD order, at most
        ``limit`` (shift documents are left out: only receipts go to the OFD)."""
        ...

    def status(self) -> DeviceStatus: ...

    def open_shift(self, cashier: str | None = None) -> ShiftReport: ...

    def close_shift(self, cashier: str | None = None) -> ShiftReport:
        """Close the shift and produce its Z report."""
        ...

    def x_report(self) -> ShiftReport: ...

    def cash_operation(
        self, operation_id: str, kind: CashKind, amount: Kopecks, cashier: str | None
    ) -> CashResult:
        """Put cash into the drawer or take it out (``InsufficientCash`` beyond the drawer's
        cash); the device keeps ``operation_id`` with it where it can."""
        ...

    def find_cash_operation(self, operation_id: str) -> CashResult | None:
        """The cash operation done under ``operation_id``; ``None``: the device never did it;
        ``CashOutcomeUnknown`` when the device cannot tell."""
        ...

    def confirm_many(self, fn: str, fds: Sequence[int]) -> None:
        """The OFD acknowledged these documents of FN ``fn`` (as the OFD's receipt tells a real
        FN): mark them confirmed in one durable step; unknown fds, or another FN's, are
        ignored."""
        ...

    def close(self) -> None:
        """Release the device (files, ports)."""
        ...
