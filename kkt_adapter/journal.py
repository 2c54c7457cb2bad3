"""The KKT's journal is the source of truth (promise I8): the buffer is checked against it.

At start-up, before anything is written, and then every housekeeping sweep, ``JournalKeeper``
compares the KKT with the buffer:

- **Contradictions** refuse the start (``StartupRefused``, one line): the KKT has another FN
  while the buffer still holds documents of an FN to deliver, or the KKT's last FD is below
  one the buffer holds for its FN. The KKT was replaced or its state was lost; mixing the two
  would confirm or resend the wrong documents. Found later (the device changed under a
  running adapter), the same facts are a problem that health reports.
- **Recovery**: every receipt in the journal above the highest FD the buffer ever held for
  this FN, and every receipt the OFD has not acknowledged, must be in the buffer. One the
  buffer lacks (a restored older backup, a lost buffer file) is recovered from the journal,
  with its id (tag 1192) and idempotency key digest (tag 1084), as ``pending``, and goes to
  the OFD. One the buffer left ``print_failed`` is recorded: the KKT printed it.
- **Gaps**: a receipt in the journal that cannot be recovered (no tag 1192: another program
  printed it) is a gap; a check that could not read the journal leaves it unchecked. Both
  turn health ``degraded`` with an alert, until a check finds none.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial

from kkt_adapter.buffer import Buffer
from kkt_adapter.buffer.recovery import Recovered
from kkt_adapter.device.base import DeviceStatus, JournalEntry
from kkt_adapter.device.runner import DeviceRunner
from kkt_adapter.domain.ffd import RECEIPT_TYPE_CODES
from kkt_adapter.domain.journal import read_mark
from kkt_adapter.domain.lifecycle import ReceiptStatus
from kkt_adapter.errors import StartupRefused
from kkt_adapter.hlc import HlcStamp
from kkt_adapter.service import fiscal_answer, stored_change

log = logging.getLogger(__name__)

PAGE = 200
"""Journal entries read per device call (the device thread is shared with intake)."""
RECEIPT_TYPES = {code: str(kind) for kind, code in RECEIPT_TYPE_CODES.items()}


@dataclass
class JournalState:
    """What the last check found, for status and health."""

    checked_ms: int | None = None
    contradiction: str | None = None
    gaps: list[int] = field(default_factory=list)
    """FDs in the journal that could not be recovered into the buffer."""
    error: str | None = None
    """Why the last check could not read the journal (``None``: it could)."""
    recovered: int = 0
    """Receipts recovered from the journal since start-up."""

    def problems(self) -> list[str]:
        found = []
        if self.contradiction:
            found.append("journal_contradiction")
        if self.gaps:
            found.append("journal_gap")
        if self.error or self.checked_ms is None:
            found.append("journal_unchecked")
        return found


@dataclass(frozen=True)
class CheckReport:
    recovered: list[str]
    recorded: list[str]
    gaps: list[int]


class JournalKeeper:
    """Holds the buffer to the KKT's journal (see the module docstring)."""

    def __init__(self, buffer: Buffer, kkt: DeviceRunner, *, on_pending: Callable[[], None]):
        self._buffer = buffer
        self._kkt = kkt
        self._on_pending = on_pending
        self.state = JournalState()

    async def verify(self) -> DeviceStatus:
        """Refuse to go on (``StartupRefused``) if the KKT contradicts the buffer."""
        device = await self._kkt.status()
        problem = await self._contradiction(device)
        if problem is not None:
            raise StartupRefused(problem)
        return device

    async def check(self) -> CheckReport | None:
        """Recover what the buffer lacks; ``None`` if the check could not run (say why in
        ``state``). Never raises: it runs in the background too."""
        try:
            device = await self._kkt.status()
            self.state.contradiction = await self._contradiction(device)
            if self.state.contradiction is not None:
                log.error("KKT journal check: %s", self.state.contradiction)
                return None
            report = await self._recover(device)
        except Exception as exc:
            log.exception("KKT journal check failed")
            self.state.error = f"{type(exc).__name__}: {exc}"
            return None
        self.state.error = None
        self.state.gaps = report.gaps
        self.state.recovered += len(report.recovered)
        self.state.checked_ms = self._buffer.now_ms()
        if report.recovered or report.recorded:
            log.warning(
                "KKT journal check: %d receipts recovered from the KKT's journal, %d recorded"
                " that the buffer had as not printed",
                len(report.recovered),
                len(report.recorded),
            )
            self._on_pending()
        if report.gaps:
            log.error("KKT journal check: FDs %s cannot be recovered (no receipt id)", report.gaps)
        return report

    async def _contradiction(self, device: DeviceStatus) -> str | None:
        view = await self._buffer.fn_view(device.fn)
        if view.others_unsent:
            fn, count = sorted(view.others_unsent.items())[0]
            return (
                f"the KKT's FN is {device.fn}, but the buffer still has {count} documents of FN"
                f" {fn} to deliver: the KKT (or its state file) was replaced or lost"
            )
        if device.last_fd < view.high_fd:
            return (
                f"the KKT's last FD is {device.last_fd}, below FD {view.high_fd} that the buffer"
                f" holds for FN {device.fn}: the KKT's state went back (lost or restored)"
            )
        return None

    async def _recover(self, device: DeviceStatus) -> CheckReport:
        """Read the journal from the lower of the buffer's highest FD and the oldest
        unacknowledged receipt; bring in what the buffer lacks."""
        high = (await self._buffer.fn_view(device.fn)).high_fd
        start = high
        if device.first_unconfirmed_fd is not None:
            start = min(start, device.first_unconfirmed_fd - 1)
        recovered: list[str] = []
        recorded: list[str] = []
        gaps: list[int] = []
        after = start
        while True:
            page = await self._kkt.journal(after, PAGE)
            if not page:
                break
            after = page[-1].result.fd
            # Below the buffer's highest FD, what the OFD acknowledged was delivered.
            wanted = [e for e in page if not (e.confirmed and e.result.fd <= high)]
            await self._take(wanted, high, recovered, recorded, gaps)
        return CheckReport(recovered, recorded, gaps)

    async def _take(
        self,
        entries: list[JournalEntry],
        high: int,
        recovered: list[str],
        recorded: list[str],
        gaps: list[int],
    ) -> None:
        """Bring in the entries the buffer lacks, in FD order. Above the buffer's highest FD
        they are stamped under the gate (above every stamp), in one write; below it, each is
        stamped between its FD neighbours and written at once, so the next sees it (I5)."""
        ids = [e.result.receipt_id for e in entries if e.result.receipt_id]
        known = await self._buffer.known(ids)
        tail: list[Recovered] = []
        leapt = False
        for entry in entries:
            result = entry.result
            if not result.receipt_id:
                gaps.append(result.fd)
                continue
            row = known.get(result.receipt_id)
            if row is not None and not (
                row.status == ReceiptStatus.PRINT_FAILED
                or (
                    row.status == ReceiptStatus.ACCEPTED and not self._buffer.owner_alive(row.owner)
                )
            ):
                continue  # the buffer has it (or a live process is recording it)
            mark = read_mark(result.document)
            if row is None and not leapt and (mark is None or mark.stamp is None):
                # Printed without a stamp in its document: the stamps the buffer lost may lie
                # ahead of the clock (merged from the OFD), so it leaps past them (I5).
                self._buffer.leap_clock()
                leapt = True
            stamp = await self._buffer.late_stamp(
                result, await self._kkt.stamp(), scan=result.fd <= high
            )
            if row is not None:
                change = stored_change(await self._buffer.get_receipt(result.receipt_id))
                await self._buffer.record_fiscal(
                    result.receipt_id, result, partial(fiscal_answer, result, 0, change), stamp
                )
                recorded.append(result.receipt_id)
            elif result.fd <= high:
                await self._buffer.insert_recovered([self._recovered(entry, stamp)])
                recovered.append(result.receipt_id)
            else:
                tail.append(self._recovered(entry, stamp))
        if tail:
            await self._buffer.insert_recovered(tail)
            recovered.extend(row.result.receipt_id for row in tail)

    def _recovered(self, entry: JournalEntry, stamp: HlcStamp) -> Recovered:
        result = entry.result
        document = result.document
        mark = read_mark(document)
        key = mark.key if mark is not None and mark.key else f"recovered:{result.receipt_id}"
        fingerprint = mark.fingerprint if mark is not None and mark.key else ""
        total = document.get("1020")
        return Recovered(
            result=result,
            key=key,
            fingerprint=fingerprint,
            type=RECEIPT_TYPES.get(document.get("1054", 0), "sale"),
            total=total if isinstance(total, int) else 0,
            stamp=stamp,
            answer=fiscal_answer(result, 0, stored_change(None)),  # no row: received unknown
        )
